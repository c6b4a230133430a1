// Backward pass of the embedding lookup: the rows of the output gradient added onto the rows they came from.

extension Compute {
    /// Gradient of `embedding(indices, table:)` with respect to the table: `[rows, D]`, where row `t` is the sum
    /// of the output-gradient rows (`outputGradient` `indices.shape + [D]`) of every position holding token `t`.
    public func embeddingBackward(_ indices: Tensor, outputGradient dy: Tensor, rows: Int) -> Tensor {
        let tokens = indices.integers()
        let dim = dy.shape.last ?? 0
        precondition(dy.dtype == .float32 && dy.shape == indices.shape + [dim],
                     "embeddingBackward: output gradient \(dy) does not fit indices \(indices.shape)")
        var table = Tensor(zeros: [rows, dim])
        dy.withFloats { g in table.withMutableFloats { t in
            // Split over columns, so threads never add into the same element and the order is fixed.
            pool.parallelChunks(dim, minChunk: 16) { cols in
                for (i, token) in tokens.enumerated() {
                    precondition(token >= 0 && token < rows, "embeddingBackward: index \(token) is outside \(rows) rows")
                    let src = g.baseAddress! + i * dim, dst = t.baseAddress! + token * dim
                    for j in cols { dst[j] += src[j] }
                }
            }
        }}
        return table
    }
}
