import Testing
import PaellaTestSupport
@testable import PaellaCore

/// `permuted` takes a blocked path for permutations that are matrix transposes; it must give what the
/// definition gives (out[i_perm[0], ...] = in[i_0, ...]) for those and the others alike.
@Suite struct TransposeFastPathTests {
    /// The definition: output element at multi-index o is the input at the index whose axis perm[k] is o[k].
    static func naive(_ x: Tensor, _ perm: [Int]) -> [Float] {
        let shape = x.shape, v = x.floats
        let outShape = perm.map { shape[$0] }
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        return (0..<v.count).map { flat in
            var rest = flat, offset = 0
            for k in stride(from: outShape.count - 1, through: 0, by: -1) {
                offset += (rest % outShape[k]) * strides[perm[k]]
                rest /= outShape[k]
            }
            return v[offset]
        }
    }

    @Test(arguments: [
        ([5, 7], [1, 0]), ([33, 65], [1, 0]), ([64, 16, 1, 1], [2, 3, 1, 0]), ([6, 5, 4, 4], [2, 3, 1, 0]),
        ([3, 40, 4, 4], [0, 2, 3, 1]), ([2, 3, 35, 33], [0, 1, 3, 2]), ([1, 9, 1, 70], [3, 1, 2, 0]), ([4, 5, 6], [2, 0, 1]),
    ])
    func matchesTheDefinition(shape: [Int], perm: [Int]) {
        var random = TestRandom(seed: 11)
        let x = random.tensor(shape)
        let y = x.permuted(perm)
        #expect(y.shape == perm.map { shape[$0] })
        #expect(y.floats == Self.naive(x, perm))
    }
}
