import Foundation
import Testing
import PaellaTestSupport
import Paella
import PaellaCore
import PaellaModels

@Suite struct SamplerTests {
    /// Values printed by PyTorch 2.13 on the CPU: `torch.manual_seed(7); torch.zeros(1000).uniform_(0, 1)`,
    /// then `torch.randint(0, 8192, (3,))` (the draws cross MT19937's 624-word state refill).
    @Test func defaultGeneratorDrawsWhatTorchManualSeedDraws() {
        var random = TorchCompatibleGenerator(seed: 7)
        let u = random.uniform([1000]).floats
        #expect(Array(u.prefix(3)) == [0.5349225401878357, 0.19880318641662598, 0.6592116951942444])
        #expect(Array(u.suffix(3)) == [0.24725526571273804, 0.4075300693511963, 0.9801502823829651])
        #expect(random.randint(8192, [3]).integers() == [2313, 6877, 6990])
        // torch.manual_seed(42); torch.randint(0, 8192, (6,))
        var other = TorchCompatibleGenerator(seed: 42)
        #expect(other.randint(8192, [6]).integers() == [7270, 7603, 860, 5390, 5226, 5191])
    }

    @Test func scheduleIsTorchLinspace() {
        let o = SamplingSettings(steps: 6, temperatureRange: [1, 0.3])
        // torch.linspace(0, 1, 7)[:-1] and torch.linspace(1.0, 0.3, 6) in float32
        let noiseLevels: [Float] = [0.0, 0.1666666716337204, 0.3333333432674408, 0.5, 0.6666666269302368, 0.8333333134651184]
        let temperatures: [Float] = [1.0, 0.8600000143051147, 0.7200000286102295, 0.5800000429153442, 0.4399999976158142,
                                     0.30000001192092896]
        #expect(o.noiseLevels == noiseLevels)
        #expect(o.temperatures == temperatures)
    }

    @Test func progressCanStopTheLoopAndCancellationIsHonoured() async throws {
        let sampler = try SamplerParityTests.sampler()
        let settings = SamplingSettings(steps: 4)
        // Grid sides from the fixture model: multiples of its side multiple, at least twice it, not square.
        let m = sampler.denoiser.config.sideMultiple
        let (height, width) = (2 * m, 3 * m)
        var data = TestRandom(seed: 3)
        let c = data.tensor([1, sampler.denoiser.config.cClip])
        var random = TorchCompatibleGenerator(seed: 1)
        var seen: [Int] = []
        _ = try sampler.sample(conditioning: c, settings: settings, height: height, width: width, random: &random) { progress in
            seen.append(progress.step)
            return progress.step < 1
        }
        #expect(seen == [0, 1])

        let task = Task {
            var random = TorchCompatibleGenerator(seed: 1)
            return try sampler.sample(conditioning: c, settings: settings, height: height, width: width, random: &random) { _ in
                withUnsafeCurrentTask { $0?.cancel() }  // cancelled during step 0: the loop stops before step 1
                return true
            }
        }
        do {
            _ = try await task.value
            Issue.record("a cancelled sampling task finished")
        } catch is CancellationError {}
    }

    @Test func sameSeedSameTokens() throws {
        let sampler = try SamplerParityTests.sampler()
        let side = 2 * sampler.denoiser.config.sideMultiple  // the smallest grid the fixture model accepts
        let settings = SamplingSettings(steps: 3, guidanceScale: 3)
        var data = TestRandom(seed: 5)
        let c = data.tensor([2, sampler.denoiser.config.cClip])
        var a = TorchCompatibleGenerator(seed: 9), b = TorchCompatibleGenerator(seed: 9)
        let x = try sampler.sample(conditioning: c, settings: settings, height: side, width: side, random: &a)
        #expect(x.shape == [2, side, side])
        #expect(x.integers() == (try sampler.sample(conditioning: c, settings: settings, height: side, width: side, random: &b)).integers())
    }
}
