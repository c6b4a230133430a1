// Embedding lookup: integer tokens -> rows of a table.

extension Compute {
    /// PyTorch `F.embedding(indices, table)`: `indices` (int32 or int64, any shape) select rows of `table`
    /// `[N, D]` (float32, float16 or bfloat16); the result is float32 with shape `indices.shape + [D]`.
    /// An index outside `0..<N` is a programmer error (a precondition failure naming it).
    public func embedding(_ indices: Tensor, table: Tensor) -> Tensor {
        precondition(indices.dtype == .int32 || indices.dtype == .int64, "embedding: indices must be int32 or int64, got \(indices.dtype)")
        precondition(table.rank == 2 && [.float32, .float16, .bfloat16].contains(table.dtype),
                     "embedding: expected a float [N, D] table, got \(table)")
        let (rows, dim) = (table.shape[0], table.shape[1])
        let tokens = indices.integers()
        for (i, t) in tokens.enumerated() {
            precondition(t >= 0 && t < rows, "embedding: index \(t) at position \(i) is outside the table's \(rows) rows")
        }
        var out = Tensor(uninitialized: indices.shape + [dim])
        let dtype = table.dtype
        table.withUnsafeBytes { raw in out.withMutableFloats { dst in
            let d = dst.baseAddress!
            pool.parallelChunks(tokens.count, minChunk: max(1, 16384 / max(1, dim))) { r in
                for i in r {
                    let o = d + i * dim
                    switch dtype {
                    case .float32:
                        o.update(from: raw.baseAddress!.assumingMemoryBound(to: Float.self) + tokens[i] * dim, count: dim)
                    case .float16:
                        let s = raw.baseAddress!.assumingMemoryBound(to: UInt16.self) + tokens[i] * dim
                        for j in 0..<dim { o[j] = float16ToFloat(s[j]) }
                    default:  // bfloat16
                        let s = raw.baseAddress!.assumingMemoryBound(to: UInt16.self) + tokens[i] * dim
                        for j in 0..<dim { o[j] = bfloat16ToFloat(s[j]) }
                    }
                }
            }
        }}
        return out
    }
}
