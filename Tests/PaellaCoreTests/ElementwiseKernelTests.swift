import Foundation
import Testing
import CPaellaKernels
import PaellaCore
import PaellaTestSupport

/// Every fast element-wise kernel against its `_ref` twin (or double-precision libm), on every instruction set
/// this CPU has, over odd sizes that exercise the vector tails. The level is forced for the test's thread only (`pk_set_thread_isa`).
@Suite(.serialized) struct ElementwiseKernelTests {
    static let sizes = [1, 3, 7, 15, 17, 31, 33, 100, 1025]

    /// The ISA levels to test here: the detected one and each lower level it can be forced to.
    static var levels: [pk_isa] {
        switch pk_detected_isa() {
        case PK_ISA_AVX512: return [PK_ISA_AVX512, PK_ISA_AVX2, PK_ISA_PORTABLE]
        case PK_ISA_AVX2: return [PK_ISA_AVX2, PK_ISA_PORTABLE]
        case PK_ISA_NEON: return [PK_ISA_NEON, PK_ISA_PORTABLE]
        default: return [PK_ISA_PORTABLE]
        }
    }

    /// Runs `body` once per ISA level, restoring the detected level afterwards.
    func forEachISA(_ body: (String) throws -> Void) rethrows {
        let saved = pk_thread_isa()
        defer { pk_set_thread_isa(saved) }
        for isa in Self.levels {
            pk_set_thread_isa(Int32(isa.rawValue))
            #expect(pk_active_isa() == isa)
            try body(String(cString: pk_isa_name(isa)))
        }
    }

    // MARK: Vector maths against double-precision libm

    @Test func erfAccuracy() {
        // Dense grid over [-6, 6]; the kernel's documented bound is 1.2e-7 absolute (measured 6.5e-8).
        let x = (0..<200_001).map { Float(-6 + 12 * Double($0) / 200_000) }
        forEachISA { isa in
            var y = [Float](repeating: 0, count: x.count)
            pk_erf(x, &y, x.count)
            var worst = 0.0
            for i in x.indices { worst = max(worst, abs(Double(y[i]) - Foundation.erf(Double(x[i])))) }
            #expect(worst <= 1.2e-7, "\(isa): erf error \(worst)")
        }
    }

    @Test func expAndLogAccuracy() {
        // Relative error within 2 ulp (2 * 2^-23 relative at worst) wherever the result is a normal float.
        let xe = (0..<100_001).map { Float(-87 + 175 * Double($0) / 100_000) }
        let xl = (0..<100_001).map { Float(pow(10, -30 + 60 * Double($0) / 100_000)) }
        forEachISA { isa in
            var y = [Float](repeating: 0, count: xe.count)
            pk_exp(xe, &y, xe.count)
            var worst = 0.0
            for i in xe.indices { let e = Foundation.exp(Double(xe[i])); worst = max(worst, abs(Double(y[i]) - e) / e) }
            #expect(worst <= 2.4e-7, "\(isa): exp relative error \(worst)")
            pk_log(xl, &y, xl.count)
            worst = 0
            for i in xl.indices where xl[i] != 1 {
                let e = Foundation.log(Double(xl[i]))
                worst = max(worst, abs(Double(y[i]) - e) / abs(e))
            }
            #expect(worst <= 2.4e-7, "\(isa): log relative error \(worst)")
            // Special values, as libm defines them.
            let special: [Float] = [0, -1, .infinity, -.infinity, .nan, 200, -200]
            var out = [Float](repeating: 0, count: special.count)
            pk_exp(special, &out, special.count)
            #expect(out[0] == 1 && out[2] == .infinity && out[3] == 0 && out[4].isNaN && out[5] == .infinity && out[6] == 0, "\(isa): exp specials \(out)")
            pk_log(special, &out, special.count)
            #expect(out[0] == -.infinity && out[1].isNaN && out[2] == .infinity && out[3].isNaN && out[4].isNaN, "\(isa): log specials \(out)")
        }
    }

