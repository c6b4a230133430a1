import Foundation
import Testing
import PaellaCore
import PaellaTestSupport

// The element-wise Compute ops against naive double-precision definitions written from the PyTorch docs, and
// the backward passes against central finite differences of those double-precision definitions.

private func makeCompute(threads: Int = 2) -> Compute { Compute(pool: ThreadPool(threads: threads), gemm: ReferenceGEMM()) }

/// torch.nn.functional.layer_norm: (x - E[x]) / sqrt(Var[x] + eps) * w + b over the last dimension, biased Var.
private func naiveLayerNorm(_ x: [Double], n: Int, w: [Double]?, b: [Double]?, eps: Double) -> [Double] {
    var y = x
    for r in 0..<(x.count / n) {
        let row = x[(r * n)..<((r + 1) * n)]
        let mean = row.reduce(0, +) / Double(n)
        let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        for j in 0..<n {
            y[r * n + j] = (x[r * n + j] - mean) / (variance + eps).squareRoot() * (w?[j] ?? 1) + (b?[j] ?? 0)
        }
    }
    return y
}

/// torch.nn.functional.group_norm on channels-last [B, HW, C]: statistics per (sample, group of C/G channels).
private func naiveGroupNorm(_ x: [Double], batch: Int, c: Int, groups: Int, w: [Double], b: [Double],
                            eps: Double, silu: Bool) -> [Double] {
    let hw = x.count / (batch * c), cg = c / groups
    var y = x
    for s in 0..<batch {
        for g in 0..<groups {
            var values: [Double] = []
            for p in 0..<hw { for j in (g * cg)..<((g + 1) * cg) { values.append(x[(s * hw + p) * c + j]) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
            for p in 0..<hw {
                for j in (g * cg)..<((g + 1) * cg) {
                    let i = (s * hw + p) * c + j
                    let v = (x[i] - mean) / (variance + eps).squareRoot() * w[j] + b[j]
                    y[i] = silu ? v / (1 + Foundation.exp(-v)) : v
                }
            }
        }
    }
    return y
}

private func naiveGelu(_ x: Double) -> Double { 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot())) }

private func naiveSoftmax(_ x: [Double], n: Int) -> [Double] {
    var y = x
    for r in 0..<(x.count / n) {
        let row = x[(r * n)..<((r + 1) * n)]
        let m = row.max() ?? 0
        let sum = row.reduce(0) { $0 + Foundation.exp($1 - m) }
        for j in 0..<n { y[r * n + j] = Foundation.exp(x[r * n + j] - m) / sum }
    }
    return y
}

/// d/dx_i of sum_k (f(x)_k * probe_k) by central differences, in double.
private func finiteDifferenceGradient(_ x: [Double], probe: [Double], h: Double = 1e-5,
                                      _ f: ([Double]) -> [Double]) -> [Double] {
    func loss(_ v: [Double]) -> Double { zip(f(v), probe).reduce(0) { $0 + $1.0 * $1.1 } }
    return x.indices.map { i in
        var plus = x, minus = x
        plus[i] += h
        minus[i] -= h
        return (loss(plus) - loss(minus)) / (2 * h)
    }
}

private func maxRelativeError(_ got: [Float], _ want: [Double]) -> Double {
    let scale = max(want.map(abs).max() ?? 0, 1e-30)
    return zip(got, want).map { abs(Double($0) - $1) }.max().map { $0 / scale } ?? 0
}

