import PaellaTestSupport
import Testing
@testable import PaellaCore

@Suite struct ShapeOpsTests {
    /// out[i_0, ..., i_{r-1}] = x[j] with j_{perm[k]} = i_k, computed per element.
    static func naivePermute(_ values: [Float], _ shape: [Int], _ perm: [Int]) -> [Float] {
        let outShape = perm.map { shape[$0] }
        var out = [Float](repeating: 0, count: values.count)
        for flat in 0..<values.count {
            var rest = flat
            var index = [Int](repeating: 0, count: shape.count)
            for k in stride(from: shape.count - 1, through: 0, by: -1) {
                index[perm[k]] = rest % outShape[k]
                rest /= outShape[k]
            }
            var src = 0
            for axis in 0..<shape.count { src = src * shape[axis] + index[axis] }
            out[flat] = values[src]
        }
        return out
    }

    @Test(arguments: [([2, 3, 4, 5], [0, 2, 3, 1]), ([2, 3, 4, 5], [0, 3, 1, 2]), ([3, 1, 5], [2, 0, 1]),
                      ([7, 3], [1, 0]), ([4], [0]), ([2, 3, 1, 5], [3, 2, 1, 0]), ([1, 9, 1, 17], [0, 3, 1, 2])])
    func permuteMatchesNaive(_ shape: [Int], _ perm: [Int]) {
        var rng = TestRandom(seed: 9)
        let x = rng.tensor(shape)
        let y = OpsReference.compute().permute(x, perm)
        #expect(y.shape == perm.map { shape[$0] })
        #expect(y.floats == Self.naivePermute(x.floats, shape, perm))
        // The inverse permutation restores the input.
        var inverse = perm
        for (k, p) in perm.enumerated() { inverse[p] = k }
        #expect(y.permuted(inverse).floats == x.floats)
    }

    @Test func permuteOtherDTypes() {
        let ints = Tensor(int32: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        #expect(ints.permuted([1, 0]).integers() == [1, 4, 2, 5, 3, 6])
        let halves = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]).converted(to: .bfloat16)
        #expect(halves.permuted([1, 0]).toFloat32().floats == [1, 4, 2, 5, 3, 6])
    }

    @Test func concatAlongEveryAxis() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 4)
        for axis in 0..<3 {
            // Three pieces of sizes 4, 5, 1 along `axis`, [2, 3, 4] elsewhere.
            let pieces = [4, 5, 1].map { size -> Tensor in
                var shape = [2, 3, 4]
                shape[axis] = size
                return rng.tensor(shape)
            }
            let y = compute.concat(pieces, axis: axis)
            var shape = [2, 3, 4]
            shape[axis] = 10
            #expect(y.shape == shape)
            // Every output element, by index: find its piece along `axis`, then read it there.
            var expected: [Float] = []
            for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
                var index = [i, j, k]
                var piece = 0
                while index[axis] >= pieces[piece].shape[axis] { index[axis] -= pieces[piece].shape[axis]; piece += 1 }
                let ps = pieces[piece].shape
                expected.append(pieces[piece].floats[(index[0] * ps[1] + index[1]) * ps[2] + index[2]])
            }}}
            #expect(y.floats == expected, "axis \(axis)")
        }
        // CLIP's class token: [B, 1, D] joined with [B, N, D] along axis 1; negative axis counts from the end.
        let cls = Tensor([1, 2], shape: [1, 1, 2]), patches = Tensor([3, 4, 5, 6], shape: [1, 2, 2])
        #expect(compute.concat([cls, patches], axis: -2).floats == [1, 2, 3, 4, 5, 6])
        let ints = compute.concat([Tensor(int32: [1, 2], shape: [2]), Tensor(int32: [3], shape: [1])], axis: 0)
        #expect(ints.integers() == [1, 2, 3] && ints.dtype == .int32)
    }

    @Test func padZerosAndReflect() {
        let compute = OpsReference.compute()
        // One 3x3 single-channel image 1...9; PyTorch F.pad(x, (1, 2, 2, 0), mode) pads left 1, right 2, top 2.
        let x = Tensor((1...9).map(Float.init), shape: [1, 3, 3, 1])
        let p = Padding2d(top: 2, bottom: 0, left: 1, right: 2)
        let zeros = compute.pad(x, p).floats
        #expect(zeros == [0, 0, 0, 0, 0, 0,
                          0, 0, 0, 0, 0, 0,
                          0, 1, 2, 3, 0, 0,
                          0, 4, 5, 6, 0, 0,
                          0, 7, 8, 9, 0, 0])
        // Reflection mirrors about the edge without repeating it: row -1 is row 1, column 3 is column 1.
        let reflected = compute.pad(x, p, mode: .reflect).floats
        #expect(reflected == [8, 7, 8, 9, 8, 7,
                              5, 4, 5, 6, 5, 4,
                              2, 1, 2, 3, 2, 1,
                              5, 4, 5, 6, 5, 4,
                              8, 7, 8, 9, 8, 7])
        // Channels are carried whole, batches kept apart.
        var rng = TestRandom(seed: 2)
        let big = rng.tensor([2, 4, 5, 3])
        let padded = compute.pad(big, 1, mode: .reflect)
        #expect(padded.shape == [2, 6, 7, 3])
        let bv = big.floats, pv = padded.floats
        // padded[n, 0, 0, c] reads big[n, 1, 1, c]; padded[n, 5, 6, c] reads big[n, 2, 3, c].
        for n in 0..<2 { for c in 0..<3 {
            #expect(pv[((n * 6 + 0) * 7 + 0) * 3 + c] == bv[((n * 4 + 1) * 5 + 1) * 3 + c])
            #expect(pv[((n * 6 + 5) * 7 + 6) * 3 + c] == bv[((n * 4 + 2) * 5 + 3) * 3 + c])
        }}
    }

    @Test func embeddingLooksUpRows() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 6)
        let table = rng.tensor([7, 5])
        let tv = table.floats
        let tokens: [Int32] = [6, 0, 3, 3, 1, 6]
        let idx32 = Tensor(int32: tokens, shape: [2, 3])
        let y = compute.embedding(idx32, table: table)
        #expect(y.shape == [2, 3, 5])
        #expect(y.floats == tokens.flatMap { Array(tv[Int($0) * 5 ..< Int($0) * 5 + 5]) })
        // int64 indices and a bfloat16 table (values rounded to bfloat16 once, exactly as stored).
        var idx64 = Tensor(zeros: [6], dtype: .int64)
        idx64.withUnsafeMutableBufferPointer(as: Int64.self) { p in for (i, t) in tokens.enumerated() { p[i] = Int64(t) } }
        let bf = table.converted(to: .bfloat16)
        let z = compute.embedding(idx64, table: bf)
        #expect(z.shape == [6, 5])
        let bfv = bf.toFloat32().floats
        #expect(z.floats == tokens.flatMap { Array(bfv[Int($0) * 5 ..< Int($0) * 5 + 5]) })
    }
}
