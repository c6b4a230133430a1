import CPaellaKernels
import PaellaTestSupport
import Testing
@testable import PaellaCore

/// Naive NCHW references written straight from the PyTorch definitions, shared by the ops tests.
enum OpsReference {
    static func compute() -> Compute { Compute(pool: ThreadPool(threads: 2), gemm: ReferenceGEMM()) }

    /// NHWC values -> NCHW values (index arithmetic, independent of `Tensor.permuted`).
    static func toNCHW(_ v: [Float], _ b: Int, _ h: Int, _ w: Int, _ c: Int) -> [Float] {
        var out = [Float](repeating: 0, count: v.count)
        for n in 0..<b { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
            out[((n * c + ch) * h + y) * w + x] = v[((n * h + y) * w + x) * c + ch]
        }}}}
        return out
    }

    /// PyTorch's reflection index (ReflectionPad2d), or nil for zero padding outside the image.
    static func padSource(_ i: Int, _ n: Int, _ mode: PaddingMode) -> Int? {
        if i >= 0 && i < n { return i }
        if mode == .zeros { return nil }
        return i < 0 ? -i : 2 * n - 2 - i
    }

    /// `F.conv2d(pad(x), w, bias, stride, dilation=dilation, groups=groups)` in NCHW with an OIHW weight:
    /// out[n, o, y, x] = bias[o] + sum over c in o's group, ky, kx of w[o, c, ky, kx] * xpad[n, g*cg + c, y*s + ky*d, x*s + kx*d].
    static func conv2d(_ x: [Float], _ b: Int, _ cin: Int, _ h: Int, _ w: Int, weight: [Float], bias: [Float]?,
                       cout: Int, kh: Int, kw: Int, stride: Int, padding: Padding2d, mode: PaddingMode,
                       dilation: Int, groups: Int) -> (values: [Float], oh: Int, ow: Int) {
        let oh = (h + padding.top + padding.bottom - dilation * (kh - 1) - 1) / stride + 1
        let ow = (w + padding.left + padding.right - dilation * (kw - 1) - 1) / stride + 1
        let cg = cin / groups, og = cout / groups
        var out = [Float](repeating: 0, count: b * cout * oh * ow)
        for n in 0..<b { for o in 0..<cout { for oy in 0..<oh { for ox in 0..<ow {
            var sum = Double(bias?[o] ?? 0)
            let group = o / og
            for c in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                guard let iy = padSource(oy * stride + ky * dilation - padding.top, h, mode),
                      let ix = padSource(ox * stride + kx * dilation - padding.left, w, mode) else { continue }
                sum += Double(weight[((o * cg + c) * kh + ky) * kw + kx]) * Double(x[((n * cin + group * cg + c) * h + iy) * w + ix])
            }}}
            out[((n * cout + o) * oh + oy) * ow + ox] = Float(sum)
        }}}}
        return (out, oh, ow)
    }

    /// `F.conv_transpose2d` in NCHW with a [Cin, Cout/groups, kH, kW] weight, as its definition: every input
    /// pixel scatters w[c, o, :, :] * x[n, c, iy, ix] onto output (iy*s - p + ky*d, ix*s - p + kx*d).
    static func convTranspose2d(_ x: [Float], _ b: Int, _ cin: Int, _ h: Int, _ w: Int, weight: [Float], bias: [Float]?,
                                cout: Int, k: Int, stride: Int, padding: Int, outputPadding: Int, dilation: Int,
                                groups: Int) -> (values: [Float], oh: Int, ow: Int) {
        let oh = (h - 1) * stride - 2 * padding + dilation * (k - 1) + outputPadding + 1
        let ow = (w - 1) * stride - 2 * padding + dilation * (k - 1) + outputPadding + 1
        let cg = cin / groups, og = cout / groups
        var acc = [Double](repeating: 0, count: b * cout * oh * ow)
        for n in 0..<b { for o in 0..<cout { for i in 0..<(oh * ow) { acc[(n * cout + o) * oh * ow + i] = Double(bias?[o] ?? 0) } } }
        for n in 0..<b { for c in 0..<cin { for iy in 0..<h { for ix in 0..<w {
            let group = c / cg
            for oo in 0..<og { for ky in 0..<k { for kx in 0..<k {
                let oy = iy * stride - padding + ky * dilation, ox = ix * stride - padding + kx * dilation
                guard oy >= 0 && oy < oh && ox >= 0 && ox < ow else { continue }
                let o = group * og + oo
                acc[((n * cout + o) * oh + oy) * ow + ox] +=
                    Double(weight[((c * og + oo) * k + ky) * k + kx]) * Double(x[((n * cin + c) * h + iy) * w + ix])
            }}}
        }}}}
        return (acc.map { Float($0) }, oh, ow)
    }
}

