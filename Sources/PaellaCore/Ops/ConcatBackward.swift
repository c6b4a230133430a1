// Backward pass of concat: the output gradient cut back into the pieces that were joined.

extension Compute {
    /// Splits `x` along `axis` into consecutive pieces of the given sizes (the gradient of `concat` with
    /// respect to each of its inputs; PyTorch `torch.split(x, sizes, dim)`). The sizes must add up to the axis.
    public func split(_ x: Tensor, sizes: [Int], axis: Int) -> [Tensor] {
        let axis = axis < 0 ? axis + x.rank : axis
        precondition(axis >= 0 && axis < x.rank && sizes.reduce(0, +) == x.shape[axis] && sizes.allSatisfy { $0 >= 0 },
                     "split: sizes \(sizes) do not split axis \(axis) of \(x.shape)")
        let outer = x.shape[..<axis].reduce(1, *)
        let innerBytes = x.shape[(axis + 1)...].reduce(1, *) * x.dtype.size
        let rowBytes = x.shape[axis] * innerBytes
        var offset = 0
        return sizes.map { size in
            var shape = x.shape
            shape[axis] = size
            var piece = Tensor(uninitialized: shape, dtype: x.dtype)
            let pieceBytes = size * innerBytes, start = offset
            offset += pieceBytes
            if pieceBytes == 0 { return piece }
            x.withUnsafeBytes { src in piece.withMutableRawBytes { dst in
                pool.parallelChunks(outer, minChunk: max(1, 65536 / pieceBytes)) { r in
                    for i in r {
                        (dst + i * pieceBytes).copyMemory(from: src.baseAddress! + i * rowBytes + start, byteCount: pieceBytes)
                    }
                }
            }}
            return piece
        }
    }
}
