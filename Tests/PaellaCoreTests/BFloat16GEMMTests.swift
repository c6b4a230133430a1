import CPaellaKernels
import Foundation
import PaellaTestSupport
import Testing
@testable import PaellaCore

/// `x` rounded to the nearest bfloat16 (ties to even), by the conversion kernels' reference.
private func roundedToBF16(_ x: Float) -> Float {
    var value = x, half: UInt16 = 0, back: Float = 0
    pk_f32_to_bf16_ref(&value, &half, 1)
    pk_bf16_to_f32_ref(&half, &back, 1)
    return back
}

/// A product C = A * op(B) + beta * C with op(B) the weights, packed as bfloat16.
private struct BF16Problem: CustomStringConvertible {
    let m: Int, n: Int, k: Int, transposed: Bool, beta: Float
    let a: [Float], weights: [Float], c: [Float]

    init(m: Int, n: Int, k: Int, transposed: Bool, beta: Float, seed: UInt64) {
        (self.m, self.n, self.k, self.transposed, self.beta) = (m, n, k, transposed, beta)
        var random = TestRandom(seed: seed)
        a = random.floats(m * k)
        weights = random.floats(k * n)
        // With beta 0, C must not be read: NaN there would show.
        c = beta == 0 ? [Float](repeating: .nan, count: m * n) : random.floats(m * n)
    }

    var description: String { "m=\(m) n=\(n) k=\(k) \(transposed ? "[n, k]" : "[k, n]") weights beta=\(beta)" }

    var packed: BFloat16Matrix {
        BFloat16Matrix(Tensor(weights, shape: transposed ? [n, k] : [k, n]), transposed: transposed)
    }

    func weight(_ p: Int, _ j: Int) -> Float { transposed ? weights[j * k + p] : weights[p * n + j] }

    /// What every path must compute: both operands rounded to bfloat16, products summed exactly (in double), and
    /// a bound on float32 summation error for each element (sqrt(k)-scaled, as in GEMMTests).
    func expected() -> (values: [Float], bounds: [Float]) {
        var values = [Float](repeating: 0, count: m * n), bounds = values
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let product = Double(roundedToBF16(a[i * k + p])) * Double(roundedToBF16(weight(p, j)))
                    sum += product
                    magnitude += abs(product)
                }
                let previous = beta == 0 ? 0 : Double(beta) * Double(c[i * n + j])
                values[i * n + j] = Float(sum + previous)
                bounds[i * n + j] = Float(4 * (Double(k).squareRoot() + 2) * Double(Float.ulpOfOne) * (magnitude + abs(previous)))
            }
        }
        return (values, bounds)
    }

    /// C from `Compute.gemmBF16` on `threads` threads.
    func run(threads: Int, packed: BFloat16Matrix) -> [Float] {
        var out = c
        let compute = Compute(pool: ThreadPool(threads: threads), gemm: BuiltinGEMM())
        a.withUnsafeBufferPointer { pa in out.withUnsafeMutableBufferPointer { pc in
            compute.gemmBF16(m: m, a: pa.baseAddress!, lda: k, b: packed, beta: beta, c: pc.baseAddress!, ldc: n)
        }}
        return out
    }
}

@Suite struct BFloat16GEMMTests {
    @Test("bfloat16 GEMM sums the bfloat16-rounded products in float32, at every ISA level, the same bits on 1-3 threads",
          arguments: availableISAs.map { String(cString: pk_isa_name($0)) })
    func matchesRoundedProducts(isaName: String) throws {
        let isa = try #require(availableISAs.first { String(cString: pk_isa_name($0)) == isaName })
        withISA(isa) {
            // Odd and even depths, edge tiles in both directions, several k blocks (256) and row blocks (480), a
            // single panel and a column count that splits into panels between threads.
            let shapes = [(1, 1, 1), (13, 33, 7), (29, 70, 300), (100, 64, 513), (12, 32, 2), (500, 40, 20), (7, 300, 64)]
            for (index, (m, n, k)) in shapes.enumerated() {
                for (variant, (transposed, beta)) in [(true, Float(0)), (false, Float(1)), (true, Float(0.5))].enumerated() {
                    let problem = BF16Problem(m: m, n: n, k: k, transposed: transposed, beta: beta, seed: UInt64(index * 10 + variant))
                    let packed = problem.packed
                    let (expected, bounds) = problem.expected()
                    let results = [1, 2, 3].map { problem.run(threads: $0, packed: packed) }
                    let worst = zip(zip(results[0], expected), bounds).map { abs($0.0 - $0.1) / max($1, .leastNormalMagnitude) }.max() ?? 0
                    #expect(worst <= 1, "\(problem) at \(isaName): error \(worst) x the bound")
                    #expect(results[1] == results[0] && results[2] == results[0], "\(problem): thread counts disagree")
                    // The C reference twin reads the same packed words.
                    var twin = problem.c
                    problem.a.withUnsafeBufferPointer { pa in twin.withUnsafeMutableBufferPointer { pc in
                        pk_gemm_bf16_ref(m, n, k, pa.baseAddress!, k, packed.words, 0, beta, pc.baseAddress!, n)
                    }}
                    let twinWorst = zip(zip(results[0], twin), bounds).map { abs($0.0 - $0.1) / max($1, .leastNormalMagnitude) }.max() ?? 0
                    #expect(twinWorst <= 1, "\(problem) at \(isaName): \(twinWorst) x the bound from pk_gemm_bf16_ref")
                }
            }
        }
    }