@Suite struct ConvolutionTests {
    struct Case: CustomStringConvertible {
        var b = 1, cin = 3, cout = 3, h = 5, w = 5, kh = 3, kw = 3, stride = 1
        var padding: Padding2d = .zero
        var mode: PaddingMode = .zeros
        var dilation = 1, groups = 1
        var bias = true
        var description: String {
            "b\(b) \(cin)->\(cout) \(h)x\(w) k\(kh)x\(kw) s\(stride) pad(\(padding.top),\(padding.bottom),\(padding.left),\(padding.right)) \(mode) d\(dilation) g\(groups) bias \(bias)"
        }
    }

    static let cases: [Case] = [
        Case(b: 2, cin: 3, cout: 5, h: 4, w: 7, kh: 1, kw: 1),                                     // 1x1: one GEMM
        Case(b: 1, cin: 5, cout: 3, h: 5, w: 5, kh: 1, kw: 1, stride: 2, bias: false),             // 1x1 strided: im2col
        Case(b: 2, cin: 3, cout: 17, h: 9, w: 6, padding: 1),                                       // VQGAN 3x3 pad 1
        Case(b: 1, cin: 5, cout: 5, h: 3, w: 8, padding: 1, mode: .reflect),
        Case(b: 1, cin: 1, cout: 1, h: 1, w: 1, padding: 1),                                        // 1x1 image, zero pad
        Case(b: 2, cin: 17, cout: 17, h: 5, w: 9, padding: 1, mode: .reflect, groups: 17),          // Paella depthwise
        Case(b: 1, cin: 5, cout: 5, h: 7, w: 4, stride: 2, padding: 1, groups: 5, bias: false),     // depthwise strided
        Case(b: 1, cin: 67, cout: 67, h: 3, w: 2, padding: 1, mode: .reflect, groups: 67),          // 64-lane block + tail
        Case(b: 1, cin: 40, cout: 40, h: 2, w: 3, kh: 4, kw: 4, stride: 2, padding: Padding2d(top: 1, bottom: 2, left: 0, right: 1), groups: 40),
        Case(b: 1, cin: 6, cout: 4, h: 6, w: 5, padding: 1, groups: 2),                             // grouped
        Case(b: 1, cin: 6, cout: 6, h: 6, w: 5, padding: 1, groups: 3, bias: false),                // grouped, 2 per group
        Case(b: 1, cin: 5, cout: 3, h: 8, w: 6, kh: 4, kw: 4, stride: 2, padding: 1),              // Paella down
        Case(b: 2, cin: 3, cout: 5, h: 9, w: 7, kh: 4, kw: 4, stride: 2, padding: 1),              // odd sizes
        Case(b: 1, cin: 3, cout: 5, h: 14, w: 28, kh: 14, kw: 14, stride: 14, bias: false),        // CLIP patches
        Case(b: 1, cin: 3, cout: 5, h: 8, w: 7, stride: 2, padding: Padding2d(top: 0, bottom: 1, left: 0, right: 1)), // taming Downsample
        Case(b: 1, cin: 3, cout: 3, h: 9, w: 9, padding: 2, dilation: 2),
        Case(b: 1, cin: 3, cout: 2, h: 4, w: 9, kh: 3, kw: 1, padding: Padding2d(top: 1, bottom: 1, left: 0, right: 0), mode: .reflect),
        Case(b: 2, cin: 24, cout: 40, h: 16, w: 13, padding: 1, groups: 2),                          // big enough to split
    ]

    @Test(arguments: cases) func conv2dMatchesNaive(_ c: Case) {
        expectConv2dMatchesNaive(c, on: OpsReference.compute())
    }

    /// The built-in GEMM backend runs general convolutions as implicit GEMMs (no im2col buffer), split between
    /// threads: the naive result on every thread count, and the same bits on each.
    @Test(arguments: cases) func builtinGEMMConvolutionMatchesNaiveOnAnyThreadCount(_ c: Case) {
        let outputs = [1, 2, 3].map { expectConv2dMatchesNaive(c, on: Compute(pool: ThreadPool(threads: $0), gemm: BuiltinGEMM())) }
        #expect(outputs[1] == outputs[0] && outputs[2] == outputs[0])
    }

