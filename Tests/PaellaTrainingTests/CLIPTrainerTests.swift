import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// The CLIP trainer on tiny towers: two blocks each (causal text, bidirectional vision), a 2x2 patch grid with
/// the class token, pooling at the end-of-text token at different positions, the contrastive loss with a
/// learned logit scale.
@Suite struct CLIPTrainerTests {
    static let config = CLIPConfig(
        embedDim: 8,
        text: CLIPTextConfig(contextLength: 8, vocabSize: 20, width: 16, heads: 2, layers: 2),
        vision: CLIPVisionConfig(imageSize: 8, layers: 2, width: 16, headWidth: 8, patchSize: 4))

    static func compute() -> Compute { Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()) }

    /// `batch` pairs: random images and token rows whose end-of-text token (19, the largest id) sits at
    /// different positions.
    static func pairs(_ batch: Int, seed: UInt64) -> (images: Tensor, tokens: Tensor) {
        var rng = TestRandom(seed: seed)
        let images = rng.tensor([batch, 8, 8, 3], -1.5, 1.5)
        var ids: [Int32] = []
        for b in 0..<batch {
            let end = 2 + b % 5
            ids += (0..<8).map { p in p < end ? Int32(rng.int(1...17)) : p == end ? 19 : 0 }
        }
        return (images, Tensor(int32: ids, shape: [batch, 8]))
    }

    /// Every parameter's gradient (two elements per tensor, the largest-gradient one among them) against
    /// central differences of the trainer's own loss. Step 1e-2, loss in Double: the truncation error
    /// (h² f''' / 6) and float32 rounding of the logits (about 1e-7 |L| / h) stay near 1e-5.
    @Test func gradientsMatchFiniteDifferences() throws {
        var trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 10), compute: Self.compute(), seed: 1)
        // OpenCLIP's text embeddings start tiny (std 0.02 and 0.01): a step of 1e-2 would be half their size and
        // the first layer norm makes the loss strongly curved there. Scaled up 25x, the check sees the gradient.
        for name in ["token_embedding.weight", "positional_embedding"] {
            let i = try #require(trainer.parameters.names.firstIndex(of: name))
            trainer.parameters.tensors[i] = Tensor(trainer.parameters.tensors[i].floats.map { $0 * 25 }, shape: trainer.parameters.tensors[i].shape)
        }
        let (images, tokens) = Self.pairs(4, seed: 2)
        let analytic = try trainer.lossAndGradients(images: images, tokens: tokens).gradients
        #expect(analytic.names == trainer.parameters.names)
        var rng = TestRandom(seed: 3)
        let h: Float = 1e-2
        var worst = 0.0
        for (i, name) in trainer.parameters.names.enumerated() {
            let g = analytic.tensors[i].floats
            let largest = g.indices.max { abs(g[$0]) < abs(g[$1]) } ?? 0
            for j in Set([largest, rng.int(0...(g.count - 1))]) {
                func loss(_ delta: Float) throws -> Double {
                    var t = trainer
                    t.parameters.tensors[i].withMutableFloats { $0[j] += delta }
                    return try t.lossAndGradients(images: images, tokens: tokens, backward: false).loss
                }
                let fd = (try loss(h) - loss(-h)) / Double(2 * h)
                worst = max(worst, abs(fd - Double(g[j])) / (1e-3 + abs(Double(g[j]))))
                #expect(abs(fd - Double(g[j])) <= 1e-4 + 2e-2 * abs(Double(g[j])), "\(name)[\(j)]: finite difference \(fd), backward \(g[j])")
            }
        }
        print("CLIP gradient vs finite differences: worst |fd - g| / (1e-3 + |g|) = \(worst)")
    }

    @Test func trainingForwardEqualsInferenceForward() throws {
        let trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 10), compute: Self.compute(), seed: 4)
        let model = try trainer.model()
        let (images, tokens) = Self.pairs(3, seed: 5)
        let c = Self.compute()
        let text = try #require(model.text), vision = try #require(model.vision)
        #expect(maxAbsDifference(text.forwardForTraining(tokens, compute: c).embeddings.floats, text(tokens, compute: c).floats) < 1e-6)
        #expect(maxAbsDifference(vision.forwardForTraining(images, compute: c).embeddings.floats, vision(images, compute: c).floats) < 1e-6)
    }

    @Test func aFewStepsLowerTheLoss() throws {
        var trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 30, maxLR: 3e-3),
                                      compute: Self.compute(), seed: 6)
        let (images, tokens) = Self.pairs(6, seed: 7)
        var results: [CLIPStepResult] = []
        for _ in 0..<30 { results.append(try trainer.train(images: images, tokens: tokens)) }
        print("CLIP: loss \(results[0].loss) -> \(results[29].loss), accuracy \(results[0].imageToTextAccuracy) -> \(results[29].imageToTextAccuracy), scale \(results[29].logitScale)")
        #expect(results[29].loss < 0.5 * results[0].loss)
        #expect(results[29].imageToTextAccuracy == 1 && results[29].textToImageAccuracy == 1)
    }

    @Test func logitScaleIsClampedAtOneHundred() throws {
        var trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 4), compute: Self.compute(), seed: 8)
        let i = try #require(trainer.parameters.names.firstIndex(of: "logit_scale"))
        trainer.parameters.tensors[i] = Tensor([7], shape: [])
        let (images, tokens) = Self.pairs(3, seed: 9)
        _ = try trainer.train(images: images, tokens: tokens)
        #expect(abs(Double(try #require(trainer.parameters["logit_scale"]).floats[0]) - log(100)) < 1e-6)
        #expect(CLIPTrainingRecipe.decays("visual.proj", shape: [16, 8]))
        #expect(!CLIPTrainingRecipe.decays("token_embedding.weight", shape: [20, 16]))
        #expect(!CLIPTrainingRecipe.decays("transformer.resblocks.0.ln_1.weight", shape: [16]))
    }

    @Test func resumeIsBitIdentical() throws {
        let batches = (0..<4).map { Self.pairs(3, seed: 30 + UInt64($0)) }
        let recipe = CLIPTrainingRecipe(totalSteps: 4)
        var straight = try CLIPTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 10)
        for b in batches { _ = try straight.train(images: b.images, tokens: b.tokens) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clip-resume-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var first = try CLIPTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 10)
        for b in batches.prefix(2) { _ = try first.train(images: b.images, tokens: b.tokens) }
        try first.saveCheckpoint(to: directory)
        var resumed = try CLIPTrainer(resumingFrom: directory, compute: Self.compute())
        for b in batches.suffix(2) { _ = try resumed.train(images: b.images, tokens: b.tokens) }
        #expect(resumed.step == 4 && resumed.parameters.names == straight.parameters.names)
        for (a, b) in zip(resumed.parameters.tensors, straight.parameters.tensors) { #expect(a.floats == b.floats) }
        for (a, b) in zip(resumed.optimizer.expAvg.tensors, straight.optimizer.expAvg.tensors) { #expect(a.floats == b.floats) }
        // The model file loads into CLIPModel as it is, logit_scale included.
        let weights = try SafeTensors(path: directory + "/clip.safetensors")
        #expect(weights.names.contains("logit_scale"))
        _ = try CLIPModel(path: directory + "/clip.safetensors", config: Self.config)
        let config = try JSONDecoder().decode(CLIPConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/clip.json")))
        #expect(config == Self.config)
    }
}
