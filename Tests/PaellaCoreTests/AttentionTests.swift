import Foundation
import Testing
import PaellaCore
import PaellaTestSupport

/// softmax(Q K^T * scale + mask) V written as loops in double, for q [B, H, Lq, D], k [B, H, Lk, D],
/// v [B, H, Lk, Dv]; `mask(b, h, i, j)` is additive; causal removes j > i. A row with nothing left is zeros.
private func naiveAttention(q: [Float], k: [Float], v: [Float], b: Int, h: Int, lq: Int, lk: Int, d: Int, dv: Int,
                            causal: Bool, scale: Double, mask: ((Int, Int, Int, Int) -> Double)? = nil) -> [Double] {
    var out = [Double](repeating: 0, count: b * h * lq * dv)
    for bi in 0..<b {
        for hi in 0..<h {
            let p = bi * h + hi
            for i in 0..<lq {
                var scores = [Double](repeating: -.infinity, count: lk)
                for j in 0..<lk where !(causal && j > i) {
                    var dot = 0.0
                    for t in 0..<d { dot += Double(q[(p * lq + i) * d + t]) * Double(k[(p * lk + j) * d + t]) }
                    scores[j] = dot * scale + (mask?(bi, hi, i, j) ?? 0)
                }
                let m = scores.max() ?? -.infinity
                if m == -.infinity { continue }
                let weights = scores.map { Foundation.exp($0 - m) }
                let sum = weights.reduce(0, +)
                for j in 0..<lk where weights[j] > 0 {
                    for t in 0..<dv { out[(p * lq + i) * dv + t] += weights[j] / sum * Double(v[(p * lk + j) * dv + t]) }
                }
            }
        }
    }
    return out
}

@Suite struct AttentionTests {
    /// Float GEMMs and softmax against the double loops: errors of a few float ulps over sums of up to 64 terms.
    static let tolerance = 2e-5

    func check(_ got: Tensor, _ want: [Double], _ what: String) {
        let g = got.floats
        #expect(g.count == want.count)
        let worst = zip(g, want).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(worst <= Self.tolerance * max(1, want.map(abs).max() ?? 0), "\(what): max error \(worst)")
    }

    @Test(arguments: [
        // (B, H, Lq, Lk, D, Dv): odd sizes; B*H below and above the thread count (both parallel paths)
        (1, 1, 7, 7, 5, 5), (2, 3, 9, 9, 17, 17), (1, 2, 1, 1, 3, 3), (2, 2, 5, 11, 8, 3), (1, 5, 33, 33, 64, 64),
    ])
    func matchesNaiveAttention(shape: (Int, Int, Int, Int, Int, Int)) {
        let (b, h, lq, lk, d, dv) = shape
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: ReferenceGEMM())
        var rng = TestRandom(seed: UInt64(b * 1000 + h * 100 + lq * 10 + d))
        let q = rng.tensor([b, h, lq, d], -2, 2), k = rng.tensor([b, h, lk, d], -2, 2), v = rng.tensor([b, h, lk, dv])
        for causal in [false, true] {
            let got = compute.scaledDotProductAttention(q: q, k: k, v: v, causal: causal)
            #expect(got.shape == [b, h, lq, dv])
            let want = naiveAttention(q: q.floats, k: k.floats, v: v.floats, b: b, h: h, lq: lq, lk: lk, d: d, dv: dv,
                                      causal: causal, scale: 1 / Double(d).squareRoot())
            check(got, want, "shape \(shape) causal \(causal)")
        }
        // An explicit scale and an additive [Lq, Lk] mask.
        let maskValues = (0..<(lq * lk)).map { _ in rng.float(-1, 1) }
        let got = compute.scaledDotProductAttention(q: q, k: k, v: v, scale: 0.3, mask: Tensor(maskValues, shape: [lq, lk]))
        let want = naiveAttention(q: q.floats, k: k.floats, v: v.floats, b: b, h: h, lq: lq, lk: lk, d: d, dv: dv,
                                  causal: false, scale: Double(Float(0.3))) { _, _, i, j in Double(maskValues[i * lk + j]) }
        check(got, want, "shape \(shape) with mask")
    }

    @Test func broadcastMaskAndFullyMaskedRows() {
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: ReferenceGEMM())
        var rng = TestRandom(seed: 31)
        let (b, h, l, d) = (2, 3, 6, 4)
        let q = rng.tensor([b, h, l, d]), k = rng.tensor([b, h, l, d]), v = rng.tensor([b, h, l, d])
        // Per-sample padding mask [B, 1, L, L]: sample 1 masks its last two keys; its query row 0 masks all.
        var m = [Float](repeating: 0, count: b * l * l)
        for i in 0..<l { for j in 4..<l { m[(1 * l + i) * l + j] = -.infinity } }
        for j in 0..<l { m[(1 * l + 0) * l + j] = -.infinity }
        let got = compute.scaledDotProductAttention(q: q, k: k, v: v, mask: Tensor(m, shape: [b, 1, l, l]))
        let want = naiveAttention(q: q.floats, k: k.floats, v: v.floats, b: b, h: h, lq: l, lk: l, d: d, dv: d,
                                  causal: false, scale: 0.5) { bi, _, i, j in Double(m[(bi * l + i) * l + j]) }
        check(got, want, "broadcast mask")
        // The fully masked query of sample 1 gives zeros in every head, not NaN.
        let g = got.floats
        for hi in 0..<h { #expect(g[((1 * h + hi) * l + 0) * d..<((1 * h + hi) * l + 1) * d].allSatisfy { $0 == 0 }) }
    }
}
