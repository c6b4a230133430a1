import CPaellaKernels

// Element-wise activations (GELU in its exact erf form, SiLU) and their backward passes, plus the small
// helpers the element-wise ops share. Every op is pure: it reads its inputs and returns a new tensor.

extension Compute {
    /// GELU, exact form (PyTorch's default `gelu`): `x/2 * (1 + erf(x/sqrt(2)))`, element-wise.
    public func gelu(_ x: Tensor) -> Tensor {
        mapElements(x) { pk_gelu($0, $1, $2) }
    }

    /// The gradient of `gelu` at `x` given the gradient of its output: `outputGradient * GELU'(x)`.
    public func geluBackward(_ x: Tensor, outputGradient: Tensor) -> Tensor {
        zipElements(x, outputGradient, "geluBackward") { pk_gelu_backward($0, $1, $2, $3) }
    }

    /// SiLU (swish), `x * sigmoid(x)`, element-wise.
    public func silu(_ x: Tensor) -> Tensor {
        mapElements(x) { pk_silu($0, $1, $2) }
    }

    /// The gradient of `silu` at `x` given the gradient of its output.
    public func siluBackward(_ x: Tensor, outputGradient: Tensor) -> Tensor {
        zipElements(x, outputGradient, "siluBackward") { pk_silu_backward($0, $1, $2, $3) }
    }

    // MARK: Helpers shared by the element-wise ops

    /// Elements per parallel task: small enough to spread a feature map over the cores, large enough that
    /// the hand-off costs nothing next to the work.
    static let elementsPerTask = 1 << 14

    /// Splits `rows` rows of `rowLength` elements into contiguous chunks and runs them on the pool.
    func parallelRows(_ rows: Int, rowLength: Int, _ body: (Range<Int>) -> Void) {
        let minRows = max(1, Compute.elementsPerTask / max(rowLength, 1))
        pool.parallelChunks(rows, minChunk: minRows, body)
    }

    /// A new tensor of x's shape with `kernel(input, output, count)` applied to chunks of the elements.
    func mapElements(_ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        var out = Tensor(uninitialized: x.shape)
        x.withFloatPointer { src in
            out.withMutableFloatPointer { dst in
                pool.parallelChunks(x.count, minChunk: Compute.elementsPerTask) { r in
                    kernel(src + r.lowerBound, dst + r.lowerBound, r.count)
                }
            }
        }
        return out
    }

    /// A new tensor of x's shape with `kernel(x, y, output, count)` applied to chunks of two equal-shaped inputs.
    func zipElements(_ x: Tensor, _ y: Tensor, _ op: String,
                     _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        precondition(x.shape == y.shape, "\(op): shapes \(x.shape) and \(y.shape) differ")
        var out = Tensor(uninitialized: x.shape)
        x.withFloatPointer { a in
            y.withFloatPointer { b in
                out.withMutableFloatPointer { dst in
                    pool.parallelChunks(x.count, minChunk: Compute.elementsPerTask) { r in
                        kernel(a + r.lowerBound, b + r.lowerBound, dst + r.lowerBound, r.count)
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// The address of the float32 elements, for the C kernels (read-only).
    func withFloatPointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withFloats { buffer in
            guard let p = buffer.baseAddress else { preconditionFailure("Tensor: float buffer without an address") }
            return try body(p)
        }
    }

    /// The address of the float32 elements for writing (copies shared or mapped storage first).
    mutating func withMutableFloatPointer<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        try withMutableFloats { buffer in
            guard let p = buffer.baseAddress else { preconditionFailure("Tensor: float buffer without an address") }
            return try body(p)
        }
    }
}

/// Calls `body` with the address of an optional tensor's float32 elements, or nil.
func withOptionalFloatPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
    guard let t else { return try body(nil) }
    return try t.withFloatPointer { try body($0) }
}