    /// 3x3 stride-1 convolutions padded by one zero on images of at least 32 x 32 pixels take Winograd F(2x2, 3x3):
    /// the naive sum within float32 rounding at every ISA level (odd sides: tiles cut by the edge), the same bits
    /// on any thread count (the tiles split at different places), and neighbouring geometries keep the implicit GEMM.
    @Test func winogradConvolutionMatchesNaiveOnAnyThreadCount() {
        let cases = [Case(b: 2, cin: 7, cout: 19, h: 33, w: 35, padding: 1), Case(b: 1, cin: 24, cout: 20, h: 32, w: 40, padding: 1, bias: false)]
        for c in cases {
            #expect(Compute.takesWinograd(ConvolutionKernelTests.geometry(b: c.b, h: c.h, w: c.w, k: 3, stride: 1, pad: 1, mode: PK_PAD_ZEROS), groups: 1))
            for level in availableISAs {
                withISA(level) {
                    let outputs = [1, 2, 3].map { expectConv2dMatchesNaive(c, on: Compute(pool: ThreadPool(threads: $0), gemm: BuiltinGEMM())) }
                    #expect(outputs[1] == outputs[0] && outputs[2] == outputs[0], "\(c) at \(String(cString: pk_isa_name(level)))")
                }
            }
        }
        let square = ConvolutionKernelTests.geometry(b: 1, h: 32, w: 32, k: 3, stride: 1, pad: 1, mode: PK_PAD_ZEROS)
        #expect(!Compute.takesWinograd(square, groups: 2))
        #expect(!Compute.takesWinograd(ConvolutionKernelTests.geometry(b: 1, h: 32, w: 32, k: 3, stride: 1, pad: 1, mode: PK_PAD_REFLECT), groups: 1))
        #expect(!Compute.takesWinograd(ConvolutionKernelTests.geometry(b: 1, h: 32, w: 32, k: 3, stride: 2, pad: 1, mode: PK_PAD_ZEROS), groups: 1))
        #expect(!Compute.takesWinograd(ConvolutionKernelTests.geometry(b: 1, h: 32, w: 32, k: 3, stride: 1, pad: 2, mode: PK_PAD_ZEROS, dilation: 2), groups: 1))
        #expect(!Compute.takesWinograd(ConvolutionKernelTests.geometry(b: 4, h: 16, w: 16, k: 3, stride: 1, pad: 1, mode: PK_PAD_ZEROS), groups: 1))
    }

    @discardableResult
    func expectConv2dMatchesNaive(_ c: Case, on compute: Compute) -> [Float] {
        var rng = TestRandom(seed: UInt64(c.cin * 1000 + c.h * 10 + c.kh))
        let x = rng.tensor([c.b, c.h, c.w, c.cin])
        let weight = rng.floats(c.cout * (c.cin / c.groups) * c.kh * c.kw)
        let bias = c.bias ? rng.floats(c.cout) : nil
        let w = Conv2dWeights(pytorchOIHW: Tensor(weight, shape: [c.cout, c.cin / c.groups, c.kh, c.kw]),
                              bias: bias.map { Tensor($0, shape: [c.cout]) }, groups: c.groups)
        let y = compute.conv2d(x, w, stride: c.stride, padding: c.padding, paddingMode: c.mode, dilation: c.dilation)
        let ref = OpsReference.conv2d(OpsReference.toNCHW(x.floats, c.b, c.h, c.w, c.cin), c.b, c.cin, c.h, c.w,
                                      weight: weight, bias: bias, cout: c.cout, kh: c.kh, kw: c.kw, stride: c.stride,
                                      padding: c.padding, mode: c.mode, dilation: c.dilation, groups: c.groups)
        #expect(y.shape == [c.b, ref.oh, ref.ow, c.cout])
        // Sums of at most 588 products of values in [-1, 1]: float32 rounding stays far below 1e-4.
        #expect(maxAbsDifference(OpsReference.toNCHW(y.floats, c.b, ref.oh, ref.ow, c.cout), ref.values) < 1e-4)
        return y.floats
    }

    @Test func smallColumnBudgetGivesTheSameResult() {
        // A budget of one output row per chunk exercises the chunk loop (13 chunks for 13 output rows).
        var rng = TestRandom(seed: 7)
        let x = rng.tensor([1, 13, 6, 5])
        let w = Conv2dWeights(pytorchOIHW: rng.tensor([3, 5, 3, 3]), bias: rng.tensor([3]))
        let compute = OpsReference.compute()
        let whole = compute.conv2d(x, w, padding: 1, paddingMode: .reflect)
        let chunked = compute.conv2dImplementation(x, w, stride: 1, padding: 1, paddingMode: .reflect, dilation: 1,
                                                   columnBudget: 1)
        #expect(maxAbsDifference(chunked.floats, whole.floats) < 1e-5)  // only GEMM blocking may differ
    }

