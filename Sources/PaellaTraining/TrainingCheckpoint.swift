// Checkpoints of a denoiser training run: everything needed to continue the exact trajectory.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// A checkpoint that cannot be read back.
public enum TrainingCheckpointError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "Training checkpoint \(path) cannot be resumed: \(reason)."
        }
    }
}

/// `trainer.json`: the small part of a checkpoint, and its commit point.
struct TrainerState: Codable {
    var format = TrainerState.currentFormat
    var config: DenoiserConfig
    var recipe: DenoiserTrainingRecipe
    /// Batches trained.
    var step: Int
    /// AdamW updates done (the schedule position).
    var optimizerStep: Int
    var beta1: Double
    /// TrainingRandom's state, as a decimal string (JSON numbers lose 64-bit integers).
    var randomState: String
    /// The files holding the tensors of this step, relative to the checkpoint folder.
    var weightsFile: String
    var optimizerFile: String

    static let currentFormat = "paella-train-denoiser-1"
    enum CodingKeys: String, CodingKey {
        case format, config, recipe, step, beta1
        case optimizerStep = "optimizer_step", randomState = "random_state"
        case weightsFile = "weights_file", optimizerFile = "optimizer_file"
    }
}

extension DenoiserTrainer {
    /// Writes a checkpoint into `directory` (created if needed): the weights (`weights-<step>.safetensors`,
    /// upstream keys), the AdamW moments and any gradients of an unfinished accumulation window
    /// (`optimizer-<step>.safetensors`), then `trainer.json` (configuration, recipe, step, schedule position,
    /// beta1, random state) naming those files. Each file is written atomically and `trainer.json` last, so a
    /// crash at any point leaves the previous checkpoint intact; older tensor files are removed afterwards.
    /// The moving average of the weights, when kept, goes into the optimizer file (`ema.<name>`).
    /// With `modelFile` the exported weights (the moving average when kept) are also written (atomically) to that file name in the folder,
    /// with `denoiser.json` beside it: a model folder the pipeline loads.
    public func saveCheckpoint(to directory: String, modelFile: String? = "denoiser.safetensors") throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let weightsFile = String(format: "weights-%09d.safetensors", step)
        let optimizerFile = String(format: "optimizer-%09d.safetensors", step)
        let metadata = ["format": "pt", "step": "\(step)"]
        try SafeTensors.write(parameters.named, metadata: metadata, to: directory + "/" + weightsFile)
        var moments = zip(optimizer.expAvg.names, optimizer.expAvg.tensors).map { (name: "exp_avg." + $0.0, tensor: $0.1) }
        moments += zip(optimizer.expAvgSq.names, optimizer.expAvgSq.tensors).map { (name: "exp_avg_sq." + $0.0, tensor: $0.1) }
        if let accumulated {
            moments += zip(accumulated.names, accumulated.tensors).map { (name: "accumulated." + $0.0, tensor: $0.1) }
        }
        if let averaged {
            moments += zip(averaged.names, averaged.tensors).map { (name: "ema." + $0.0, tensor: $0.1) }
        }
        try SafeTensors.write(moments, metadata: ["step": "\(step)"], to: directory + "/" + optimizerFile)
        let state = TrainerState(config: config, recipe: recipe, step: step, optimizerStep: optimizer.step,
                                 beta1: optimizer.beta1, randomState: String(random.state),
                                 weightsFile: weightsFile, optimizerFile: optimizerFile)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(state), to: directory + "/trainer.json")
        // The new checkpoint is committed: drop the tensor files of older ones.
        for file in try FileManager.default.contentsOfDirectory(atPath: directory)
        where (file.hasPrefix("weights-") || file.hasPrefix("optimizer-")) && file.hasSuffix(".safetensors")
            && file != weightsFile && file != optimizerFile {
            try? FileManager.default.removeItem(atPath: directory + "/" + file)
        }
        if let modelFile {
            try SafeTensors.write(exportedParameters.named, metadata: metadata, to: directory + "/" + modelFile)
            try AtomicFile.write(try encoder.encode(config), to: directory + "/denoiser.json")
        }
    }

    /// Continues the run saved in `directory` by `saveCheckpoint`: the same weights, moments, accumulated
    /// gradients, step, schedule position and random state, so training goes on exactly as if never stopped.
    public init(resumingFrom directory: String, compute: Compute) throws {
        let path = directory + "/trainer.json"
        let state: TrainerState
        do {
            state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TrainingCheckpointError.unreadable(path: path, reason: "\(error)")
        }
        guard state.format == TrainerState.currentFormat, let randomState = UInt64(state.randomState) else {
            throw TrainingCheckpointError.unreadable(path: path, reason: "unknown format \(state.format) or random state \(state.randomState)")
        }
        let keys = try Denoiser.parameterShapes(state.config)
        try self.init(config: state.config, parameters: TrainableParameters(path: directory + "/" + state.weightsFile, keys: keys),
                      recipe: state.recipe, compute: compute)
        let moments = try SafeTensors(path: directory + "/" + state.optimizerFile)
        func load(_ prefix: String) throws -> TrainableParameters {
            TrainableParameters(try keys.map { key in
                let t = try moments.tensor(prefix + key.name)
                guard t.shape == key.shape else {
                    throw TrainingCheckpointError.unreadable(path: moments.path, reason: "\(prefix + key.name) has shape \(t.shape), expected \(key.shape)")
                }
                return (name: key.name, tensor: t)
            })
        }
        optimizer.expAvg = try load("exp_avg.")
        optimizer.expAvgSq = try load("exp_avg_sq.")
        optimizer.step = state.optimizerStep
        optimizer.beta1 = state.beta1
        accumulated = moments.names.contains { $0.hasPrefix("accumulated.") } ? try load("accumulated.") : nil
        if state.recipe.emaDecay != nil {
            guard moments.names.contains(where: { $0.hasPrefix("ema.") }) else {
                throw TrainingCheckpointError.unreadable(path: moments.path, reason: "the recipe keeps a moving average but the file holds none")
            }
            averaged = try load("ema.")
        }
        step = state.step
        random = TrainingRandom(state: randomState)
    }
}
