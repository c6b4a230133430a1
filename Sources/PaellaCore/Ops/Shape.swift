// Data movement: permute, concat, pad. These work on any dtype (they copy elements, never interpret them).

extension Tensor {
    /// Write access to the raw bytes, whatever the dtype (for ops that move elements without reading them).
    mutating func withMutableRawBytes<R>(_ body: (UnsafeMutableRawPointer) -> R) -> R {
        switch dtype.size {
        case 1: return withUnsafeMutableBufferPointer(as: UInt8.self) { body(UnsafeMutableRawPointer($0.baseAddress!)) }
        case 2: return withUnsafeMutableBufferPointer(as: UInt16.self) { body(UnsafeMutableRawPointer($0.baseAddress!)) }
        case 4: return withUnsafeMutableBufferPointer(as: UInt32.self) { body(UnsafeMutableRawPointer($0.baseAddress!)) }
        default: return withUnsafeMutableBufferPointer(as: UInt64.self) { body(UnsafeMutableRawPointer($0.baseAddress!)) }
        }
    }

    /// The elements with their axes reordered: result axis `i` is axis `perm[i]` of `self` (NumPy `transpose`,
    /// PyTorch `permute`). Copies into contiguous storage. NCHW -> NHWC is `permuted([0, 2, 3, 1])`,
    /// NHWC -> NCHW is `permuted([0, 3, 1, 2])`.
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.count == rank && perm.sorted() == Array(0..<rank),
                     "Tensor.permuted: \(perm) is not a permutation of the \(rank) axes of \(shape)")
        if storage.isReadOnlyZeros { return Tensor(readOnlyZeros: perm.map { shape[$0] }, dtype: dtype) }
        var out = Tensor(uninitialized: perm.map { shape[$0] }, dtype: dtype)
        if count == 0 { return out }
        if perm == Array(0..<rank) {
            let bytes = byteCount
            withUnsafeBytes { src in out.withMutableRawBytes { dst in dst.copyMemory(from: src.baseAddress!, byteCount: bytes) } }
            return out
        }
        if let transposed = transposedIfMatrixPermutation(perm) { return transposed }
        switch dtype.size {
        case 1: permute(as: UInt8.self, perm, into: &out)
        case 2: permute(as: UInt16.self, perm, into: &out)
        case 4: permute(as: UInt32.self, perm, into: &out)
        default: permute(as: UInt64.self, perm, into: &out)
        }
        return out
    }

    private func permute<T>(as type: T.Type, _ perm: [Int], into out: inout Tensor) {
        // Source strides in elements, taken in the order of the output axes.
        var strides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        let srcStride = perm.map { strides[$0] }
        let outShape = out.shape
        let inner = outShape[rank - 1], innerStride = srcStride[rank - 1]
        withUnsafeBufferPointer(as: T.self) { src in out.withUnsafeMutableBufferPointer(as: T.self) { dst in
            // Odometer over every output axis but the last; the last is a strided copy.
            var index = [Int](repeating: 0, count: rank)
            var srcOffset = 0
            var o = 0
            while o < dst.count {
                var s = srcOffset
                for j in 0..<inner { dst[o + j] = src[s]; s += innerStride }
                o += inner
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    srcOffset += srcStride[axis]
                    if index[axis] < outShape[axis] { break }
                    srcOffset -= srcStride[axis] * outShape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }}
    }
}

extension Compute {
    /// Axes reordered (see `Tensor.permuted`).
    public func permute(_ x: Tensor, _ perm: [Int]) -> Tensor { x.permuted(perm) }

    /// Joins tensors along `axis` (PyTorch `torch.cat`): every other dimension and the dtype must match.
    public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat: need at least one tensor")
        let first = tensors[0]
        let axis = axis < 0 ? axis + first.rank : axis
        precondition(axis >= 0 && axis < first.rank, "concat: axis out of range for shape \(first.shape)")
        for t in tensors {
            precondition(t.dtype == first.dtype && t.rank == first.rank &&
                         (0..<t.rank).allSatisfy { $0 == axis || t.shape[$0] == first.shape[$0] },
                         "concat: \(t) does not match \(first) outside axis \(axis)")
        }
        var shape = first.shape
        shape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
        var out = Tensor(uninitialized: shape, dtype: first.dtype)
        let outer = first.shape[..<axis].reduce(1, *)
        let innerBytes = first.shape[(axis + 1)...].reduce(1, *) * first.dtype.size
        let outRowBytes = shape[axis] * innerBytes
        out.withMutableRawBytes { dst in
            var offset = 0  // where this tensor's slab starts inside each output row
            for t in tensors {
                let rowBytes = t.shape[axis] * innerBytes
                t.withUnsafeBytes { src in
                    pool.parallelChunks(outer, minChunk: max(1, 65536 / max(1, rowBytes))) { r in
                        for i in r where rowBytes > 0 {
                            (dst + i * outRowBytes + offset).copyMemory(from: src.baseAddress! + i * rowBytes, byteCount: rowBytes)
                        }
                    }
                }
                offset += rowBytes
            }
        }
        return out
    }

    /// Pads the H and W axes of a channels-last `[B, H, W, C]` tensor (PyTorch `F.pad(x, (left, right, top,
    /// bottom))` on NCHW, mode "constant" 0 or "reflect"). Reflection needs each pad smaller than the side.
    public func pad(_ x: Tensor, _ padding: Padding2d, mode: PaddingMode = .zeros) -> Tensor {
        precondition(x.rank == 4, "pad: expected a [B, H, W, C] tensor, got \(x.shape)")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if mode == .reflect {
            precondition(padding.top < h && padding.bottom < h && padding.left < w && padding.right < w,
                         "pad: reflection padding \(padding) must be smaller than the \(h)x\(w) input")
        }
        let oh = h + padding.top + padding.bottom, ow = w + padding.left + padding.right
        var out = Tensor(uninitialized: [b, oh, ow, c], dtype: x.dtype)
        let pixelBytes = c * x.dtype.size
        // Source coordinate of an output coordinate, or nil for a zero.
        func source(_ i: Int, _ n: Int) -> Int? {
            if i >= 0 && i < n { return i }
            if mode == .zeros { return nil }
            return i < 0 ? -i : 2 * n - 2 - i
        }
        x.withUnsafeBytes { src in out.withMutableRawBytes { d in
            let s = src.baseAddress!
            pool.parallelChunks(b * oh) { rows in
                for row in rows {
                    let (n, oy) = (row / oh, row % oh)
                    let iy = source(oy - padding.top, h)
                    for ox in 0..<ow {
                        let target = d + (row * ow + ox) * pixelBytes
                        if let iy, let ix = source(ox - padding.left, w) {
                            target.copyMemory(from: s + ((n * h + iy) * w + ix) * pixelBytes, byteCount: pixelBytes)
                        } else {
                            target.initializeMemory(as: UInt8.self, repeating: 0, count: pixelBytes)
                        }
                    }
                }
            }
        }}
        return out
    }
}
