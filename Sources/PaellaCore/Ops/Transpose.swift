// A cache-blocked fast path for the permutations that are (batched) matrix transposes, such as converting
// PyTorch's Linear [out, in] and 1x1 conv weights to [in, out] at load time (the element-wise odometer in
// `permuted` reads one strided element at a time and takes seconds on a 2 GB checkpoint).

extension Tensor {
    /// `permuted(perm)` when the permutation, after dropping size-1 axes and merging axes that stay adjacent,
    /// is `[B, R, C] -> [B, C, R]`; nil otherwise.
    func transposedIfMatrixPermutation(_ perm: [Int]) -> Tensor? {
        let nonTrivial = (0..<rank).filter { shape[$0] != 1 }
        var groups: [[Int]] = []  // runs of source axes that stay together, in output order
        for axis in perm where shape[axis] != 1 {
            if let last = groups.last?.last, let at = nonTrivial.firstIndex(of: last),
               at + 1 < nonTrivial.count, nonTrivial[at + 1] == axis {
                groups[groups.count - 1].append(axis)
            } else {
                groups.append([axis])
            }
        }
        let sizes = groups.map { $0.reduce(1) { $0 * shape[$1] } }
        let sourceOrder = groups.indices.sorted { groups[$0][0] < groups[$1][0] }
        let (batch, rows, columns): (Int, Int, Int)
        if groups.count == 2 && sourceOrder == [1, 0] {
            (batch, rows, columns) = (1, sizes[1], sizes[0])
        } else if groups.count == 3 && sourceOrder == [0, 2, 1] {
            (batch, rows, columns) = (sizes[0], sizes[2], sizes[1])
        } else {
            return nil
        }
        var out = Tensor(uninitialized: perm.map { shape[$0] }, dtype: dtype)
        switch dtype.size {
        case 1: transposeBlocks(as: UInt8.self, batch, rows, columns, into: &out)
        case 2: transposeBlocks(as: UInt16.self, batch, rows, columns, into: &out)
        case 4: transposeBlocks(as: UInt32.self, batch, rows, columns, into: &out)
        default: transposeBlocks(as: UInt64.self, batch, rows, columns, into: &out)
        }
        return out
    }

    /// out[b, j, i] = self[b, i, j] over 32x32 tiles, so that both sides stay in cache.
    private func transposeBlocks<T>(as type: T.Type, _ batch: Int, _ rows: Int, _ columns: Int, into out: inout Tensor) {
        let tile = 32
        withUnsafeBufferPointer(as: T.self) { src in out.withUnsafeMutableBufferPointer(as: T.self) { dst in
            guard let s = src.baseAddress, let d = dst.baseAddress else { return }
            for b in 0..<batch {
                let sb = s + b * rows * columns, db = d + b * rows * columns
                for i0 in stride(from: 0, to: rows, by: tile) {
                    for j0 in stride(from: 0, to: columns, by: tile) {
                        for i in i0..<min(i0 + tile, rows) {
                            for j in j0..<min(j0 + tile, columns) { db[j * rows + i] = sb[i * columns + j] }
                        }
                    }
                }
            }
        }}
    }
}
