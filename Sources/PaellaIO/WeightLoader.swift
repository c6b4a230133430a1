import PaellaCore

/// Hands a model its parameters by checkpoint key, strictly: every key the model asks for must exist with the
/// shape it expects, and every key the file holds must be used (or skipped by an explicit rule). Problems are
/// collected rather than thrown one at a time, so `finish` reports every missing, unexpected and wrongly shaped
/// key by name in one error.
///
/// Three sources: a checkpoint file (safetensors or `torch.save`, detected by content), a list of tensors, or
/// `random`/`shapesOnly` for benchmarks and manifest checks that need a model of the right shape without weights.
public final class WeightLoader: @unchecked Sendable {
    public enum Source: Sendable {
        case tensors([String: Tensor])
        /// Uniform random values in [-scale, scale] from a seeded generator (benchmarks with random weights).
        case random(seed: UInt64, scale: Float)
        /// Read-only zero tensors (`Tensor(readOnlyZeros:)`: no memory, free layout conversions); what a model
        /// asks for is recorded in `requested` (manifest checks of full-size models).
        case shapesOnly
    }

    /// What the weights come from, for error messages (a path, or a description).
    public let origin: String
    private let source: Source
    private let fileOrder: [String]
    private var used: Set<String> = []
    private var missing: [String] = []
    private var mismatched: [WeightLoadingError.Mismatch] = []
    private var random = SplitMix64(seed: 0)
    /// The precision the model's weight matrices are loaded for (`LinearWeights`, one-group `Conv2dWeights`): with
    /// `.bf16` they are rounded and packed as they load, and no float32 copy is kept. Set it before building the model.
    public var precision: Precision = .fp32
    /// Every key the model asked for, with the shape it expected, in the order asked.
    public private(set) var requested: [(name: String, shape: [Int])] = []

    public init(tensors: [(name: String, tensor: Tensor)], origin: String) {
        self.origin = origin
        var byName: [String: Tensor] = [:]
        for (name, tensor) in tensors { byName[name] = tensor }
        source = .tensors(byName)
        fileOrder = tensors.map(\.name)
    }

    /// A loader that makes up weights (`.random`) or zeros (`.shapesOnly`) of whatever shape is asked for.
    public init(synthetic source: Source, origin: String = "synthetic weights") {
        precondition({ if case .tensors = source { return false } else { return true } }(),
                     "WeightLoader(synthetic:) takes .random or .shapesOnly; use init(tensors:origin:) for real weights")
        self.origin = origin
        self.source = source
        fileOrder = []
        if case .random(let seed, _) = source { random = SplitMix64(seed: seed) }
    }

    /// Opens a safetensors file or a `torch.save` checkpoint (`.pt`, `.bin`, Lightning `.ckpt`: its `state_dict`).
    /// The tensors are memory-mapped views; nothing is copied until a model converts them.
    public static func open(path: String) throws -> WeightLoader {
        switch try CheckpointInspector.detectFormat(path: path) {
        case .safetensors:
            return WeightLoader(tensors: try SafeTensors(path: path).tensors, origin: path)
        case .pytorch:
            return WeightLoader(tensors: try PyTorchCheckpoint(path: path).tensors, origin: path)
        }
    }

    /// All keys the source holds, in file order (empty for synthetic sources).
    public var keys: [String] { fileOrder }

    /// The tensor stored under `key`, as stored (any dtype). A missing key or a shape other than `shape` is recorded
    /// for `finish` and a zero tensor of `shape` stands in, so loading can go on and report every problem at once.
    public func tensor(_ key: String, shape: [Int]) -> Tensor {
        requested.append((key, shape))
        switch source {
        case .shapesOnly:
            return Tensor(readOnlyZeros: shape)
        case .random(_, let scale):
            return randomTensor(shape, scale: scale)
        case .tensors(let byName):
            guard let found = byName[key] else {
                missing.append(key)
                return Tensor(readOnlyZeros: shape)  // loading fails in `finish`: a stand-in that costs no memory
            }
            used.insert(key)
            guard found.shape == shape else {
                mismatched.append(.init(key: key, expected: shape, found: found.shape))
                return Tensor(readOnlyZeros: shape)
            }
            return found
        }
    }