@Suite struct NormalizationTests {
    @Test func layerNormMatchesDefinition() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 11)
        for (shape, affine) in [([2, 3, 17], true), ([5, 1025], false), ([1, 1], true), ([4, 320], true)] {
            let n = shape.last!
            let x = rng.tensor(shape, -1, 3)
            let w = affine ? rng.tensor([n], 0.5, 1.5) : nil, b = affine ? rng.tensor([n]) : nil
            let y = compute.layerNorm(x, weight: w, bias: b, eps: 1e-5)
            #expect(y.shape == shape)
            let want = naiveLayerNorm(x.floats.map(Double.init), n: n, w: w?.floats.map(Double.init),
                                      b: b?.floats.map(Double.init), eps: 1e-5)
            // 1e-5 relative to the largest output: the parity budget of the models built on this op.
            #expect(maxRelativeError(y.floats, want) <= 1e-5, "shape \(shape)")
            let (y2, stats) = compute.layerNormWithStatistics(x, weight: w, bias: b, eps: 1e-5)
            #expect(maxAbsDifference(y2.floats, y.floats) <= 1e-6 * max(1, maxAbs(y.floats)))  // ISA may differ
            #expect(stats.mean.shape == Array(shape.dropLast()) && stats.rstd.shape == Array(shape.dropLast()))
        }
    }

    @Test func groupNormMatchesDefinition() {
        var rng = TestRandom(seed: 12)
        for (shape, groups) in [([2, 5, 3, 64], 32), ([1, 17, 12], 3), ([3, 7, 7, 33], 11), ([1, 40, 40, 128], 32)] {
            for silu in [false, true] {
                let c = shape.last!
                let x = rng.tensor(shape, -2, 4)
                let w = rng.tensor([c], 0.5, 1.5), b = rng.tensor([c])
                // One thread or three: the chunking is fixed, so the results agree (bit for bit on one ISA; the
                // tolerance allows for ElementwiseKernelTests switching the process-wide ISA meanwhile).
                let y1 = makeCompute(threads: 1).groupNorm(x, groups: groups, weight: w, bias: b, eps: 1e-6, fusedSiLU: silu)
                let y3 = makeCompute(threads: 3).groupNorm(x, groups: groups, weight: w, bias: b, eps: 1e-6, fusedSiLU: silu)
                #expect(maxAbsDifference(y1.floats, y3.floats) <= 1e-6 * max(1, maxAbs(y1.floats)))
                let want = naiveGroupNorm(x.floats.map(Double.init), batch: shape[0], c: c, groups: groups,
                                          w: w.floats.map(Double.init), b: b.floats.map(Double.init), eps: 1e-6, silu: silu)
                #expect(maxRelativeError(y3.floats, want) <= 1e-5, "shape \(shape) silu \(silu)")
            }
        }
    }

    @Test func activationsMatchDefinitions() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 13)
        let x = rng.tensor([3, 1001], -9, 9)
        let xs = x.floats.map(Double.init)
        // Absolute error bound: erf within 1.2e-7 scaled by |x|/2 <= 4.5, plus rounding of outputs up to 9.
        let g = compute.gelu(x).floats
        for i in xs.indices { #expect(abs(Double(g[i]) - naiveGelu(xs[i])) <= 1e-6) }
        let s = compute.silu(x).floats
        for i in xs.indices { #expect(abs(Double(s[i]) - xs[i] / (1 + Foundation.exp(-xs[i]))) <= 2e-6) }
    }

    @Test func softmaxRowsSumToOneAndHandleInfinity() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 14)
        var values = rng.floats(6 * 77, -20, 20)
        for j in 40..<77 { values[77 + j] = -.infinity }     // a causally masked row
        for j in 0..<77 { values[2 * 77 + j] = -.infinity }  // a fully masked row
        let x = Tensor(values, shape: [2, 3, 77])
        let y = compute.softmax(x).floats
        let want = naiveSoftmax(values.map(Double.init), n: 77)
        for r in 0..<6 where r != 2 {
            let sum = y[(r * 77)..<((r + 1) * 77)].reduce(0, +)
            #expect(abs(sum - 1) <= 1e-5, "row \(r) sums to \(sum)")
            for j in 0..<77 { #expect(abs(Double(y[r * 77 + j]) - want[r * 77 + j]) <= 1e-6) }
        }
        #expect(y[(77 + 40)..<(2 * 77)].allSatisfy { $0 == 0 })
        #expect(y[(2 * 77)..<(3 * 77)].allSatisfy { $0 == 0 }, "a fully masked row is all zeros")
        let ls = compute.logSoftmax(x).floats
        for r in [0, 1, 3] {
            for j in 0..<77 where values[r * 77 + j] > -.infinity {
                #expect(abs(Double(ls[r * 77 + j]) - Foundation.log(want[r * 77 + j])) <= 1e-5)
            }
        }
        #expect(ls[(2 * 77)..<(3 * 77)].allSatisfy { $0 == -.infinity })
    }

    // MARK: Backward passes against finite differences

    @Test func layerNormBackwardMatchesFiniteDifferences() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 15)
        let (rows, n) = (3, 13)
        let x = rng.tensor([rows, n], -1, 2), w = rng.tensor([n], 0.5, 1.5), b = rng.tensor([n])
        let probe = rng.tensor([rows, n])  // the upstream gradient: loss = sum(y * probe)
        let grads = compute.layerNormBackward(x, weight: w, bias: b, eps: 1e-5, outputGradient: probe)
        let xd = x.floats.map(Double.init), wd = w.floats.map(Double.init), bd = b.floats.map(Double.init)
        let pd = probe.floats.map(Double.init)
        let dx = finiteDifferenceGradient(xd, probe: pd) { naiveLayerNorm($0, n: n, w: wd, b: bd, eps: 1e-5) }
        let dw = finiteDifferenceGradient(wd, probe: pd) { naiveLayerNorm(xd, n: n, w: $0, b: bd, eps: 1e-5) }
        let db = finiteDifferenceGradient(bd, probe: pd) { naiveLayerNorm(xd, n: n, w: wd, b: $0, eps: 1e-5) }
        // Float kernels against double differences (truncation error ~h^2 = 1e-10): float rounding dominates.
        #expect(maxRelativeError(grads.input.floats, dx) <= 1e-5)
        #expect(maxRelativeError(grads.weight?.floats ?? [], dw) <= 1e-5)
        #expect(maxRelativeError(grads.bias?.floats ?? [], db) <= 1e-5)
        // Passing the forward's statistics gives the same result.
        let stats = compute.layerNormWithStatistics(x, weight: w, bias: b, eps: 1e-5).statistics
        let again = compute.layerNormBackward(x, weight: w, bias: b, eps: 1e-5, outputGradient: probe, statistics: stats)
        #expect(maxAbsDifference(again.input.floats, grads.input.floats) <= 1e-6 * max(1, maxAbs(grads.input.floats)))
        // Without affine parameters there are no parameter gradients.
        let plain = compute.layerNormBackward(x, weight: nil, bias: nil, eps: 1e-5, outputGradient: probe)
        #expect(plain.weight == nil && plain.bias == nil)
        let dxPlain = finiteDifferenceGradient(xd, probe: pd) { naiveLayerNorm($0, n: n, w: nil, b: nil, eps: 1e-5) }
        #expect(maxRelativeError(plain.input.floats, dxPlain) <= 1e-5)
    }

    @Test func geluAndSiluBackwardMatchFiniteDifferences() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 16)
        let x = rng.tensor([257], -6, 6), probe = rng.tensor([257])
        let xd = x.floats.map(Double.init), pd = probe.floats.map(Double.init)
        let dGelu = finiteDifferenceGradient(xd, probe: pd) { $0.map(naiveGelu) }
        #expect(maxRelativeError(compute.geluBackward(x, outputGradient: probe).floats, dGelu) <= 1e-5)
        let dSilu = finiteDifferenceGradient(xd, probe: pd) { $0.map { $0 / (1 + Foundation.exp(-$0)) } }
        #expect(maxRelativeError(compute.siluBackward(x, outputGradient: probe).floats, dSilu) <= 1e-5)
    }

    @Test func softmaxBackwardMatchesFiniteDifferences() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 17)
        let n = 9
        let x = rng.tensor([4, n], -3, 3), probe = rng.tensor([4, n])
        let xd = x.floats.map(Double.init), pd = probe.floats.map(Double.init)
        let ds = finiteDifferenceGradient(xd, probe: pd) { naiveSoftmax($0, n: n) }
        #expect(maxRelativeError(compute.softmaxBackward(x, outputGradient: probe).floats, ds) <= 1e-5)
        let dls = finiteDifferenceGradient(xd, probe: pd) { naiveSoftmax($0, n: n).map { Foundation.log($0) } }
        #expect(maxRelativeError(compute.logSoftmaxBackward(x, outputGradient: probe).floats, dls) <= 1e-5)
    }

    // MARK: Sampling and conversions through the ops

    @Test func gumbelArgmaxOpFollowsUpstreamFormula() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 18)
        let (rows, n) = (12, 300)
        let logits = rng.tensor([3, 4, n], -4, 4), u = rng.tensor([3, 4, n], 0, 1)
        let picked = compute.gumbelArgmax(logits: logits, uniforms: u, temperature: 0.8)
        #expect(picked.shape == [3, 4] && picked.dtype == .int32)
        let l = logits.floats, uf = u.floats, got = picked.integers()
        for r in 0..<rows {
            // upstream: (t / max(temperature, 1e-10)) + (-log(-log(u + 1e-20) + 1e-20)), argmax over the last dim
            let scores = (0..<n).map { j in
                Double(l[r * n + j] / 0.8) - Foundation.log(-Foundation.log(Double(uf[r * n + j] + 1e-20)) + 1e-20)
            }
            let best = scores.max()!
            #expect(scores[got[r]] >= best - 1e-5 * max(1, abs(best)), "row \(r)")
        }
        #expect(compute.argmax(Tensor([1, 5, 5, 2, 9, 9], shape: [2, 3])).integers() == [1, 1])
    }

    @Test func parallelConversionsEqualScalarOnes() {
        let compute = makeCompute()
        var rng = TestRandom(seed: 19)
        let x = rng.tensor([70_001], -70_000, 70_000)
        for dtype in [DType.float16, .bfloat16] {
            let narrow = x.converted(to: dtype, using: compute)
            let scalar = x.converted(to: dtype)
            #expect(narrow.withUnsafeBufferPointer(as: UInt16.self) { Array($0) } == scalar.withUnsafeBufferPointer(as: UInt16.self) { Array($0) })
            #expect(narrow.toFloat32(using: compute).floats.map(\.bitPattern) == scalar.toFloat32().floats.map(\.bitPattern))
        }
    }
}
