// The checkpoint layout of TrainingCheckpoint.swift (weights-<step>.safetensors, optimizer-<step>.safetensors,
// then trainer.json as the commit point), shared by the VQGAN and CLIP trainers.
import Foundation
import PaellaCore
import PaellaIO

enum TrainerCheckpointFiles {
    /// Writes the weights and AdamW moments of `step` into `directory` (created if needed), each atomically;
    /// returns their file names for the trainer's state.
    static func writeTensors(to directory: String, step: Int, parameters: TrainableParameters,
                             optimizer: AdamW) throws -> (weights: String, optimizer: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let weightsFile = String(format: "weights-%09d.safetensors", step)
        let optimizerFile = String(format: "optimizer-%09d.safetensors", step)
        try SafeTensors.write(parameters.named, metadata: ["format": "pt", "step": "\(step)"], to: directory + "/" + weightsFile)
        var moments = zip(optimizer.expAvg.names, optimizer.expAvg.tensors).map { (name: "exp_avg." + $0.0, tensor: $0.1) }
        moments += zip(optimizer.expAvgSq.names, optimizer.expAvgSq.tensors).map { (name: "exp_avg_sq." + $0.0, tensor: $0.1) }
        try SafeTensors.write(moments, metadata: ["step": "\(step)"], to: directory + "/" + optimizerFile)
        return (weightsFile, optimizerFile)
    }

    /// Writes `trainer.json` (the commit point), then removes the tensor files of older checkpoints.
    static func commit<State: Encodable>(_ state: State, to directory: String, keeping files: [String]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(state), to: directory + "/trainer.json")
        for file in try FileManager.default.contentsOfDirectory(atPath: directory)
        where (file.hasPrefix("weights-") || file.hasPrefix("optimizer-")) && file.hasSuffix(".safetensors") && !files.contains(file) {
            try? FileManager.default.removeItem(atPath: directory + "/" + file)
        }
    }

    /// Writes `value` as pretty JSON to `directory/name`, atomically.
    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(value), to: path)
    }

    /// Reads `directory/trainer.json`.
    static func readState<State: Decodable>(_ type: State.Type, from directory: String) throws -> State {
        let path = directory + "/trainer.json"
        do {
            return try JSONDecoder().decode(State.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TrainingCheckpointError.unreadable(path: path, reason: "\(error)")
        }
    }

    /// Restores AdamW's moments and step from `optimizerFile` for the parameters `keys`.
    static func readOptimizer(_ optimizer: inout AdamW, directory: String, file: String,
                              keys: [(name: String, shape: [Int])], step: Int, beta1: Double) throws {
        let moments = try SafeTensors(path: directory + "/" + file)
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
        optimizer.step = step
        optimizer.beta1 = beta1
    }

    /// Parses a random state saved as a decimal string.
    static func randomState(_ text: String, directory: String) throws -> UInt64 {
        guard let state = UInt64(text) else {
            throw TrainingCheckpointError.unreadable(path: directory + "/trainer.json", reason: "bad random state \(text)")
        }
        return state
    }
}

extension TrainingRandom {
    /// Standard normal draws (Box-Muller on two uniforms each), row-major in `shape`.
    mutating func normal(_ shape: [Int], std: Float = 1) -> Tensor {
        Tensor((0..<shape.reduce(1, *)).map { _ in
            let u1 = max(uniform(), 1e-7), u2 = uniform()
            return boxMuller(u1, u2, scale: std)
        }, shape: shape)
    }

    /// Uniform draws in [-bound, bound), row-major in `shape`.
    mutating func symmetric(_ shape: [Int], bound: Float) -> Tensor {
        Tensor((0..<shape.reduce(1, *)).map { _ in (2 * uniform() - 1) * bound }, shape: shape)
    }
}