    /// Like `tensor(_:shape:)`, converted to float32 (a writable copy for float16/bfloat16 storage).
    public func float32(_ key: String, shape: [Int]) -> Tensor {
        let t = tensor(key, shape: shape)
        return t.dtype == .float32 ? t : t.toFloat32()
    }

    /// Whether the source holds `key` (for optional parameters such as a bias some checkpoints omit).
    public func contains(_ key: String) -> Bool {
        switch source {
        case .tensors(let byName): return byName[key] != nil
        case .random, .shapesOnly: return true
        }
    }

    /// A view that prefixes every key with `prefix` + "." (nested modules read like the PyTorch module tree).
    public func scope(_ prefix: String) -> WeightScope { WeightScope(loader: self, prefix: prefix) }

    /// Throws one error naming every missing, wrongly shaped and unused key. `skipping` names the keys a format is
    /// known to carry that the model does not need (e.g. `{ $0.hasPrefix("loss.") }` for a VQGAN training checkpoint).
    public func finish(skipping: (String) -> Bool = { _ in false }) throws {
        let unexpected = fileOrder.filter { !used.contains($0) && !skipping($0) }
        if missing.isEmpty && mismatched.isEmpty && unexpected.isEmpty { return }
        throw WeightLoadingError(origin: origin, missing: missing, unexpected: unexpected, mismatched: mismatched)
    }

    private func randomTensor(_ shape: [Int], scale: Float) -> Tensor {
        var t = Tensor(zeros: shape)  // large ones are anonymous maps: freed at once after conversion, no heap holes
        t.withMutableFloats { values in
            for i in values.indices { values[i] = random.float(-scale, scale) }
        }
        return t
    }
}

/// Keys relative to a module path, e.g. `loader.scope("down_blocks.0.1").tensor("depthwise.1.weight", ...)`.
public struct WeightScope: Sendable {
    public let loader: WeightLoader
    public let prefix: String

    public func key(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }
    public func tensor(_ name: String, shape: [Int]) -> Tensor { loader.tensor(key(name), shape: shape) }
    public func float32(_ name: String, shape: [Int]) -> Tensor { loader.float32(key(name), shape: shape) }
    public func contains(_ name: String) -> Bool { loader.contains(key(name)) }
    public func scope(_ name: String) -> WeightScope { WeightScope(loader: loader, prefix: key(name)) }
}

/// Weights that do not fit the model: every missing, unexpected and wrongly shaped key, by name.
public struct WeightLoadingError: Error, CustomStringConvertible, Equatable {
    public struct Mismatch: Sendable, Equatable {
        public let key: String
        public let expected: [Int]
        public let found: [Int]
    }

    public let origin: String
    public let missing: [String]
    public let unexpected: [String]
    public let mismatched: [Mismatch]

    public var description: String {
        func list(_ names: [String]) -> String {
            let shown = names.prefix(8).map { terminalSafe($0, maxLength: 200) }  // keys come from the file
            return names.count <= 8 ? shown.joined(separator: ", ") : shown.joined(separator: ", ") + " and \(names.count - 8) more"
        }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("\(missing.count) missing (\(list(missing)))") }
        if !mismatched.isEmpty {
            parts.append("\(mismatched.count) with the wrong shape ("
                + list(mismatched.map { "\($0.key): expected \($0.expected), found \($0.found)" }) + ")")
        }
        if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected (\(list(unexpected)))") }
        return "The weights in \(origin) do not fit this model: " + parts.joined(separator: "; ")
            + "; check that the file and the model configuration belong together."
    }
}
