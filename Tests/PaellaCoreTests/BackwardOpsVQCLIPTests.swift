import PaellaCore
import PaellaTestSupport
import Testing

/// Backward passes of the ops the VQGAN and CLIP trainers add (group norm with and without the fused SiLU,
/// attention, nearest 2x upsampling, the right/bottom-padded stride-2 convolution of taming's Downsample),
/// against central differences of L = sum(y * r) for a fixed random r. The ops are smooth but not linear, so
/// the step is 1e-2 and L is summed in Double: the truncation error (h² times the third derivative, about
/// 1e-4 here) and float32 rounding of the outputs (about 1e-7 * |L| / h) stay far inside 2e-3 + 1e-2 |g|.
@Suite struct BackwardOpsVQCLIPTests {
    static func dot(_ y: Tensor, _ r: Tensor) -> Double {
        zip(y.floats, r.floats).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    static func nudged(_ t: Tensor, _ i: Int, _ d: Float) -> Tensor {
        var v = t.floats
        v[i] += d
        return Tensor(v, shape: t.shape)
    }

    /// Checks `analytic` against central differences of `loss` over every element of `t`.
    static func expectMatchesFiniteDifferences(_ t: Tensor, _ analytic: Tensor, _ what: String, h: Float = 1e-2,
                                               _ loss: (Tensor) -> Double) {
        #expect(analytic.shape == t.shape, "\(what) shape")
        let a = analytic.floats
        for i in 0..<t.count {
            let fd = (loss(nudged(t, i, h)) - loss(nudged(t, i, -h))) / Double(2 * h)
            #expect(abs(fd - Double(a[i])) <= 2e-3 + 1e-2 * abs(Double(a[i])),
                    "\(what)[\(i)]: finite difference \(fd), analytic \(a[i])")
        }
    }

    @Test(arguments: [false, true])
    func groupNormBackward(fusedSiLU: Bool) throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 31)
        let x = rng.tensor([2, 3, 2, 6], -2, 2)
        let weight = rng.tensor([6], 0.5, 1.5), bias = rng.tensor([6])
        func forward(_ x: Tensor, _ w: Tensor, _ b: Tensor) -> Tensor {
            compute.groupNorm(x, groups: 3, weight: w, bias: b, eps: 1e-6, fusedSiLU: fusedSiLU)
        }
        let r = rng.tensor(x.shape)
        let g = compute.groupNormBackward(x, groups: 3, weight: weight, bias: bias, eps: 1e-6, fusedSiLU: fusedSiLU,
                                          outputGradient: r)
        Self.expectMatchesFiniteDifferences(x, g.input, "dx") { Self.dot(forward($0, weight, bias), r) }
        Self.expectMatchesFiniteDifferences(weight, try #require(g.weight), "dweight") { Self.dot(forward(x, $0, bias), r) }
        Self.expectMatchesFiniteDifferences(bias, try #require(g.bias), "dbias") { Self.dot(forward(x, weight, $0), r) }
    }

    @Test func groupNormBackwardWithoutAffine() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 32)
        let x = rng.tensor([1, 4, 8], -2, 2)  // [B, L, C]
        let r = rng.tensor(x.shape)
        let g = compute.groupNormBackward(x, groups: 2, weight: nil, bias: nil, eps: 1e-5, outputGradient: r)
        #expect(g.weight == nil && g.bias == nil)
        Self.expectMatchesFiniteDifferences(x, g.input, "dx") {
            Self.dot(compute.groupNorm($0, groups: 2, weight: nil, bias: nil, eps: 1e-5), r)
        }
    }

    @Test(arguments: [false, true])
    func attentionBackward(causal: Bool) {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 33)
        let q = rng.tensor([2, 2, 5, 3]), k = rng.tensor([2, 2, 5, 3]), v = rng.tensor([2, 2, 5, 4])
        let r = rng.tensor([2, 2, 5, 4])
        let g = compute.scaledDotProductAttentionBackward(q: q, k: k, v: v, outputGradient: r, causal: causal)
        func loss(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> Double {
            Self.dot(compute.scaledDotProductAttention(q: q, k: k, v: v, causal: causal), r)
        }
        Self.expectMatchesFiniteDifferences(q, g.q, "dq") { loss($0, k, v) }
        Self.expectMatchesFiniteDifferences(k, g.k, "dk") { loss(q, $0, v) }
        Self.expectMatchesFiniteDifferences(v, g.v, "dv") { loss(q, k, $0) }
    }

    /// One head over many positions (taming's AttnBlock) and one thread per head (the per-head path): the
    /// same gradients as on a single thread.
    @Test func attentionBackwardIsTheSameOnEveryPath() {
        var rng = TestRandom(seed: 34)
        let q = rng.tensor([4, 1, 9, 6]), k = rng.tensor([4, 1, 9, 6]), v = rng.tensor([4, 1, 9, 6]), r = rng.tensor([4, 1, 9, 6])
        let one = Compute(pool: ThreadPool(threads: 1), gemm: ReferenceGEMM())
        let two = Compute(pool: ThreadPool(threads: 2), gemm: ReferenceGEMM())
        let a = one.scaledDotProductAttentionBackward(q: q, k: k, v: v, outputGradient: r)
        let b = two.scaledDotProductAttentionBackward(q: q, k: k, v: v, outputGradient: r)
        #expect(maxAbsDifference(a.q.floats, b.q.floats) < 1e-6)
        #expect(maxAbsDifference(a.k.floats, b.k.floats) < 1e-6)
        #expect(maxAbsDifference(a.v.floats, b.v.floats) < 1e-6)
    }

    @Test func upsampleNearest2xBackward() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 35)
        let x = rng.tensor([2, 3, 2, 3])
        let r = rng.tensor([2, 6, 4, 3])
        let g = compute.upsampleNearest2xBackward(outputGradient: r)
        Self.expectMatchesFiniteDifferences(x, g, "dx", h: 0.5) { Self.dot(compute.upsampleNearest2x($0), r) }
    }

    /// taming's Downsample: pad right and bottom by one, 3x3 conv with stride 2 (conv2dBackward's asymmetric
    /// padding path).
    @Test func downsampleConvBackward() throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 36)
        let x = rng.tensor([1, 4, 6, 2])
        let weight = rng.tensor([3, 2, 3, 3]), bias = rng.tensor([3])
        let padding = Padding2d(top: 0, bottom: 1, left: 0, right: 1)
        func forward(_ x: Tensor, _ w: Tensor) -> Tensor {
            compute.conv2d(x, Conv2dWeights(pytorchOIHW: w, bias: bias), stride: 2, padding: padding)
        }
        let r = rng.tensor(forward(x, weight).shape)
        let g = compute.conv2dBackward(x, Conv2dWeights(pytorchOIHW: weight, bias: bias), outputGradient: r,
                                       stride: 2, padding: padding)
        Self.expectMatchesFiniteDifferences(x, g.input, "dx", h: 0.5) { Self.dot(forward($0, weight), r) }
        Self.expectMatchesFiniteDifferences(weight, g.kernel.permuted([3, 2, 0, 1]), "dweight", h: 0.5) { Self.dot(forward(x, $0), r) }
    }
}