    @Test("the AVX2 kernel gives the portable kernel's results bit for bit (the bfloat16 products are exact in float32)")
    func avx2MatchesPortable() throws {
        guard let avx2 = availableISAs.first(where: { $0 == PK_ISA_AVX2 }) else { return } // not an AVX2 CPU
        for (index, (m, n, k)) in [(13, 33, 7), (29, 70, 300), (100, 64, 513), (3, 32, 2)].enumerated() {
            for beta in [Float(0), 1] {
                let problem = BF16Problem(m: m, n: n, k: k, transposed: index % 2 == 0, beta: beta, seed: UInt64(40 + index))
                let packed = problem.packed
                let fast = withISA(avx2) { () -> [Float] in
                    #expect(String(cString: pk_bf16_kernel_name()) == "avx2")
                    return problem.run(threads: 2, packed: packed)
                }
                let portable = withISA(PK_ISA_PORTABLE) { problem.run(threads: 2, packed: packed) }
                #expect(fast == portable, "\(problem): the AVX2 kernel differs from the portable one")
            }
        }
    }

    @Test("the native AVX512-BF16 kernel is used where the CPU has it, and never below the avx512 level")
    func nativeKernelDispatch() {
        let saved = pk_set_thread_isa(Int32(PK_ISA_PORTABLE.rawValue))
        #expect(String(cString: pk_bf16_kernel_name()) == "portable")
        pk_set_thread_isa(saved)
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? []
        if pk_active_isa() == PK_ISA_AVX512 && flags.contains("avx512_bf16") {
            #expect(String(cString: pk_bf16_kernel_name()) == "avx512-bf16", "this CPU has AVX512-BF16 but the bfloat16 GEMM does not use it")
        } else if pk_active_isa() != PK_ISA_AVX512 {
            #expect(String(cString: pk_bf16_kernel_name()) != "avx512-bf16")
        }
    }

    @Test("linear layers with bfloat16 weights stay within bfloat16 rounding of float32, and keep no float32 copy")
    func linearCloseToFloat32() {
        var random = TestRandom(seed: 7)
        let x = Tensor(random.floats(37 * 96), shape: [37, 96])
        let weight = Tensor(random.floats(80 * 96), shape: [80, 96]), bias = Tensor(random.floats(80), shape: [80])
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        let exact = compute.linear(x, LinearWeights(weight: weight, layout: .outIn, bias: bias)).floats
        let packed = LinearWeights(weight: weight, layout: .outIn, bias: bias, precision: .bf16)
        #expect(packed.bf16 != nil && packed.weight.storage.isReadOnlyZeros)
        let approximate = compute.linear(x, packed).floats
        let difference = zip(exact, approximate).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let size = exact.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        // Each operand carries a relative rounding error of at most 2^-9; over 96 random-signed products the
        // relative error of the sums is about 2^-9 (0.2%), far below 1%, and far above float32's 1e-7.
        #expect(difference / size < 1e-2 && difference / size > 1e-5, "relative error \(difference / size)")
        // An [in, out] weight packs the same matrix.
        let inOut = LinearWeights(weight: weight.permuted([1, 0]), layout: .inOut, bias: bias, precision: .bf16)
        #expect(compute.linear(x, inOut).floats == approximate)
    }

