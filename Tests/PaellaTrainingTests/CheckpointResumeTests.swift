import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import PaellaTraining
import Testing

/// A run stopped after step k and resumed from its checkpoint ends with bit-identical weights to a run that
/// never stopped (same data, noising draws from the trainer's own generator).
@Suite struct CheckpointResumeTests {
    static let config = DenoiserConfig(numLabels: 13, cHidden: 16, cClip: 6, cR: 4, downLevels: [1, 1], upLevels: [1, 1])

    static func freshTrainer(accumulation: Int, ema: Double? = nil) throws -> DenoiserTrainer {
        var rng = TestRandom(seed: 5)
        let params = TrainableParameters(try Denoiser.parameterShapes(config).map { (name: $0.name, tensor: rng.tensor($0.shape, -0.3, 0.3)) })
        var recipe = DenoiserTrainingRecipe.paellaV1(totalSteps: 20, maxLR: 1e-2)
        recipe.accumulationSteps = accumulation
        recipe.unconditionalProbability = 0.3
        recipe.emaDecay = ema
        return try DenoiserTrainer(config: config, parameters: params, recipe: recipe,
                                   compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()), seed: 77)
    }

    /// The data of batch `i`: tokens and conditionings that depend only on i.
    static func data(_ i: Int) -> (tokens: Tensor, c: Tensor) {
        var rng = TestRandom(seed: 1000 + UInt64(i))
        let tokens = Tensor(int32: (0..<(3 * 4 * 4)).map { _ in Int32(rng.int(0...(config.numLabels - 1))) }, shape: [3, 4, 4])
        return (tokens, rng.tensor([3, config.cClip]))
    }

    static func run(_ trainer: inout DenoiserTrainer, through end: Int) throws -> [DenoiserStepResult] {
        var results: [DenoiserStepResult] = []
        while trainer.step < end {
            let d = data(trainer.step)
            results.append(try trainer.train(trainer.prepareBatch(tokens: d.tokens, conditioning: d.c)))
        }
        return results
    }

    @Test(arguments: [(1, 3), (2, 3), (2, 4)])   // (accumulation steps, stop after); 3 stops inside a window of 2
    func resumeContinuesTheExactTrajectory(accumulation: Int, stopAfter k: Int) throws {
        let total = 7
        var uninterrupted = try Self.freshTrainer(accumulation: accumulation)
        let reference = try Self.run(&uninterrupted, through: total)

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("paella-resume-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var first = try Self.freshTrainer(accumulation: accumulation)
        _ = try Self.run(&first, through: k)
        try first.saveCheckpoint(to: folder)
        _ = try Self.run(&first, through: k + 1)       // keeps going after the save: must not disturb the checkpoint
        try first.saveCheckpoint(to: folder + "-later", modelFile: nil)
        defer { try? FileManager.default.removeItem(atPath: folder + "-later") }

        var resumed = try DenoiserTrainer(resumingFrom: folder, compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        #expect(resumed.step == k)
        let rest = try Self.run(&resumed, through: total)
        #expect(rest.map(\.loss) == reference[k...].map(\.loss))
        #expect(rest.map(\.learningRate) == reference[k...].map(\.learningRate))
        for (name, tensor) in uninterrupted.parameters.named {
            #expect(resumed.parameters[name]?.floats == tensor.floats, "\(name) differs after resuming")
        }
        #expect(resumed.random == uninterrupted.random)
        #expect(reference.contains { $0.updated } && reference.map(\.loss).allSatisfy(\.isFinite))

        // The folder is also a model folder: the denoiser loads from it with the checkpoint's weights.
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files.filter { $0.hasPrefix("weights-") }.count == 1)
        let config = try JSONDecoder().decode(DenoiserConfig.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/denoiser.json")))
        #expect(config == Self.config)
        _ = try Denoiser(config: config, path: folder + "/denoiser.safetensors", compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()))
    }

    /// The moving average follows `a = d a + (1 - d) w` after each update with `d = min(decay, (1 + n) / (10 + n))`,
    /// survives a checkpoint bit for bit, and is what the model file holds.
    @Test func movingAverageOfTheWeights() throws {
        let decay = 0.6
        var trainer = try Self.freshTrainer(accumulation: 1, ema: decay)
        var expected = trainer.parameters.tensors.map(\.floats)
        for n in 0..<4 {
            _ = try Self.run(&trainer, through: n + 1)
            let d = Float(min(decay, (1 + Double(n)) / (10 + Double(n))))
            for (i, w) in trainer.parameters.tensors.enumerated() {
                expected[i] = zip(expected[i], w.floats).map { d * $0 + (1 - d) * $1 }
            }
        }
        let averaged = try #require(trainer.averaged)
        #expect(averaged.tensors.map(\.floats) == expected)
        #expect(averaged.tensors.map(\.floats) != trainer.parameters.tensors.map(\.floats))

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("paella-ema-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try trainer.saveCheckpoint(to: folder)
        var resumed = try DenoiserTrainer(resumingFrom: folder, compute: trainer.compute)
        #expect(resumed.averaged?.tensors.map(\.floats) == expected)
        let file = try SafeTensors(path: folder + "/denoiser.safetensors")
        for (name, tensor) in averaged.named { #expect(try file.tensor(name).floats == tensor.floats, "\(name)") }
        _ = try Self.run(&trainer, through: 6)
        _ = try Self.run(&resumed, through: 6)
        #expect(resumed.averaged?.tensors.map(\.floats) == trainer.averaged?.tensors.map(\.floats))
    }

    /// One trainer.json format for every trainer (snake_case keys, the trainer's kind, its extras); the denoiser's
    /// first format (the same fields) still resumes; a checkpoint of another kind or an earlier VQGAN/CLIP format
    /// is refused with one sentence naming it.
    @Test func checkpointFormatAndItsPredecessors() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("paella-format-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var trainer = try Self.freshTrainer(accumulation: 1)
        _ = try Self.run(&trainer, through: 2)
        try trainer.saveCheckpoint(to: folder)
        let path = folder + "/trainer.json"
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(json["format"] as? String == "paella-train-2" && json["kind"] as? String == "denoiser")
        #expect(json["optimizer_step"] as? Int == 2 && json["random_state"] is String && json["weights_file"] is String)
        func rewrite(_ change: (inout [String: Any]) -> Void) throws {
            var copy = json
            change(&copy)
            try JSONSerialization.data(withJSONObject: copy).write(to: URL(fileURLWithPath: path))
        }
        try rewrite { $0["format"] = "paella-train-denoiser-1"; $0["kind"] = nil }
        var legacy = try DenoiserTrainer(resumingFrom: folder, compute: trainer.compute)
        #expect(legacy.step == 2 && legacy.random == trainer.random)
        _ = try Self.run(&legacy, through: 3)
        func refusal(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        try rewrite { $0["kind"] = "clip" }
        #expect(refusal { _ = try DenoiserTrainer(resumingFrom: folder, compute: trainer.compute) }.contains("a clip training run, not a denoiser one"))
        try rewrite { $0["format"] = "paella-train-vqgan-1"; $0["windowUsage"] = [1]; $0["optimizerStep"] = 2 }
        let message = refusal { _ = try VQGANTrainer(resumingFrom: folder, compute: trainer.compute) }
        #expect(message.contains("earlier format paella-train-vqgan-1") && message.hasSuffix("start a new run."), "\(message)")
        json["format"] = "something-else"
        try rewrite { _ in }
        #expect(refusal { _ = try DenoiserTrainer(resumingFrom: folder, compute: trainer.compute) }.contains("not a Paella training checkpoint"))
    }

    @Test func trainingPastTheScheduleIsRefused() throws {
        var trainer = try Self.freshTrainer(accumulation: 1)
        _ = try Self.run(&trainer, through: trainer.recipe.schedule.totalSteps)
        let d = Self.data(0)
        #expect(throws: TrainingScheduleError.finished(totalSteps: 20)) {
            _ = try trainer.train(trainer.prepareBatch(tokens: d.tokens, conditioning: d.c))
        }
    }

    @Test func savingAgainReplacesTheOldTensorFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("paella-ckpt-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var trainer = try Self.freshTrainer(accumulation: 1)
        try trainer.saveCheckpoint(to: folder)
        _ = try Self.run(&trainer, through: 2)
        try trainer.saveCheckpoint(to: folder)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files == ["denoiser.json", "denoiser.safetensors", "optimizer-000000002.safetensors", "trainer.json", "weights-000000002.safetensors"])
        #expect(throws: TrainingCheckpointError.self) {
            _ = try DenoiserTrainer(resumingFrom: folder + "/missing", compute: trainer.compute)
        }
    }
}