    // MARK: Activations

    /// GELU's backward: dy (Phi(x) + x phi(x)) against the libm twin, in place too, with inputs whose density
    /// underflows.
    @Test func geluBackwardMatchesReference() {
        var rng = TestRandom(seed: 41)
        forEachISA { isa in
            for n in Self.sizes {
                var x = rng.floats(n, -8, 8)
                if n > 3 { (x[0], x[1], x[2]) = (-100, 100, 0) }
                let dy = rng.floats(n, -2, 2)
                var fast = [Float](repeating: .nan, count: n), ref = [Float](repeating: 0, count: n)
                pk_gelu_backward(x, dy, &fast, n)
                pk_gelu_backward_ref(x, dy, &ref, n)
                for i in 0..<n {
                    #expect(abs(fast[i] - ref[i]) <= 4e-7 * (1 + abs(x[i])) * abs(dy[i]) + 1e-30, "\(isa) n=\(n) x=\(x[i])")
                }
                var inPlace = dy
                inPlace.withUnsafeMutableBufferPointer { pk_gelu_backward(x, $0.baseAddress!, $0.baseAddress!, n) }
                #expect(inPlace == fast)
            }
        }
    }

    @Test func geluMatchesReference() {
        var rng = TestRandom(seed: 1)
        forEachISA { isa in
            for n in Self.sizes {
                let x = rng.floats(n, -8, 8)
                var fast = [Float](repeating: 0, count: n), ref = fast
                pk_gelu(x, &fast, n)
                pk_gelu_ref(x, &ref, n)
                // Both erfs are within 6.5e-8 of the truth; GELU scales that by |x|/2, plus result rounding.
                for i in 0..<n { #expect(abs(fast[i] - ref[i]) <= 2e-7 * (1 + abs(x[i])), "\(isa) n=\(n) x=\(x[i])") }
                // In place gives the same.
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { pk_gelu($0.baseAddress!, $0.baseAddress!, n) }
                #expect(inPlace == fast)
            }
        }
    }

    @Test func siluMatchesReference() {
        var rng = TestRandom(seed: 2)
        forEachISA { isa in
            for n in Self.sizes {
                var x = rng.floats(n, -30, 30)
                if n > 3 { x[0] = -100; x[1] = 100; x[2] = 0 }  // e^-x overflowing, vanishing, and the origin
                var fast = [Float](repeating: 0, count: n), ref = fast
                pk_silu(x, &fast, n)
                pk_silu_ref(x, &ref, n)
                // A few ulp of exp and one of the division: 4 ulp relative.
                for i in 0..<n { #expect(abs(fast[i] - ref[i]) <= 5e-7 * abs(ref[i]) + 1e-38, "\(isa) n=\(n) x=\(x[i])") }
            }
        }
    }

    // MARK: Softmax

    @Test func softmaxMatchesReference() {
        var rng = TestRandom(seed: 3)
        forEachISA { isa in
            for n in Self.sizes {
                let rows = rng.int(1...9)
                var x = rng.floats(rows * n, -10, 10)
                for i in x.indices where rng.int(0...9) == 0 { x[i] = -.infinity }  // masked entries
                if rows > 1 { for j in 0..<n { x[n + j] = -.infinity } }          // a fully masked row
                var fast = [Float](repeating: 0, count: x.count), ref = fast
                pk_softmax(x, &fast, rows, n)
                pk_softmax_ref(x, &ref, rows, n)
                // exp within 2 ulp; the float sum of up to 1025 terms in 8-16 lanes adds at most ~1e-6 relative.
                for i in x.indices { #expect(abs(fast[i] - ref[i]) <= 2e-6 * ref[i] + 1e-12, "\(isa) n=\(n)") }
                for i in x.indices where x[i] == -.infinity { #expect(fast[i] == 0) }
                pk_log_softmax(x, &fast, rows, n)
                pk_log_softmax_ref(x, &ref, rows, n)
                for i in x.indices {
                    if ref[i] == -.infinity { #expect(fast[i] == -.infinity); continue }
                    #expect(abs(fast[i] - ref[i]) <= 2e-6 * (1 + abs(ref[i])), "\(isa) n=\(n) log-softmax")
                }
            }
        }
    }

    /// The typical filter's per-entry kernel against its twin: probabilities, entropy and scores to float
    /// round-off (the fast versions sum the entropy in lanes), the bucket histogram's totals, masked entries and a
    /// fully masked row; the filtered-row writer exactly.
    @Test func typicalScoresMatchReference() {
        var rng = TestRandom(seed: 31)
        let shift: Int32 = 20, buckets = 1 << (31 - Int(shift))
        forEachISA { isa in
            for n in Self.sizes {
                for masked in [false, true] {
                    var x = rng.floats(n, -10, 10)
                    for i in x.indices where rng.int(0...9) == 0 { x[i] = -.infinity }
                    if masked { x = [Float](repeating: -.infinity, count: n) }
                    let empty = x.allSatisfy { $0 == -.infinity }  // also a short row whose entries all drew a mask
                    var (p, pRef) = ([Float](repeating: .nan, count: n), [Float](repeating: .nan, count: n))
                    var (bits, bitsRef) = ([UInt32](repeating: 0, count: n), [UInt32](repeating: 0, count: n))
                    var (mass, massRef) = ([Double](repeating: .nan, count: buckets), [Double](repeating: .nan, count: buckets))
                    var (count, countRef) = ([Int32](repeating: -1, count: buckets), [Int32](repeating: -1, count: buckets))
                    let h = pk_typical_scores(x, n, &p, &bits, shift, &mass, &count)
                    let hRef = pk_typical_scores_ref(x, n, &pRef, &bitsRef, shift, &massRef, &countRef)
                    #expect(abs(h - hRef) <= 1e-5 * (1 + abs(hRef)), "\(isa) n=\(n) entropy \(h) against \(hRef)")
                    for i in 0..<n {
                        #expect(abs(p[i] - pRef[i]) <= 2e-6 * pRef[i] + 1e-12, "\(isa) n=\(n) p[\(i)]")
                        let (score, scoreRef) = (Float(bitPattern: bits[i]), Float(bitPattern: bitsRef[i]))
                        #expect(score >= 0 && (score == scoreRef || abs(score - scoreRef) <= 2e-5 * (1 + scoreRef)),
                                "\(isa) n=\(n) score[\(i)] \(score) against \(scoreRef)")
                        if x[i] == -.infinity { #expect(p[i] == 0 && score == .infinity) }
                    }
                    #expect(count.reduce(0, +) == Int32(n) && countRef.reduce(0, +) == Int32(n))
                    #expect(abs(mass.reduce(0, +) - (empty ? 0 : 1)) <= 1e-5, "\(isa) n=\(n) mass")
                    if empty { #expect(h == 0) }
                    // The threshold search against its twin, and against the whole row sorted by (score, index).
                    let sortedKeys = (0..<n).map { UInt64(bits[$0]) << 32 | UInt64($0) }.sorted()
                    for target: Float in [0.05, 0.2, 0.9, 1.5] {
                        var (keys, keysRef) = ([UInt64](repeating: 0, count: n), [UInt64](repeating: 0, count: n))
                        let found = pk_typical_threshold(p, bits, n, target, shift, mass, count, &keys)
                        let foundRef = pk_typical_threshold_ref(p, bits, n, target, shift, mass, count, &keysRef)
                        var below = 0.0, expected = UInt32.max
                        for key in sortedKeys {
                            below += Double(p[Int(key & 0xFFFF_FFFF)])
                            if Float(below) >= target { expected = UInt32(key >> 32); break }
                        }
                        #expect(found == foundRef && found == expected, "\(isa) n=\(n) mass \(target): \(found), twin \(foundRef), sorted row \(expected)")
                    }
                    // The writer: entries scoring above a threshold (here the median score) become -inf.
                    let threshold = bits.sorted()[n / 2]
                    var (y, yRef) = ([Float](repeating: .nan, count: n), [Float](repeating: 0, count: n))
                    pk_typical_apply(x, bits, threshold, &y, n)
                    pk_typical_apply_ref(x, bits, threshold, &yRef, n)
                    #expect(y.map(\.bitPattern) == yRef.map(\.bitPattern), "\(isa) n=\(n) apply")
                    #expect((0..<n).allSatisfy { (y[$0] == -.infinity) == (bits[$0] > threshold || x[$0] == -.infinity) })
                }
            }
        }
    }

    // MARK: Normalization

    @Test func layerNormMatchesReference() {
        var rng = TestRandom(seed: 4)
        forEachISA { isa in
            for n in Self.sizes {
                for affine in [false, true] {
                    let rows = rng.int(1...9)
                    // An offset of 3 against a spread of 1 checks that the mean is removed before squaring.
                    let x = rng.floats(rows * n, 2, 4)
                    let w = affine ? rng.floats(n, 0.5, 1.5) : nil, b = affine ? rng.floats(n) : nil
                    var fast = [Float](repeating: 0, count: x.count), ref = fast
                    var mean = [Float](repeating: 0, count: rows), rstd = mean, meanRef = mean, rstdRef = mean
                    pk_layer_norm(x, &fast, rows, n, w, b, 1e-5, &mean, &rstd)
                    pk_layer_norm_ref(x, &ref, rows, n, w, b, 1e-5, &meanRef, &rstdRef)
                    // The parity tests downstream need 1e-5 relative; float statistics stay well inside that.
                    for i in x.indices { #expect(abs(fast[i] - ref[i]) <= 1e-5 * (1 + abs(ref[i])), "\(isa) n=\(n)") }
                    for r in 0..<rows {
                        #expect(abs(mean[r] - meanRef[r]) <= 1e-6 * abs(meanRef[r]))
                        #expect(abs(rstd[r] - rstdRef[r]) <= 1e-5 * rstdRef[r])
                    }
                }
            }
        }
    }

    @Test func groupNormMatchesReference() {
        var rng = TestRandom(seed: 5)
        let layouts = [(c: 4, g: 2), (c: 12, g: 3), (c: 33, g: 11), (c: 64, g: 32), (c: 96, g: 32)]
        forEachISA { isa in
            for (c, g) in layouts {
                for silu in [0, 1] {
                    let batch = rng.int(1...3), hw = [1, 7, 17, 100][rng.int(0...3)]
                    let x = rng.floats(batch * hw * c, -2, 3)
                    let w = rng.floats(c, 0.5, 1.5), b = rng.floats(c)
                    var fast = [Float](repeating: 0, count: x.count), ref = fast
                    var mean = [Float](repeating: 0, count: batch * g), rstd = mean, meanRef = mean, rstdRef = mean
                    pk_group_norm(x, &fast, batch, hw, c, g, 1e-6, w, b, Int32(silu), &mean, &rstd)
                    pk_group_norm_ref(x, &ref, batch, hw, c, g, 1e-6, w, b, Int32(silu), &meanRef, &rstdRef)
                    for i in x.indices { #expect(abs(fast[i] - ref[i]) <= 1e-5 * (1 + abs(ref[i])), "\(isa) c=\(c) g=\(g) silu=\(silu)") }
                    for i in 0..<(batch * g) {
                        #expect(abs(mean[i] - meanRef[i]) <= 1e-6 * (1 + abs(meanRef[i])))
                        #expect(abs(rstd[i] - rstdRef[i]) <= 1e-5 * rstdRef[i])
                    }
                }
            }
        }
    }

    @Test func channelBlocksMatchReferences() {
        var rng = TestRandom(seed: 6)
        forEachISA { isa in
            for c in Self.sizes.prefix(8) {
                let rows = rng.int(1...9)
                let x = rng.floats(rows * c, -3, 3), center = rng.floats(c), scale = rng.floats(c), shift = rng.floats(c)
                // Per channel both sum the rows in the same order in double: identical results.
                var s = [Double](repeating: 0, count: c), sRef = s
                pk_channel_sums(x, rows, c, &s)
                pk_channel_sums_ref(x, rows, c, &sRef)
                #expect(s == sRef, "\(isa) c=\(c) sums")
                s = .init(repeating: 0, count: c); sRef = s
                pk_channel_centered_squares(x, rows, c, center, &s)
                pk_channel_centered_squares_ref(x, rows, c, center, &sRef)
                #expect(s == sRef, "\(isa) c=\(c) squares")
                for silu: Int32 in [0, 1] {
                    var y = [Float](repeating: 0, count: x.count), yRef = y
                    pk_channel_affine(x, &y, rows, c, scale, shift, silu)
                    pk_channel_affine_ref(x, &yRef, rows, c, scale, shift, silu)
                    // A fused or unfused multiply-add (1 ulp) and SiLU's exp (a few ulp).
                    for i in y.indices { #expect(abs(y[i] - yRef[i]) <= 6e-7 * (abs(yRef[i]) + 1), "\(isa) c=\(c) affine") }
                }
            }
        }
    }

    // MARK: Conversions

    /// The first index where two sequences differ, with both values, or nil (keeps failure messages short).
    func firstDifference<T: Equatable>(_ a: [T], _ b: [T]) -> String? {
        guard let i = a.indices.first(where: { $0 < b.count && a[$0] != b[$0] }) else { return a.count == b.count ? nil : "lengths differ" }
        return "at \(i): \(a[i]) vs \(b[i])"
    }

    @Test func conversionsAreExact() {
        var rng = TestRandom(seed: 7)
        let halves = (0...UInt16.max).map { $0 }
        // Random bit patterns plus the values where rounding decisions happen.
        var floats = (0..<20_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        floats += [0, -0, 1, 1 + 1 / 256, 1 + 3 / 256, 65504, 65519.99, 65520, 1e-8, 6.1e-5, 5.96e-8, 2.98e-8,
                   .infinity, -.infinity, .nan, .greatestFiniteMagnitude, .leastNonzeroMagnitude]
        forEachISA { isa in
            var wide = [Float](repeating: 0, count: halves.count), wideRef = wide
            pk_f16_to_f32(halves, &wide, halves.count)
            pk_f16_to_f32_ref(halves, &wideRef, halves.count)
            #expect(firstDifference(wide.map(\.bitPattern), wideRef.map(\.bitPattern)) == nil, "\(isa) f16->f32")
            #expect(firstDifference(wideRef.map(\.bitPattern), halves.map { Float(Float16(bitPattern: $0)).bitPattern }) == nil, "f16 ref vs Swift")
            pk_bf16_to_f32(halves, &wide, halves.count)
            pk_bf16_to_f32_ref(halves, &wideRef, halves.count)
            #expect(firstDifference(wide.map(\.bitPattern), wideRef.map(\.bitPattern)) == nil, "\(isa) bf16->f32")

            var narrow = [UInt16](repeating: 0, count: floats.count), narrowRef = narrow
            pk_f32_to_f16(floats, &narrow, floats.count)
            pk_f32_to_f16_ref(floats, &narrowRef, floats.count)
            #expect(firstDifference(narrow, narrowRef) == nil, "\(isa) f32->f16")
            #expect(firstDifference(narrowRef, floats.map { Float16($0).bitPattern }) == nil, "f16 narrowing ref vs Swift's Float16")
            pk_f32_to_bf16(floats, &narrow, floats.count)
            pk_f32_to_bf16_ref(floats, &narrowRef, floats.count)
            #expect(firstDifference(narrow, narrowRef) == nil, "\(isa) f32->bf16")
            #expect(firstDifference(narrowRef, floats.map(floatToBFloat16)) == nil, "bf16 narrowing ref vs PaellaCore's scalar version")
        }
    }

    // MARK: Sampling

    /// Upstream's score in double: logits / max(T, 1e-10) + g, g = -log(-log(u + 1e-20) + 1e-20).
    static func gumbelScore(_ l: Float, _ u: Float, _ t: Float) -> Double {
        let g = -Foundation.log(-Foundation.log(Double(u + 1e-20)) + 1e-20)
        return Double(l / max(t, 1e-10)) + g
    }

    @Test func gumbelArgmaxMatchesReference() {
        var rng = TestRandom(seed: 8)
        forEachISA { isa in
            for n in Self.sizes {
                for t: Float in [1, 0.7, 1e-12] {
                    let rows = rng.int(1...9)
                    var logits = rng.floats(rows * n, -5, 5)
                    for i in logits.indices where rng.int(0...7) == 0 { logits[i] = -.infinity }
                    let u = rng.floats(rows * n, 0, 1)
                    var fast = [Int32](repeating: -1, count: rows), ref = fast
                    pk_gumbel_argmax(logits, u, rows, n, t, &fast)
                    pk_gumbel_argmax_ref(logits, u, rows, n, t, &ref)
                    for r in 0..<rows where fast[r] != ref[r] {
                        // Only a near tie may differ: the two logs differ from libm's by an ulp or two.
                        let a = Self.gumbelScore(logits[r * n + Int(fast[r])], u[r * n + Int(fast[r])], t)
                        let b = Self.gumbelScore(logits[r * n + Int(ref[r])], u[r * n + Int(ref[r])], t)
                        #expect(abs(a - b) <= 1e-5 * max(1, abs(b)), "\(isa) n=\(n) row \(r): \(fast[r]) vs \(ref[r])")
                    }
                }
            }
        }
    }

    @Test func gumbelArgmaxSemantics() {
        // u = exp(-exp(-g)) inverts g = -log(-log u): u0 gives g = 5, u1 gives g = 0.
        let u: [Float] = [Float(Foundation.exp(-Foundation.exp(-5.0))), Float(Foundation.exp(-1.0))]
        forEachISA { isa in
            var out: [Int32] = [-1]
            // Temperature divides the logits before the noise is added: [0, 1]/0.1 + [5, 0] = [5, 10] -> 1,
            // whereas dividing after adding would give argmax([5, 1]) = 0.
            pk_gumbel_argmax([0, 1], u, 1, 2, 0.1, &out)
            #expect(out == [1], "\(isa)")
            pk_gumbel_argmax([0, 1], u, 1, 2, 10, &out)  // [0, 0.1] + [5, 0] -> 0
            #expect(out == [0], "\(isa)")
            // Ties go to the first index, as torch.argmax; a row of -inf gives 0.
            let n = 40
            var logits = [Float](repeating: 0, count: n)
            logits[21] = 3; logits[37] = 3
            pk_gumbel_argmax(logits, [Float](repeating: 0.5, count: n), 1, n, 1, &out)
            #expect(out == [21], "\(isa)")
            pk_argmax(logits, 1, n, &out)
            #expect(out == [21], "\(isa)")
            pk_argmax([Float](repeating: -.infinity, count: n), 1, n, &out)
            #expect(out == [0], "\(isa)")
        }
    }

    @Test func argmaxMatchesReference() {
        var rng = TestRandom(seed: 9)
        forEachISA { isa in
            for n in Self.sizes {
                let rows = rng.int(1...9)
                // Values on a coarse grid so that ties are common.
                let x = (0..<(rows * n)).map { _ in Float(rng.int(-20...20)) }
                var fast = [Int32](repeating: -1, count: rows), ref = fast
                pk_argmax(x, rows, n, &fast)
                pk_argmax_ref(x, rows, n, &ref)
                #expect(fast == ref, "\(isa) n=\(n)")
            }
        }
    }
}