    @Test("convolutions with bfloat16 kernels equal float32 convolutions of the bfloat16-rounded input and kernel",
          arguments: [(1, 1, 0, false), (4, 2, 1, false), (3, 1, 1, true), (3, 1, 1, false)])
    func convolutionMatchesRoundedOperands(kernel: Int, stride: Int, pad: Int, reflect: Bool) {
        var random = TestRandom(seed: UInt64(kernel * 10 + stride))
        let (b, h, w, cin, cout) = (2, 9, 8, 20, 45)
        let x = random.floats(b * h * w * cin), k = random.floats(cout * cin * kernel * kernel), bias = random.floats(cout)
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        let mode: PaddingMode = reflect ? .reflect : .zeros
        let packed = Conv2dWeights(pytorchOIHW: Tensor(k, shape: [cout, cin, kernel, kernel]), bias: Tensor(bias, shape: [cout]),
                                   precision: .bf16)
        #expect(packed.bf16 != nil)
        let got = compute.conv2d(Tensor(x, shape: [b, h, w, cin]), packed, stride: stride, padding: Padding2d(pad), paddingMode: mode)
        let rounded = Conv2dWeights(pytorchOIHW: Tensor(k.map(roundedToBF16), shape: [cout, cin, kernel, kernel]),
                                    bias: Tensor(bias, shape: [cout]))
        let want = compute.conv2d(Tensor(x.map(roundedToBF16), shape: [b, h, w, cin]), rounded, stride: stride,
                                  padding: Padding2d(pad), paddingMode: mode)
        #expect(got.shape == want.shape)
        let scale = want.floats.map(abs).max() ?? 1
        let worst = zip(got.floats, want.floats).map { abs($0 - $1) }.max() ?? 0
        // Products of bfloat16s are exact in float32; only the order of the float32 sums differs.
        #expect(worst <= 1e-5 * scale, "kernel \(kernel) stride \(stride): worst difference \(worst) against \(scale)")
    }

    @Test("3x3 convolutions that take Winograd use the bfloat16 kernel's values on the float32 input, and unpacking inverts packing")
    func winogradConvolutionWithBFloat16Kernel() {
        var random = TestRandom(seed: 31)
        let (b, h, w, cin, cout) = (1, 33, 32, 12, 40)
        let x = Tensor(random.floats(b * h * w * cin), shape: [b, h, w, cin])
        let k = random.floats(cout * cin * 9), bias = Tensor(random.floats(cout), shape: [cout])
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        let packed = Conv2dWeights(pytorchOIHW: Tensor(k, shape: [cout, cin, 3, 3]), bias: bias, precision: .bf16)
        let rounded = Conv2dWeights(pytorchOIHW: Tensor(k.map(roundedToBF16), shape: [cout, cin, 3, 3]), bias: bias)
        // Unpacking gives the rounded kernel matrix [9 * cin, cout] exactly.
        let unpacked = packed.bf16!.withUnpacked { Array(UnsafeBufferPointer(start: $0, count: 9 * cin * cout)) }
        #expect(unpacked == rounded.kernel.floats)
        #expect(Compute.takesWinograd(pk_conv_geometry(batch: b, in_h: h, in_w: w, out_h: h, out_w: w, kernel_h: 3, kernel_w: 3,
                                                       stride_h: 1, stride_w: 1, dilation_h: 1, dilation_w: 1, pad_top: 1,
                                                       pad_left: 1, pad_mode: PK_PAD_ZEROS), groups: 1))
        let got = compute.conv2d(x, packed, padding: 1), want = compute.conv2d(x, rounded, padding: 1)
        #expect(got.floats == want.floats, "the same Winograd path on the same float32 values")
    }

    @Test("packing pads the depth to even and the columns to whole panels with zeros")
    func packedLayout() {
        // op(B) = [[1, 2, 3], [4, 5, 6], [7, 8, 9]] (k = 3, n = 3): one panel of 2 pair rows.
        let packed = BFloat16Matrix(Tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], shape: [3, 3]), transposed: false)
        #expect(pk_bf16_packed_words(3, 3) == 64 && packed.byteCount == 256)
        let words = (0..<64).map { packed.words[$0] }
        func bf16Bits(_ x: Float) -> UInt32 { x.bitPattern >> 16 }  // exact for these small integers
        #expect(words[0] == bf16Bits(1) | bf16Bits(4) << 16)   // column 0, k = 0 and 1
        #expect(words[2] == bf16Bits(3) | bf16Bits(6) << 16)   // column 2
        #expect(words[32] == bf16Bits(7))                        // k = 2 with a zero k = 3
        #expect(words[3...31].allSatisfy { $0 == 0 } && words[35...63].allSatisfy { $0 == 0 })
    }
}