    @Test func weightConversionFromHalfTypesAndBack() {
        var rng = TestRandom(seed: 3)
        let values = rng.floats(4 * 3 * 2 * 2)
        let f32 = Tensor(values, shape: [4, 3, 2, 2])
        for dtype in [DType.float16, .bfloat16] {
            let stored = f32.converted(to: dtype)
            let w = Conv2dWeights(pytorchOIHW: stored, bias: nil)
            #expect(w.kernel.shape == [2, 2, 3, 4] && w.kernel.dtype == .float32)
            #expect(w.pytorchOIHW().floats == stored.toFloat32().floats)  // exact: only a permutation
        }
        // kernel[ky, kx, c, o] == weight[o, c, ky, kx]: spot-check one element by hand.
        let w = Conv2dWeights(pytorchOIHW: f32, bias: nil)
        let (ky, kx, c, o) = (1, 0, 2, 3)
        let kernelIndex: Int = ((ky * 2 + kx) * 3 + c) * 4 + o
        let weightIndex: Int = ((o * 3 + c) * 2 + ky) * 2 + kx
        #expect(w.kernel.floats[kernelIndex] == values[weightIndex])
        let t = ConvTranspose2dWeights(pytorch: f32.converted(to: .bfloat16), bias: nil, groups: 2)
        #expect(t.inChannels == 4 && t.outChannels == 6 && t.kernel.shape == [4, 2, 2, 3])
    }

    struct TransposedCase: CustomStringConvertible {
        var b = 1, cin = 3, cout = 3, h = 3, w = 3, k = 3, stride = 1, padding = 0, outputPadding = 0, dilation = 1, groups = 1
        var bias = true
        var description: String { "b\(b) \(cin)->\(cout) \(h)x\(w) k\(k) s\(stride) p\(padding) op\(outputPadding) d\(dilation) g\(groups)" }
    }

    static let transposedCases: [TransposedCase] = [
        TransposedCase(b: 2, cin: 5, cout: 3, h: 4, w: 3, k: 4, stride: 2, padding: 1),                 // Paella up
        TransposedCase(b: 1, cin: 3, cout: 17, h: 5, w: 7, k: 3),
        TransposedCase(b: 1, cin: 1, cout: 5, h: 1, w: 1, k: 3, stride: 2, padding: 1, outputPadding: 1),
        TransposedCase(b: 1, cin: 4, cout: 6, h: 3, w: 5, k: 3, stride: 2, padding: 1, groups: 2, bias: false),
        TransposedCase(b: 1, cin: 3, cout: 3, h: 4, w: 4, k: 3, stride: 1, padding: 2, dilation: 2),
        TransposedCase(b: 3, cin: 17, cout: 5, h: 2, w: 3, k: 1),
        TransposedCase(b: 1, cin: 3, cout: 5, h: 9, w: 8, k: 4, stride: 2, padding: 1),
    ]

    @Test(arguments: transposedCases) func convTranspose2dMatchesNaive(_ c: TransposedCase) {
        var rng = TestRandom(seed: UInt64(c.cin * 100 + c.cout))
        let x = rng.tensor([c.b, c.h, c.w, c.cin])
        let weight = rng.floats(c.cin * (c.cout / c.groups) * c.k * c.k)
        let bias = c.bias ? rng.floats(c.cout) : nil
        let w = ConvTranspose2dWeights(pytorch: Tensor(weight, shape: [c.cin, c.cout / c.groups, c.k, c.k]),
                                       bias: bias.map { Tensor($0, shape: [c.cout]) }, groups: c.groups)
        let y = OpsReference.compute().convTranspose2d(x, w, stride: c.stride, padding: c.padding,
                                                       outputPadding: c.outputPadding, dilation: c.dilation)
        let ref = OpsReference.convTranspose2d(OpsReference.toNCHW(x.floats, c.b, c.h, c.w, c.cin), c.b, c.cin, c.h, c.w,
                                               weight: weight, bias: bias, cout: c.cout, k: c.k, stride: c.stride,
                                               padding: c.padding, outputPadding: c.outputPadding, dilation: c.dilation,
                                               groups: c.groups)
        #expect(y.shape == [c.b, ref.oh, ref.ow, c.cout])
        #expect(maxAbsDifference(OpsReference.toNCHW(y.floats, c.b, ref.oh, ref.ow, c.cout), ref.values) < 1e-4)
    }

