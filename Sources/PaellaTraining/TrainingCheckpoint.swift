// One checkpoint format for every trainer (denoiser, VQGAN, CLIP): everything needed to continue the exact
// trajectory. A checkpoint folder holds `weights-<step>.safetensors` (the master weights, upstream keys),
// `optimizer-<step>.safetensors` (the AdamW moments and any further tensors of the trainer, each under a name
// prefix) and `trainer.json`, written last as the commit point; with a model file, also the exported weights and
// their configuration as a JSON file beside them.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// A checkpoint that cannot be read back.
public enum TrainingCheckpointError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    /// A file of the run (log, checkpoint) that cannot be written.
    case unwritable(path: String)
    /// Appending to the run's log failed (full disk, I/O error); the checkpoints already written are intact.
    case logFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "Training checkpoint \(path) cannot be resumed: \(reason)."
        case .unwritable(let path): return "Cannot write \(path); check that its folder exists and is writable."
        case .logFailed(let path, let reason):
            return "Appending to \(path) failed (\(reason)); free space or fix the disk, then continue the run with --resume."
        }
    }
}

/// A trainer's state beyond the common part; `NoCheckpointExtra` for trainers that have none.
public struct NoCheckpointExtra: Codable, Sendable, Equatable {}

/// `trainer.json`: the small part of a checkpoint. `Extra` carries what one kind of trainer adds.
public struct TrainerCheckpoint<Config: Codable, Recipe: Codable, Extra: Codable>: Codable {
    public static var currentFormat: String { "paella-train-2" }
    public var format = Self.currentFormat
    /// Which trainer wrote it: "denoiser", "vqgan" or "clip".
    public var kind: String?
    public var config: Config
    public var recipe: Recipe
    /// Batches trained.
    public var step: Int
    /// AdamW updates done (the schedule position).
    public var optimizerStep: Int
    public var beta1: Double
    /// TrainingRandom's state, as a decimal string (JSON numbers lose 64-bit integers).
    public var randomState: String
    /// The files holding the tensors of this step, relative to the checkpoint folder.
    public var weightsFile: String
    public var optimizerFile: String
    public var extra: Extra?

    enum CodingKeys: String, CodingKey {
        case format, kind, config, recipe, step, beta1, extra
        case optimizerStep = "optimizer_step", randomState = "random_state"
        case weightsFile = "weights_file", optimizerFile = "optimizer_file"
    }
}

/// A trainer that checkpoints and resumes through `TrainerCheckpoint`: the three trainers conform, so saving and
/// resuming are written once, here.
public protocol CheckpointedTrainer {
    associatedtype Config: Codable
    associatedtype Recipe: Codable
    associatedtype Extra: Codable
    /// Names the trainer in `trainer.json`, and its model file `<kind>.safetensors` and `<kind>.json`.
    static var checkpointKind: String { get }
    /// Every parameter a configuration has, with its shape.
    static func parameterShapes(_ config: Config) throws -> [(name: String, shape: [Int])]

    var config: Config { get }
    var recipe: Recipe { get }
    var compute: Compute { get }
    var parameters: TrainableParameters { get }
    var optimizer: AdamW { get }
    var step: Int { get }
    var random: TrainingRandom { get }
    /// The weights of the model file (the moving average where one is kept).
    var exportedParameters: TrainableParameters { get }
    /// Further parameter-shaped tensors an exact resume needs, by name prefix (saved as `<prefix>.<name>`).
    var checkpointTensors: [String: TrainableParameters] { get }
    var checkpointExtra: Extra? { get }

    init(config: Config, parameters: TrainableParameters, recipe: Recipe, compute: Compute, seed: UInt64) throws
    /// Takes the optimizer, step and random state of a checkpoint, and what `checkpointTensors` and
    /// `checkpointExtra` saved.
    mutating func restore(_ state: ResumedTraining<Extra>) throws
}

/// What a checkpoint gives back to a trainer besides its weights.
public struct ResumedTraining<Extra> {
    /// With its moments, step and beta1.
    public var optimizer: AdamW
    public var step: Int
    public var random: TrainingRandom
    public var extra: Extra?
    /// The checkpoint's `trainer.json` and optimizer file, for messages.
    public var statePath: String, tensorsPath: String
    let lookup: (String) throws -> TrainableParameters?

    /// The tensors saved under `prefix`, or nil when the checkpoint holds none.
    public func tensors(_ prefix: String) throws -> TrainableParameters? { try lookup(prefix) }
}

/// The one field every `trainer.json` has.
private struct CheckpointFormat: Decodable { var format: String }

extension CheckpointedTrainer {
    public var exportedParameters: TrainableParameters { parameters }
    public var checkpointTensors: [String: TrainableParameters] { [:] }

