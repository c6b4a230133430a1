import CPaellaKernels

// Fast conversions between the storage dtypes of weights (float16, bfloat16) and compute float32, with the
// SIMD kernels and the thread pool. Results equal Tensor.toFloat32() / converted(to:) bit for bit.

extension Tensor {
    /// The elements as float32 (a new, writable tensor), converted in parallel with SIMD kernels for
    /// float16 and bfloat16; other dtypes take the plain `toFloat32()` path.
    public func toFloat32(using compute: Compute) -> Tensor {
        let convert: ((UnsafePointer<UInt16>, UnsafeMutablePointer<Float>, Int) -> Void)
        switch dtype {
        case .float16: convert = { pk_f16_to_f32($0, $1, $2) }
        case .bfloat16: convert = { pk_bf16_to_f32($0, $1, $2) }
        default: return toFloat32()
        }
        var out = Tensor(uninitialized: shape, dtype: .float32)
        withUnsafeBufferPointer(as: UInt16.self) { src in
            out.withMutableFloatPointer { dst in
                guard let s = src.baseAddress else { return }
                compute.pool.parallelChunks(count, minChunk: 1 << 16) { r in
                    convert(s + r.lowerBound, dst + r.lowerBound, r.count)
                }
            }
        }
        return out
    }

    /// The float32 elements rounded to a storage dtype (float16 or bfloat16, to nearest even; float32 copies),
    /// in parallel with SIMD kernels.
    public func converted(to target: DType, using compute: Compute) -> Tensor {
        precondition(dtype == .float32, "Tensor.converted(to:using:): source must be float32, have \(dtype)")
        let convert: ((UnsafePointer<Float>, UnsafeMutablePointer<UInt16>, Int) -> Void)
        switch target {
        case .float16: convert = { pk_f32_to_f16($0, $1, $2) }
        case .bfloat16: convert = { pk_f32_to_bf16($0, $1, $2) }
        default: return converted(to: target)
        }
        var out = Tensor(uninitialized: shape, dtype: target)
        withFloatPointer { src in
            out.withUnsafeMutableBufferPointer(as: UInt16.self) { dst in
                guard let d = dst.baseAddress else { return }
                compute.pool.parallelChunks(count, minChunk: 1 << 16) { r in
                    convert(src + r.lowerBound, d + r.lowerBound, r.count)
                }
            }
        }
        return out
    }
}
