import Foundation
import Testing
import PaellaTestSupport
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// Upstream's `sample()` (utils.py) recorded step by step on the tiny denoiser (sampler_v1_tiny.*): settings
/// and sizes come from the fixture's JSON, draws are replayed from the recording.
@Suite struct SamplerParityTests {
    struct Case {
        let name: String
        let settings: SamplingSettings
        let height: Int, width: Int, startingStep: Int
        let steps: Int
        let fragilePositions: Int
    }

    /// Every case of sampler_v1_tiny.json, with upstream's defaults for the arguments it does not name.
    static func cases() throws -> [Case] {
        let json = try #require(try Fixtures.json("sampler_v1_tiny.json") as? [String: [String: Any]])
        return json.keys.sorted().map { name in
            let a = json[name]!
            var o = SamplingSettings(renoiseSteps: 11)  // upstream's renoise_steps default
            var (height, width, start) = (32, 32, 0)      // upstream's size and starting_t defaults
            if let v = a["T"] as? Int { o.steps = v }
            if let v = a["size"] as? [Int] { (height, width) = (v[0], v[1]) }
            if let v = a["starting_t"] as? Int { start = v }
            if let v = a["temp_range"] as? [Double] { o.temperatureRange = v.map { Float($0) } }
            if let v = a["typical_filtering"] as? Bool { o.typicalFiltering = v }
            if let v = a["typical_mass"] as? Double { o.typicalMass = Float(v) }
            if let v = a["typical_min_tokens"] as? Int { o.typicalMinTokens = v }
            if let v = a["classifier_free_scale"] as? Double { o.guidanceScale = Float(v) }
            if let v = a["renoise_steps"] as? Int { o.renoiseSteps = v }
            if let v = a["renoise_mode"] as? String, let mode = RenoiseMode(rawValue: v) { o.renoiseMode = mode }
            return Case(name: name, settings: o, height: height, width: width, startingStep: start, steps: a["steps"] as? Int ?? 0, fragilePositions: a["fragile_positions"] as? Int ?? 0)
        }
    }

    static func sampler() throws -> Sampler {
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        return Sampler(denoiser: try Denoiser(config: DenoiserParityTests.config(),
                                              path: Fixtures.path("denoiser_v1_tiny.safetensors"), compute: compute))
    }

    /// NCHW logits of the fixture as channels-last.
    static func channelsLast(_ t: Tensor) -> Tensor { t.permuted([0, 2, 3, 1]) }

    /// Positions where `a` and `b` differ and the fixture does not flag the decision as fragile.
    static func solidMismatches(_ a: Tensor, _ b: Tensor, fragile: Tensor) -> Int {
        let (x, y, f) = (a.integers(), b.integers(), fragile.integers())
        return x.indices.filter { x[$0] != y[$0] && f[$0] == 0 }.count
    }

    @Test func everyStepMatchesUpstreamGivenItsInputsLogitsAndDraws() throws {
        let fixture = try SafeTensors(path: Fixtures.path("sampler_v1_tiny.safetensors"))
        let sampler = try Self.sampler()
        let cases = try Self.cases()
        #expect(!cases.isEmpty)
        for test in cases {
            let o = test.settings, p = test.name
            let c = try fixture.tensor("\(p).c"), initial = try fixture.tensor("\(p).x0"), mask = fixture["\(p).mask"]
            #expect(test.steps == o.steps - test.startingStep)
            for k in 0..<test.steps {
                let i = test.startingStep + k, s = "\(p).step\(k)"
                let xIn = try fixture.tensor("\(s).x_in"), fragile = try fixture.tensor("\(s).fragile")
                var draws: [ReplayRandomSource.Draw] = [.uniform(try fixture.tensor("\(s).gumbel_u"))]
                if i < o.renoiseUntil { draws.append(.uniform(try fixture.tensor("\(s).renoise_u"))) }
                if i < o.renoiseUntil && o.renoiseMode == .rand { draws.append(.randint(try fixture.tensor("\(s).renoise_x"))) }
                var random = ReplayRandomSource(draws)
                let (sampled, xOut) = sampler.update(
                    logits: Self.channelsLast(try fixture.tensor("\(s).logits")), tokens: xIn, initial: initial, mask: mask,
                    step: i, temperature: o.temperatures[i], settings: o, random: &random)
                #expect(random.isExhausted, "\(s): not every recorded draw was used")
                // Fixture README: exact at every position whose fragile flag is 0.
                #expect(Self.solidMismatches(sampled, try fixture.tensor("\(s).sampled"), fragile: fragile) == 0, "\(s) sampled")
                #expect(Self.solidMismatches(xOut, try fixture.tensor("\(s).x_out"), fragile: fragile) == 0, "\(s) x_out")

                // The denoiser on the step's input gives the recorded conditional and unconditional logits
                // (fixture README: max |a-b| <= 1e-3 * max |ref|, the r embedding's sin/cos of large arguments).
                let model = sampler.guidedLogits(xIn, conditioning: c, r: o.noiseLevels[i], scale: o.guidanceScale)
                var pairs = [(model.conditional, "logits_cond")]
                if let unconditional = model.unconditional { pairs.append((unconditional, "logits_uncond")) }
                for (ours, key) in pairs {
                    let reference = Self.channelsLast(try fixture.tensor("\(s).\(key)")).floats
                    let difference = maxAbsDifference(ours.floats, reference)
                    #expect(difference <= 1e-3 * maxAbs(reference), "\(s) \(key): max |a-b| = \(difference)")
                }
            }
        }
    }

    @Test func wholeLoopReplaysTheRecordedDraws() throws {
        let fixture = try SafeTensors(path: Fixtures.path("sampler_v1_tiny.safetensors"))
        let sampler = try Self.sampler()
        for test in try Self.cases() {
            let p = test.name
            let draws: [ReplayRandomSource.Draw] = try fixture.names.filter { $0.hasPrefix("\(p).draw") }.sorted().map { key in
                key.hasSuffix(".uniform") ? .uniform(try fixture.tensor(key)) : .randint(try fixture.tensor(key))
            }
            var random = ReplayRandomSource(draws)
            var inputs: [Tensor] = []
            let tokens = try sampler.sample(conditioning: try fixture.tensor("\(p).c"), tokens: fixture["\(p).x"],
                                            mask: fixture["\(p).mask"], settings: test.settings, height: test.height, width: test.width,
                                            startingStep: test.startingStep, random: &random) { progress in
                inputs.append(progress.tokens)
                return true
            }
            #expect(random.isExhausted, "\(p): the loop drew in another order or amount than upstream")
            #expect(inputs.count == test.steps)
            // Without fragile decisions there is no drift: every step's output equals upstream's.
            if test.fragilePositions == 0 {
                for (k, x) in inputs.enumerated() {
                    #expect(x.integers() == (try fixture.tensor("\(p).step\(k).x_out")).integers(), "\(p) step \(k)")
                }
                #expect(tokens.integers() == inputs.last?.integers())
            }
        }
    }
}
