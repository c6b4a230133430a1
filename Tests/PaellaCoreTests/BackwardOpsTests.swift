import PaellaCore
import PaellaTestSupport
import Testing

/// Backward passes of the ops added for training, against central differences of L = sum(y * r) for a fixed
/// random r (whose output gradient is r). Every op here is linear in each argument, so a central difference
/// with a step of 0.5 is exact up to float32 rounding of L (about 1e-5 at these sizes), well inside 1e-3.
@Suite struct BackwardOpsTests {
    static func dot(_ y: Tensor, _ r: Tensor) -> Double {
        zip(y.floats, r.floats).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    static func nudged(_ t: Tensor, _ i: Int, _ d: Float) -> Tensor {
        var v = t.floats
        v[i] += d
        return Tensor(v, shape: t.shape)
    }

    /// Checks `analytic` against central differences of `loss` over every element of `t`.
    static func expectMatchesFiniteDifferences(_ t: Tensor, _ analytic: Tensor, _ what: String, _ loss: (Tensor) -> Double) {
        #expect(analytic.shape == t.shape, "\(what) shape")
        let a = analytic.floats
        for i in 0..<t.count {
            let fd = (loss(nudged(t, i, 0.5)) - loss(nudged(t, i, -0.5))) / 1.0
            #expect(abs(fd - Double(a[i])) < 1e-3, "\(what)[\(i)]: finite difference \(fd), analytic \(a[i])")
        }
    }

    struct TransposedCase: Sendable, CustomTestStringConvertible {
        var b: Int, cin: Int, cout: Int, h: Int, w: Int, k: Int, stride: Int, padding: Int, outputPadding = 0, groups = 1, bias = true
        var testDescription: String { "\(b)x\(h)x\(w)x\(cin)->\(cout) k\(k) s\(stride) p\(padding) op\(outputPadding) g\(groups)" }
    }

    @Test(arguments: [
        TransposedCase(b: 2, cin: 3, cout: 2, h: 3, w: 4, k: 4, stride: 2, padding: 1),            // the denoiser's upsampler
        TransposedCase(b: 1, cin: 4, cout: 2, h: 2, w: 3, k: 3, stride: 2, padding: 1, outputPadding: 1, groups: 2),
        TransposedCase(b: 1, cin: 2, cout: 3, h: 3, w: 2, k: 3, stride: 1, padding: 0, bias: false),
    ])
    func convTranspose2dBackward(_ c: TransposedCase) throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 21)
        let x = rng.tensor([c.b, c.h, c.w, c.cin])
        let weight = rng.tensor([c.cin, c.cout / c.groups, c.k, c.k])
        let bias = c.bias ? rng.tensor([c.cout]) : nil
        func forward(_ x: Tensor, _ w: ConvTranspose2dWeights) -> Tensor {
            compute.convTranspose2d(x, w, stride: c.stride, padding: c.padding, outputPadding: c.outputPadding)
        }
        let w = ConvTranspose2dWeights(pytorch: weight, bias: bias, groups: c.groups)
        let r = rng.tensor(forward(x, w).shape)
        let g = compute.convTranspose2dBackward(x, w, outputGradient: r, stride: c.stride, padding: c.padding,
                                                outputPadding: c.outputPadding)
        Self.expectMatchesFiniteDifferences(x, g.input, "dx") { Self.dot(forward($0, w), r) }
        // The kernel gradient comes in the compute layout [Cin, kH, kW, Cout/g]; nudge the PyTorch weight instead.
        let dWeight = g.kernel.permuted([0, 3, 1, 2])
        Self.expectMatchesFiniteDifferences(weight, dWeight, "dweight") {
            Self.dot(forward(x, ConvTranspose2dWeights(pytorch: $0, bias: bias, groups: c.groups)), r)
        }
        if let bias {
            Self.expectMatchesFiniteDifferences(bias, try #require(g.bias), "dbias") {
                Self.dot(forward(x, ConvTranspose2dWeights(pytorch: weight, bias: $0, groups: c.groups)), r)
            }
        } else {
            #expect(g.bias == nil)
        }
    }

    @Test func embeddingBackwardAddsRowsPerToken() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 22)
        let table = rng.tensor([7, 5])
        let tokens = Tensor(int32: (0..<12).map { _ in Int32(rng.int(0...6)) }, shape: [2, 2, 3])  // repeats
        let r = rng.tensor([2, 2, 3, 5])
        let g = compute.embeddingBackward(tokens, outputGradient: r, rows: 7)
        Self.expectMatchesFiniteDifferences(table, g, "dtable") { Self.dot(compute.embedding(tokens, table: $0), r) }
    }

    @Test(arguments: [true, false])
    func outInLinearBackward(bias hasBias: Bool) throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 23)
        let x = rng.tensor([2, 3, 5])
        let weight = rng.tensor([4, 5]), bias = hasBias ? rng.tensor([4]) : nil
        let w = LinearWeights(weight: weight, layout: .outIn, bias: bias)
        let r = rng.tensor([2, 3, 4])
        let g = compute.linearBackward(x, w, outputGradient: r)
        Self.expectMatchesFiniteDifferences(x, try #require(g.input), "dx") { Self.dot(compute.linear($0, w), r) }
        Self.expectMatchesFiniteDifferences(weight, g.weight, "dweight") {
            Self.dot(compute.linear(x, LinearWeights(weight: $0, layout: .outIn, bias: bias)), r)
        }
        if let bias {
            Self.expectMatchesFiniteDifferences(bias, try #require(g.bias), "dbias") {
                Self.dot(compute.linear(x, LinearWeights(weight: weight, layout: .outIn, bias: $0)), r)
            }
        }
        #expect(compute.linearBackward(x, w, outputGradient: r, inputGradient: false).input == nil)
    }

    @Test func splitIsTheBackwardOfConcat() {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 24)
        let a = rng.tensor([2, 3, 2, 4]), b = rng.tensor([2, 3, 2, 1]), c = rng.tensor([2, 3, 2, 3])
        let joined = compute.concat([a, b, c], axis: 3)
        let r = rng.tensor(joined.shape)
        let pieces = compute.split(r, sizes: [4, 1, 3], axis: 3)
        Self.expectMatchesFiniteDifferences(a, pieces[0], "da") { Self.dot(compute.concat([$0, b, c], axis: 3), r) }
        Self.expectMatchesFiniteDifferences(b, pieces[1], "db") { Self.dot(compute.concat([a, $0, c], axis: 3), r) }
        let middle = compute.split(joined, sizes: [1, 2], axis: 1)
        #expect(middle[0].floats + [] == compute.split(compute.concat([a, b, c], axis: 3), sizes: [1, 2], axis: 1)[0].floats)
        #expect(compute.concat(middle, axis: 1).floats == joined.floats)
    }

    struct DepthwiseCase: Sendable, CustomTestStringConvertible {
        var b: Int, c: Int, h: Int, w: Int, k: Int, stride = 1, padding: Padding2d, mode: PaddingMode = .zeros, dilation = 1
        var testDescription: String { "\(b)x\(h)x\(w)x\(c) k\(k) s\(stride) d\(dilation) \(padding) \(mode)" }
    }

    /// The direct depthwise path of conv2dBackward (more channels than a thread's minimum chunk, so the channel
    /// split is exercised), against central differences.
    @Test(arguments: [
        DepthwiseCase(b: 2, c: 37, h: 4, w: 5, k: 3, padding: 1, mode: .reflect),                 // the denoiser's
        DepthwiseCase(b: 1, c: 20, h: 6, w: 5, k: 3, stride: 2, padding: Padding2d(top: 0, bottom: 1, left: 2, right: 0), dilation: 2),
    ])
    func depthwiseConv2dBackward(_ c: DepthwiseCase) throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 25)
        let x = rng.tensor([c.b, c.h, c.w, c.c])
        let weight = rng.tensor([c.c, 1, c.k, c.k]), bias = rng.tensor([c.c])
        func forward(_ x: Tensor, _ w: Conv2dWeights) -> Tensor {
            compute.conv2d(x, w, stride: c.stride, padding: c.padding, paddingMode: c.mode, dilation: c.dilation)
        }
        let w = Conv2dWeights(pytorchOIHW: weight, bias: bias, groups: c.c)
        #expect(w.isDepthwise)
        let r = rng.tensor(forward(x, w).shape)
        let g = compute.conv2dBackward(x, w, outputGradient: r, stride: c.stride, padding: c.padding, paddingMode: c.mode, dilation: c.dilation)
        Self.expectMatchesFiniteDifferences(x, g.input, "dx") { Self.dot(forward($0, w), r) }
        Self.expectMatchesFiniteDifferences(weight, g.kernel.permuted([3, 2, 0, 1]), "dweight") {
            Self.dot(forward(x, Conv2dWeights(pytorchOIHW: $0, bias: bias, groups: c.c)), r)
        }
        Self.expectMatchesFiniteDifferences(bias, try #require(g.bias), "dbias") {
            Self.dot(forward(x, Conv2dWeights(pytorchOIHW: weight, bias: $0, groups: c.c)), r)
        }
    }
}
