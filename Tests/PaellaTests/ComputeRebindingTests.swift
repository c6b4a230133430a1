import Testing
import Paella
import PaellaCore
import PaellaModels
import PaellaTestSupport

/// `Denoiser.using(_:)` and `VQGAN.using(_:)`: the same weights on another compute give the same results there as
/// models loaded for it, and leave the original bound to its own compute.
@Suite("Compute rebinding")
struct ComputeRebindingTests {
    @Test func reboundModelsComputeOnTheNewPoolWithTheSameWeights() throws {
        let models = try TinyPipeline.get().models
        let one = Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM())
        let denoiser = models.denoiser.using(one), vqgan = models.vqgan.using(one)
        #expect(denoiser.compute === one && vqgan.compute === one)
        #expect(models.denoiser.compute !== one && models.vqgan.compute !== one)

        let side = Fixtures.tinyTokenSide(models.denoiser.config)
        var random = TorchCompatibleGenerator(seed: 5)
        let tokens = random.randint(models.denoiser.config.numLabels, [1, side, side])
        let c = random.uniform([1, models.denoiser.config.cClip])
        let reference = try Pipeline(folder: ModelFolder(path: Fixtures.tinyModelFolder()), compute: one).models
        #expect(denoiser(tokens, conditioning: c, r: [0.5]).floats == reference.denoiser(tokens, conditioning: c, r: [0.5]).floats)
        #expect(try vqgan.decode(tokens).floats == reference.vqgan.decode(tokens).floats)
    }
}