    // MARK: Backward, against central differences

    /// The loss L = sum(y * r) for a fixed random r, whose output gradient is r. Convolution is linear in x and
    /// in the kernel, so a central difference is exact up to rounding for any step; a step of 0.5 keeps the
    /// rounding error (about 1e-6 relative to L's terms) well below the 1e-3 tolerance.
    @Test(arguments: [
        Case(b: 2, cin: 3, cout: 2, h: 5, w: 4, stride: 2, padding: Padding2d(top: 1, bottom: 0, left: 1, right: 1), mode: .reflect),
        Case(b: 1, cin: 4, cout: 2, h: 4, w: 3, padding: 1, groups: 2),
        Case(b: 1, cin: 3, cout: 3, h: 4, w: 5, padding: 1, mode: .reflect, groups: 3),
        Case(b: 1, cin: 2, cout: 3, h: 3, w: 3, kh: 1, kw: 1, bias: false),
        // Stride 1 with zero padding: on the built-in GEMM the input gradient is a convolution of dy.
        Case(b: 2, cin: 6, cout: 5, h: 5, w: 6, padding: Padding2d(top: 0, bottom: 2, left: 2, right: 1), groups: 1),
        Case(b: 1, cin: 4, cout: 6, h: 5, w: 4, kh: 4, kw: 4, padding: 1, groups: 2),
        Case(b: 1, cin: 3, cout: 2, h: 3, w: 4, padding: 3),  // padding past the kernel: col2im again
    ], [false, true])
    func conv2dBackwardMatchesFiniteDifferences(_ c: Case, builtinGEMM: Bool) throws {
        let compute = builtinGEMM ? Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()) : OpsReference.compute()
        var rng = TestRandom(seed: 11)
        let x = rng.tensor([c.b, c.h, c.w, c.cin])
        let w = Conv2dWeights(pytorchOIHW: rng.tensor([c.cout, c.cin / c.groups, c.kh, c.kw]),
                              bias: c.bias ? rng.tensor([c.cout]) : nil, groups: c.groups)
        func forward(_ x: Tensor, _ w: Conv2dWeights) -> Tensor {
            compute.conv2d(x, w, stride: c.stride, padding: c.padding, paddingMode: c.mode, dilation: c.dilation)
        }
        let r = rng.tensor(forward(x, w).shape)
        func loss(_ x: Tensor, _ w: Conv2dWeights) -> Double {
            zip(forward(x, w).floats, r.floats).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let grads = compute.conv2dBackward(x, w, outputGradient: r, stride: c.stride, padding: c.padding,
                                           paddingMode: c.mode, dilation: c.dilation)
        let step: Float = 0.5
        func nudged(_ t: Tensor, _ i: Int, _ d: Float) -> Tensor {
            var v = t.floats
            v[i] += d
            return Tensor(v, shape: t.shape)
        }
        for i in 0..<x.count {
            let fd = (loss(nudged(x, i, step), w) - loss(nudged(x, i, -step), w)) / Double(2 * step)
            #expect(abs(fd - Double(grads.input.floats[i])) < 1e-3, "dx[\(i)]")
        }
        for i in 0..<w.kernel.count {
            let plus = Conv2dWeights(kernel: nudged(w.kernel, i, step), bias: w.bias, groups: c.groups)
            let minus = Conv2dWeights(kernel: nudged(w.kernel, i, -step), bias: w.bias, groups: c.groups)
            let fd = (loss(x, plus) - loss(x, minus)) / Double(2 * step)
            #expect(abs(fd - Double(grads.kernel.floats[i])) < 1e-3, "dkernel[\(i)]")
        }
        if let bias = w.bias {
            let db = try #require(grads.bias)
            for i in 0..<bias.count {
                let plus = Conv2dWeights(kernel: w.kernel, bias: nudged(bias, i, step), groups: c.groups)
                let minus = Conv2dWeights(kernel: w.kernel, bias: nudged(bias, i, -step), groups: c.groups)
                let fd = (loss(x, plus) - loss(x, minus)) / Double(2 * step)
                #expect(abs(fd - Double(db.floats[i])) < 1e-3, "dbias[\(i)]")
            }
        } else {
            #expect(grads.bias == nil)
        }
    }

