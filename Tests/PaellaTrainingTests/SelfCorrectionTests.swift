import PaellaCore
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// Self-correction (not upstream): off, a batch passes unchanged and no draw is spent; on, the network sees its own
/// renoised draws at a later noise level with the same clean targets, the same way twice from the same seed, and
/// each data-parallel share gets its items of the whole batch's self-corrected batch.
@Suite struct SelfCorrectionTests {
    func trainer(_ probability: Double?) throws -> DenoiserTrainer {
        let config = DenoiserGradientTests.config
        var rng = TestRandom(seed: 8)
        let parameters = TrainableParameters(try Denoiser.parameterShapes(config).map { (name: $0.name, tensor: rng.tensor($0.shape, -0.5, 0.5)) })
        var recipe = DenoiserTrainingRecipe.paellaV1(totalSteps: 10)
        recipe.selfCorrection = probability
        return try DenoiserTrainer(config: config, parameters: parameters, recipe: recipe,
                                   compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()), seed: 4)
    }

    @Test func selfCorrectedBatches() throws {
        let config = DenoiserGradientTests.config
        var rng = TestRandom(seed: 9)
        let tokens = Tensor(int32: (0..<(4 * 4 * 6)).map { _ in Int32(rng.int(0...(config.numLabels - 1))) }, shape: [4, 4, 6])
        let c = rng.tensor([4, config.cClip])

        var off = try trainer(nil), reference = try trainer(nil)
        let plain = off.prepareBatch(tokens: tokens, conditioning: c)
        let passed = try off.selfCorrected(plain)
        #expect(passed.noised.integers() == plain.noised.integers() && passed.r == plain.r)
        _ = reference.prepareBatch(tokens: tokens, conditioning: c)
        #expect(off.random.uniform([3]).floats == reference.random.uniform([3]).floats)  // no draw spent

        var on = try trainer(1), again = try trainer(1)
        let first = try on.selfCorrected(on.prepareBatch(tokens: tokens, conditioning: c))
        let second = try again.selfCorrected(again.prepareBatch(tokens: tokens, conditioning: c))
        #expect(first.targets.integers() == tokens.integers())
        #expect(first.noised.integers() == second.noised.integers() && first.r == second.r)
        #expect(first.noised.integers() != plain.noised.integers())
        #expect(zip(first.r, plain.r).allSatisfy { $0.0 >= $0.1 && $0.0 <= 1 })
        #expect(first.noised.integers().allSatisfy { (0..<config.numLabels).contains($0) })

        var parts: [Int] = [], levels: [Float] = []
        for range in [0..<2, 2..<4] {
            var rank = try trainer(1)
            let share = BatchShare(range: range, total: 4)
            let batch = try rank.selfCorrected(rank.prepareBatch(tokens: tokens.slice(range), conditioning: c.slice(range), share: share))
            parts += batch.noised.integers()
            levels += batch.r
        }
        #expect(parts == first.noised.integers() && levels == first.r)
    }
}