    /// Writes a checkpoint into `directory` (created if needed). Each file is written atomically and
    /// `trainer.json` last, so a crash at any point leaves the previous checkpoint intact; tensor files of older
    /// checkpoints are removed afterwards. With `modelFile` (default `<kind>.safetensors`) the exported weights
    /// are also written to that file with the configuration as `<kind>.json` beside it, what a model folder takes.
    public func saveCheckpoint(to directory: String, modelFile: String? = Self.defaultModelFile) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let weightsFile = String(format: "weights-%09d.safetensors", step)
        let optimizerFile = String(format: "optimizer-%09d.safetensors", step)
        let metadata = ["format": "pt", "step": "\(step)"]
        try SafeTensors.write(parameters.named, metadata: metadata, to: directory + "/" + weightsFile)
        var tensors = checkpointTensors
        tensors["exp_avg"] = optimizer.expAvg
        tensors["exp_avg_sq"] = optimizer.expAvgSq
        let saved = tensors.sorted { $0.key < $1.key }.flatMap { prefix, group in
            group.named.map { (name: prefix + "." + $0.name, tensor: $0.tensor) }
        }
        try SafeTensors.write(saved, metadata: ["step": "\(step)"], to: directory + "/" + optimizerFile)
        let state = TrainerCheckpoint<Config, Recipe, Extra>(
            kind: Self.checkpointKind, config: config, recipe: recipe, step: step, optimizerStep: optimizer.step,
            beta1: optimizer.beta1, randomState: String(random.state), weightsFile: weightsFile,
            optimizerFile: optimizerFile, extra: checkpointExtra)
        try AtomicFile.write(try Self.prettyJSON(state), to: directory + "/trainer.json")
        for file in try FileManager.default.contentsOfDirectory(atPath: directory)
        where (file.hasPrefix("weights-") || file.hasPrefix("optimizer-")) && file.hasSuffix(".safetensors")
            && file != weightsFile && file != optimizerFile {
            try? FileManager.default.removeItem(atPath: directory + "/" + file)
        }
        if let modelFile {
            try SafeTensors.write(exportedParameters.named, metadata: metadata, to: directory + "/" + modelFile)
            try AtomicFile.write(try Self.prettyJSON(config), to: directory + "/\(Self.checkpointKind).json")
        }
    }

    public static var defaultModelFile: String { checkpointKind + ".safetensors" }

    /// Continues the run saved in `directory` by `saveCheckpoint`: the same weights, moments, step, schedule
    /// position, random state and trainer extras, so training goes on exactly as if it had never stopped.
    public init(resumingFrom directory: String, compute: Compute) throws {
        let path = directory + "/trainer.json"
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TrainingCheckpointError.unreadable(path: path, reason: "it cannot be read (\(error.localizedDescription))")
        }
        let format = (try? JSONDecoder().decode(CheckpointFormat.self, from: data))?.format ?? "none"
        // The denoiser's first format has the same fields as this one; the first VQGAN and CLIP formats do not.
        let legacyDenoiser = format == "paella-train-denoiser-1" && Self.checkpointKind == "denoiser"
        guard format == TrainerCheckpoint<Config, Recipe, Extra>.currentFormat || legacyDenoiser else {
            throw TrainingCheckpointError.unreadable(path: path, reason: format.hasPrefix("paella-train-")
                ? "it was written in the earlier format \(format), which this version does not read; finish it with the version that started it or start a new run"
                : "it is not a Paella training checkpoint (format \(format))")
        }
        let state: TrainerCheckpoint<Config, Recipe, Extra>
        do { state = try JSONDecoder().decode(TrainerCheckpoint<Config, Recipe, Extra>.self, from: data) } catch {
            throw TrainingCheckpointError.unreadable(path: path, reason: "\(error)")
        }
        guard (state.kind ?? Self.checkpointKind) == Self.checkpointKind else {
            throw TrainingCheckpointError.unreadable(path: path, reason: "it is a \(state.kind ?? "") training run, not a \(Self.checkpointKind) one")
        }
        guard let randomState = UInt64(state.randomState) else {
            throw TrainingCheckpointError.unreadable(path: path, reason: "bad random state \(state.randomState)")
        }
        let keys = try Self.parameterShapes(state.config)
        try self.init(config: state.config, parameters: TrainableParameters(path: directory + "/" + state.weightsFile, keys: keys),
                      recipe: state.recipe, compute: compute, seed: 0)
        let file = try SafeTensors(path: directory + "/" + state.optimizerFile)
        func tensors(_ prefix: String) throws -> TrainableParameters? {
            guard file.names.contains(where: { $0.hasPrefix(prefix + ".") }) else { return nil }
            return TrainableParameters(try keys.map { key in
                let t = try file.tensor(prefix + "." + key.name)
                guard t.shape == key.shape else {
                    throw TrainingCheckpointError.unreadable(path: file.path, reason: "\(prefix).\(key.name) has shape \(t.shape), expected \(key.shape)")
                }
                return (name: key.name, tensor: t)
            })
        }
        guard let expAvg = try tensors("exp_avg"), let expAvgSq = try tensors("exp_avg_sq") else {
            throw TrainingCheckpointError.unreadable(path: file.path, reason: "it holds no optimizer moments")
        }
        var optimizer = self.optimizer
        optimizer.expAvg = expAvg
        optimizer.expAvgSq = expAvgSq
        optimizer.step = state.optimizerStep
        optimizer.beta1 = state.beta1
        try restore(ResumedTraining(optimizer: optimizer, step: state.step, random: TrainingRandom(state: randomState),
                                    extra: state.extra, statePath: path, tensorsPath: file.path, lookup: tensors))
    }

    static func prettyJSON<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(value)
    }
}

extension DenoiserTrainer: CheckpointedTrainer {
    public static let checkpointKind = "denoiser"
    public static func parameterShapes(_ config: DenoiserConfig) throws -> [(name: String, shape: [Int])] {
        try Denoiser.parameterShapes(config)
    }

    /// Gradients of an unfinished accumulation window, and the moving average of the weights.
    public var checkpointTensors: [String: TrainableParameters] {
        var tensors: [String: TrainableParameters] = [:]
        tensors["accumulated"] = accumulated
        tensors["ema"] = averaged
        return tensors
    }
    public var checkpointExtra: NoCheckpointExtra? { nil }

    public mutating func restore(_ state: ResumedTraining<NoCheckpointExtra>) throws {
        (optimizer, step, random) = (state.optimizer, state.step, state.random)
        accumulated = try state.tensors("accumulated")
        if recipe.emaDecay != nil {
            guard let ema = try state.tensors("ema") else {
                throw TrainingCheckpointError.unreadable(path: state.tensorsPath, reason: "the recipe keeps a moving average but the file holds none")
            }
            averaged = ema
        }
    }
}