    @Test func linearMatchesNaiveAndBackwardMatchesFiniteDifferences() throws {
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 5)
        let (inF, outF) = (5, 3)
        let x = rng.tensor([2, 3, inF])
        let weight = rng.floats(outF * inF), bias = rng.floats(outF)
        let w = LinearWeights(weight: Tensor(weight, shape: [outF, inF]).converted(to: .float32).permuted([1, 0]), layout: .inOut,
                              bias: Tensor(bias, shape: [outF]))
        let y = compute.linear(x, w)
        #expect(y.shape == [2, 3, outF])
        // y[p, o] = bias[o] + sum_i x[p, i] * weight[o, i]  (PyTorch F.linear)
        let xs = x.floats
        let expected: [Float] = (0..<6).flatMap { p in (0..<outF).map { o in
            Float((0..<inF).reduce(Double(bias[o])) { $0 + Double(xs[p * inF + $1]) * Double(weight[o * inF + $1]) })
        }}
        #expect(maxAbsDifference(y.floats, expected) < 1e-5)
        #expect(w.pytorchWeight().floats == weight)

        // Linear in x and in the weights: central differences are exact up to rounding (see the conv test).
        let r = rng.tensor(y.shape)
        func loss(_ x: Tensor, _ w: LinearWeights) -> Double {
            zip(compute.linear(x, w).floats, r.floats).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let g = compute.linearBackward(x, w, outputGradient: r)
        func nudged(_ t: Tensor, _ i: Int, _ d: Float) -> Tensor {
            var v = t.floats
            v[i] += d
            return Tensor(v, shape: t.shape)
        }
        for i in 0..<x.count {
            let fd = (loss(nudged(x, i, 0.5), w) - loss(nudged(x, i, -0.5), w))
            #expect(abs(fd - Double(try #require(g.input).floats[i])) < 1e-4)
        }
        for i in 0..<w.weight.count {
            let fd = loss(x, LinearWeights(weight: nudged(w.weight, i, 0.5), layout: .inOut, bias: w.bias))
                - loss(x, LinearWeights(weight: nudged(w.weight, i, -0.5), layout: .inOut, bias: w.bias))
            #expect(abs(fd - Double(g.weight.floats[i])) < 1e-4)
        }
        let db = try #require(g.bias)
        for i in 0..<outF {
            let fd = loss(x, LinearWeights(weight: w.weight, layout: .inOut, bias: nudged(try #require(w.bias), i, 0.5)))
                - loss(x, LinearWeights(weight: w.weight, layout: .inOut, bias: nudged(try #require(w.bias), i, -0.5)))
            #expect(abs(fd - Double(db.floats[i])) < 1e-4)
        }
    }
}

/// The C kernels against their `_ref` twins at every instruction-set level this CPU has. Forcing the level
/// is process-global, so this suite runs serially and restores the detected level.
@Suite(.serialized) struct ConvolutionKernelTests {
    static var levels: [pk_isa] {
        let best = pk_detected_isa()
        switch best {
        case PK_ISA_AVX512: return [PK_ISA_PORTABLE, PK_ISA_AVX2, PK_ISA_AVX512]
        case PK_ISA_AVX2: return [PK_ISA_PORTABLE, PK_ISA_AVX2]
        case PK_ISA_NEON: return [PK_ISA_PORTABLE, PK_ISA_NEON]
        default: return [PK_ISA_PORTABLE]
        }
    }

    static func geometry(b: Int, h: Int, w: Int, k: Int, stride: Int, pad: Int, mode: pk_pad_mode, dilation: Int = 1) -> pk_conv_geometry {
        let oh = (h + 2 * pad - dilation * (k - 1) - 1) / stride + 1, ow = (w + 2 * pad - dilation * (k - 1) - 1) / stride + 1
        return pk_conv_geometry(batch: b, in_h: h, in_w: w, out_h: oh, out_w: ow, kernel_h: k, kernel_w: k,
                                stride_h: stride, stride_w: stride, dilation_h: dilation, dilation_w: dilation,
                                pad_top: pad, pad_left: pad, pad_mode: mode)
    }

    @Test func depthwiseMatchesReference() {
        let saved = pk_thread_isa()
        defer { pk_set_thread_isa(saved) }
        var rng = TestRandom(seed: 21)
        for level in Self.levels {
            pk_set_thread_isa(Int32(level.rawValue))
            #expect(pk_active_isa() == level)
            for c in [1, 3, 5, 8, 17, 31, 32, 33, 64, 67, 130] {
                for (k, stride, pad, mode) in [(3, 1, 1, PK_PAD_REFLECT), (3, 2, 1, PK_PAD_ZEROS), (4, 2, 1, PK_PAD_ZEROS), (1, 1, 0, PK_PAD_ZEROS)] {
                    var g = Self.geometry(b: 2, h: 5, w: 4, k: k, stride: stride, pad: pad, mode: mode)
                    let x = rng.floats(2 * 5 * 4 * c), w = rng.floats(k * k * c), bias = rng.floats(c)
                    let n = 2 * g.out_h * g.out_w * c
                    var fast = [Float](repeating: .nan, count: n), ref = [Float](repeating: .nan, count: n)
                    for useBias in [true, false] {
                        bias.withUnsafeBufferPointer { bp in
                            let b = useBias ? bp.baseAddress : nil
                            pk_depthwise_conv2d_nhwc(x, c, w, b, &g, 0, 2 * g.out_h, &fast)
                            pk_depthwise_conv2d_nhwc_ref(x, c, w, b, &g, 0, 2 * g.out_h, &ref)
                        }
                        // At most 16 fused vs unfused multiply-adds of values in [-1, 1]: differences ~1e-6.
                        #expect(maxAbsDifference(fast, ref) < 1e-5, "\(String(cString: pk_isa_name(level))) c\(c) k\(k)")
                    }
                }
            }
        }
    }

    @Test func transposedGatherMatchesScatterReference() {
        let saved = pk_thread_isa()
        defer { pk_set_thread_isa(saved) }
        var rng = TestRandom(seed: 22)
        for level in Self.levels {
            pk_set_thread_isa(Int32(level.rawValue))
            for (cg, k, stride, pad) in [(1, 4, 2, 1), (5, 3, 1, 0), (17, 3, 2, 1), (33, 2, 2, 0)] {
                let (b, h, w) = (2, 3, 4)
                let oh = (h - 1) * stride - 2 * pad + k, ow = (w - 1) * stride - 2 * pad + k
                var g = pk_conv_geometry(batch: b, in_h: h, in_w: w, out_h: oh, out_w: ow, kernel_h: k, kernel_w: k,
                                         stride_h: stride, stride_w: stride, dilation_h: 1, dilation_w: 1,
                                         pad_top: pad, pad_left: pad, pad_mode: PK_PAD_ZEROS)
                let col = rng.floats(b * h * w * k * k * cg), bias = rng.floats(2 * cg)
                // Write group 1 of 2 (channels cg..<2cg) of the output, rows 1..<end, so offsets are exercised.
                var fast = [Float](repeating: 7, count: b * oh * ow * 2 * cg), ref = fast
                pk_col2im_transposed_nhwc(col, cg, bias, &g, 2 * cg, cg, 1, b * oh, &fast)
                pk_col2im_transposed_nhwc_ref(col, cg, bias, &g, 2 * cg, cg, 1, b * oh, &ref)
                #expect(maxAbsDifference(fast, ref) < 1e-5)
                #expect(fast[0] == 7 && fast[ow * 2 * cg] == 7)  // row 0 and channel group 0 untouched
            }
        }
    }

    @Test func im2colMatchesReferenceAndItsAdjoint() {
        var rng = TestRandom(seed: 23)
        for (c, k, stride, pad, mode, dilation) in [(5, 3, 1, 1, PK_PAD_REFLECT, 1), (3, 4, 2, 1, PK_PAD_ZEROS, 1),
                                                    (17, 3, 2, 2, PK_PAD_ZEROS, 2), (1, 1, 1, 0, PK_PAD_ZEROS, 1)] {
            var g = Self.geometry(b: 2, h: 6, w: 5, k: k, stride: stride, pad: pad, mode: mode, dilation: dilation)
            let x = rng.floats(2 * 6 * 5 * 2 * c)  // two groups of c channels; lower group 1
            let rows = 2 * g.out_h, width = k * k * c
            var fast = [Float](repeating: .nan, count: rows * g.out_w * width), ref = fast
            pk_im2col_nhwc(x, 2 * c, c, c, &g, 0, rows, &fast)
            pk_im2col_nhwc_ref(x, 2 * c, c, c, &g, 0, rows, &ref)
            #expect(fast == ref)  // pure copies: bit-identical
            // col2im is the adjoint: <im2col(x), v> == <x, col2im(v)> for any v.
            let v = rng.floats(fast.count)
            var back = [Float](repeating: 0, count: x.count)
            pk_col2im_nhwc_add(v, 2 * c, c, c, &g, 0, rows, &back)
            let lhs = zip(fast, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let rhs = zip(x, back).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            #expect(abs(lhs - rhs) < 1e-3)
        }
    }

    /// The implicit-GEMM convolution packs the same floats im2col would have written, with the same blocking and
    /// micro-kernel, so it must equal im2col + pk_sgemm bit for bit, and the naive sum within rounding. The
    /// channel counts put k-block boundaries inside a tap (k = 9 * 150 = 1350 is four blocks of 338 on AVX-512),
    /// pixel ranges start mid-image and mid-strip, and the group is the second of two.
    @Test func implicitGEMMConvolutionEqualsIm2colAndGEMM() {
        let saved = pk_thread_isa()
        defer { pk_set_thread_isa(saved) }
        var rng = TestRandom(seed: 24)
        for level in Self.levels {
            pk_set_thread_isa(Int32(level.rawValue))
            for (cg, n, k, stride, pad, mode, dilation, h, w) in [
                (150, 70, 3, 1, 1, PK_PAD_ZEROS, 1, 9, 11), (5, 33, 3, 1, 1, PK_PAD_REFLECT, 1, 7, 6),
                (17, 12, 4, 2, 1, PK_PAD_ZEROS, 1, 9, 8), (3, 40, 3, 2, 2, PK_PAD_ZEROS, 2, 10, 9), (8, 8, 1, 2, 0, PK_PAD_ZEROS, 1, 5, 5),
            ] {
                var g = Self.geometry(b: 2, h: h, w: w, k: k, stride: stride, pad: pad, mode: mode, dilation: dilation)
                let x = rng.floats(2 * h * w * 2 * cg)
                let depth = k * k * cg, ldk = n + 3, ldy = n + 5
                let kernel = rng.floats(depth * ldk)
                let pixels = 2 * g.out_h * g.out_w
                for (begin, end, beta) in [(0, pixels, Float(0)), (g.out_w + 3, pixels - 2, Float(1))] {
                    let start = rng.floats((end - begin) * ldy)
                    var implicit = start, lowered = start
                    pk_conv2d_gemm_nhwc(x, 2 * cg, cg, cg, &g, begin, end, kernel, ldk, n, beta, &implicit, ldy, nil)
                    // The twin: im2col of whole rows, then the rows of this pixel range through pk_sgemm.
                    var col = [Float](repeating: .nan, count: pixels * depth)
                    pk_im2col_nhwc(x, 2 * cg, cg, cg, &g, 0, 2 * g.out_h, &col)
                    col.withUnsafeBufferPointer { cp in
                        pk_sgemm(0, 0, end - begin, n, depth, 1, cp.baseAddress! + begin * depth, depth, kernel, ldk,
                                 beta, &lowered, ldy, nil)
                    }
                    let label = "\(String(cString: pk_isa_name(level))) cg\(cg) k\(k) s\(stride) pixels \(begin)..<\(end)"
                    #expect(implicit == lowered, "\(label)")
                    var naive = start
                    pk_sgemm_ref(0, 0, end - begin, n, depth, 1, col.withUnsafeBufferPointer { $0.baseAddress! } + begin * depth,
                                 depth, kernel, ldk, beta, &naive, ldy)
                    #expect(maxAbsDifference(implicit, naive) < 1e-3, "\(label)")  // sums of up to 1350 products in [-1, 1]
                }
                // The kernel gradient: rows [first, last) of col^T dy, summed over every pixel.
                let dy = rng.floats(pixels * ldy)
                for (first, last, beta) in [(0, depth, Float(0)), (depth / 3, depth - 1, Float(1))] {
                    let start = rng.floats((last - first) * ldk)
                    var implicit = start, lowered = start
                    pk_conv2d_gemm_kernel_gradient_nhwc(x, 2 * cg, cg, cg, &g, first, last, dy, ldy, n, beta, &implicit, ldk, nil)
                    var col = [Float](repeating: .nan, count: pixels * depth)
                    pk_im2col_nhwc(x, 2 * cg, cg, cg, &g, 0, 2 * g.out_h, &col)
                    col.withUnsafeBufferPointer { cp in
                        pk_sgemm(1, 0, last - first, n, pixels, 1, cp.baseAddress! + first, depth, dy, ldy, beta, &lowered, ldk, nil)
                    }
                    #expect(implicit == lowered, "kernel gradient \(String(cString: pk_isa_name(level))) cg\(cg) k\(k) rows \(first)..<\(last)")
                }
            }
        }
    }
}
