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

    /// Labels for `batch` pairs: `count` random yes/no values each.
    static func labels(_ batch: Int, count: Int, seed: UInt64) -> Tensor {
        var rng = TestRandom(seed: seed)
        return Tensor((0..<(batch * count)).map { _ in Float(rng.int(0...1)) }, shape: [batch, count])
    }

    /// The label head's part of the gradients, against central differences of contrastive + label loss: the
    /// head's own weights, and tower parameters that reach it only through the embeddings. The head starts from
    /// random weights (at zero its gradient reaches no tower). A head on the captions alone leaves the vision
    /// tower's gradients as the contrastive loss alone makes them.
    @Test(arguments: [false, true]) func labelHeadGradientsMatchFiniteDifferences(textOnly: Bool) throws {
        let plain = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 10), compute: Self.compute(), seed: 11)
        var trainer = plain
        trainer.addLabelHead(count: 5, lossWeight: 0.7, textOnly: textOnly)
        var rng = TestRandom(seed: 12)
        trainer.labelHead?.parameters.tensors = [rng.tensor([5, 8], -0.3, 0.3), rng.tensor([5], -0.5, 0.5)]
        let (images, tokens) = Self.pairs(4, seed: 13)
        let labels = Self.labels(4, count: 5, seed: 14)
        let batch = try trainer.lossAndGradients(images: images, tokens: tokens, labels: labels)
        let evaluation = try #require(batch.labels)
        #expect(evaluation.loss > 0 && evaluation.gradients.names == ["weight", "bias"])
        let contrastive = try plain.lossAndGradients(images: images, tokens: tokens).gradients
        let visionProjection = try #require(trainer.parameters.names.firstIndex(of: "visual.proj"))
        let textProjection = try #require(trainer.parameters.names.firstIndex(of: "text_projection"))
        #expect((batch.gradients.tensors[visionProjection].floats == contrastive.tensors[visionProjection].floats) == textOnly)
        #expect(batch.gradients.tensors[textProjection].floats != contrastive.tensors[textProjection].floats)
        func total(_ t: CLIPTrainer) throws -> Double {
            let b = try t.lossAndGradients(images: images, tokens: tokens, labels: labels, backward: false)
            return b.loss + (b.labels?.loss ?? .nan)
        }
        let h: Float = 1e-2
        for (i, name) in trainer.parameters.names.enumerated() where ["text_projection", "visual.proj", "ln_final.weight"].contains(name) {
            let g = batch.gradients.tensors[i].floats
            for j in [0, g.count / 2, g.count - 1] {
                var plus = trainer, minus = trainer
                plus.parameters.tensors[i].withMutableFloats { $0[j] += h }
                minus.parameters.tensors[i].withMutableFloats { $0[j] -= h }
                let fd = (try total(plus) - total(minus)) / Double(2 * h)
                #expect(abs(fd - Double(g[j])) <= 1e-4 + 2e-2 * abs(Double(g[j])), "\(name)[\(j)]: finite difference \(fd), backward \(g[j])")
            }
        }
        for (i, name) in ["weight", "bias"].enumerated() {
            let g = evaluation.gradients.tensors[i].floats
            for j in [0, g.count - 1] {
                var plus = trainer, minus = trainer
                plus.labelHead?.parameters.tensors[i].withMutableFloats { $0[j] += h }
                minus.labelHead?.parameters.tensors[i].withMutableFloats { $0[j] -= h }
                let fd = (try total(plus) - total(minus)) / Double(2 * h)
                #expect(abs(fd - Double(g[j])) <= 1e-4 + 2e-2 * abs(Double(g[j])), "head \(name)[\(j)]: finite difference \(fd), backward \(g[j])")
            }
        }
    }

    /// On labels that a linear function of the embeddings can tell (each pair's labels are its own index bits),
    /// training with the head learns them, and the step reports the head's loss and accuracy.
    @Test func aLabelHeadLearnsItsLabels() throws {
        var trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 40, maxLR: 3e-3),
                                      compute: Self.compute(), seed: 15)
        trainer.addLabelHead(count: 3, lossWeight: 1)
        let (images, tokens) = Self.pairs(6, seed: 16)
        let labels = Tensor((0..<6).flatMap { b in (0..<3).map { Float((b >> $0) & 1) } }, shape: [6, 3])
        var results: [CLIPStepResult] = []
        for _ in 0..<40 { results.append(try trainer.train(images: images, tokens: tokens, labels: labels)) }
        let first = try #require(results.first?.labelLoss), last = try #require(results.last?.labelLoss)
        print("CLIP label head: loss \(first) -> \(last), all right \(results.last?.labelAccuracy ?? 0)")
        #expect(last < 0.7 * first)
        #expect(results.last?.labelAccuracy == 1)
    }

    @Test(arguments: [false, true]) func resumeIsBitIdentical(labelHead: Bool) throws {
        let batches = (0..<4).map { Self.pairs(3, seed: 30 + UInt64($0)) }
        let labels = (0..<4).map { Self.labels(3, count: 4, seed: 40 + UInt64($0)) }
        let recipe = CLIPTrainingRecipe(totalSteps: 4)
        func start() throws -> CLIPTrainer {
            var trainer = try CLIPTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 10)
            if labelHead { trainer.addLabelHead(count: 4, lossWeight: 0.5) }
            return trainer
        }
        func train(_ trainer: inout CLIPTrainer, _ range: Range<Int>) throws {
            for k in range { _ = try trainer.train(images: batches[k].images, tokens: batches[k].tokens, labels: labelHead ? labels[k] : nil) }
        }
        var straight = try start()
        try train(&straight, 0..<4)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clip-resume-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var first = try start()
        try train(&first, 0..<2)
        try first.saveCheckpoint(to: directory)
        var resumed = try CLIPTrainer(resumingFrom: directory, compute: Self.compute())
        #expect((resumed.labelHead != nil) == labelHead)
        try train(&resumed, 2..<4)
        #expect(resumed.step == 4 && resumed.parameters.names == straight.parameters.names)
        for (a, b) in zip(resumed.parameters.tensors, straight.parameters.tensors) { #expect(a.floats == b.floats) }
        for (a, b) in zip(resumed.optimizer.expAvg.tensors, straight.optimizer.expAvg.tensors) { #expect(a.floats == b.floats) }
        if let a = resumed.labelHead, let b = straight.labelHead {
            #expect(a.lossWeight == b.lossWeight && a.optimizer.step == b.optimizer.step)
            for (x, y) in zip(a.parameters.tensors + a.optimizer.expAvgSq.tensors, b.parameters.tensors + b.optimizer.expAvgSq.tensors) {
                #expect(x.floats == y.floats)
            }
        }
        // The model file loads into CLIPModel as it is, logit_scale included and the label head left out.
        let weights = try SafeTensors(path: directory + "/clip.safetensors")
        #expect(weights.names.contains("logit_scale"))
        #expect(Set(weights.names) == Set(try CLIPTrainer.parameterShapes(Self.config).map(\.name)))
        _ = try CLIPModel(path: directory + "/clip.safetensors", config: Self.config)
        let config = try JSONDecoder().decode(CLIPConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/clip.json")))
        #expect(config == Self.config)
    }

    /// With the text tower frozen, its weights come out of training (and of a resume) bit for bit as they went in,
    /// while the vision tower, the logit scale and a label head on both embeddings learn, and the loss falls.
    @Test func aFrozenTextTowerStaysAsItIs() throws {
        var recipe = CLIPTrainingRecipe(totalSteps: 20, maxLR: 3e-3)
        recipe.frozenText = true
        let start = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 1), compute: Self.compute(), seed: 11)
        var trainer = try CLIPTrainer(config: Self.config, parameters: start.parameters, recipe: recipe, compute: Self.compute(), seed: 11)
        trainer.addLabelHead(count: 4, lossWeight: 0.5)
        let (images, tokens) = Self.pairs(6, seed: 12)
        let labels = Self.labels(6, count: 4, seed: 13)
        var results: [CLIPStepResult] = []
        for _ in 0..<10 { results.append(try trainer.train(images: images, tokens: tokens, labels: labels)) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clip-frozen-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try trainer.saveCheckpoint(to: directory)
        var resumed = try CLIPTrainer(resumingFrom: directory, compute: Self.compute())
        #expect(resumed.recipe.frozenText == true)
        for _ in 0..<10 { results.append(try resumed.train(images: images, tokens: tokens, labels: labels)) }
        #expect(results[19].loss < 0.7 * results[0].loss, "loss \(results[0].loss) -> \(results[19].loss)")
        var changedVision = 0
        for (name, (before, after)) in zip(start.parameters.names, zip(start.parameters.tensors, resumed.parameters.tensors)) {
            if CLIPModel.isTextKey(name) {
                #expect(before.floats == after.floats, "\(name) changed")
            } else if before.floats != after.floats {
                changedVision += 1
            }
        }
        #expect(changedVision == start.parameters.names.filter { !CLIPModel.isTextKey($0) }.count, "every vision weight and the scale train")
    }

    /// A checkpoint whose label head was cut short is refused by name, not trapped on.
    @Test func aDamagedLabelHeadIsRefused() throws {
        var trainer = try CLIPTrainer(config: Self.config, recipe: CLIPTrainingRecipe(totalSteps: 4), compute: Self.compute(), seed: 17)
        trainer.addLabelHead(count: 4, lossWeight: 0.5)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("clip-head-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try trainer.saveCheckpoint(to: directory)
        let path = directory + "/trainer.json"
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var extra = try #require(json["extra"] as? [String: Any]), head = try #require(extra["labelHead"] as? [String: Any])
        head["bias"] = [0.0]
        extra["labelHead"] = head
        json["extra"] = extra
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try CLIPTrainer(resumingFrom: directory, compute: Self.compute())
        } throws: { "\($0)".contains("label head has inconsistent sizes") }
    }
}
