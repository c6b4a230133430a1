// PyTorch checkpoints in torch.save's zip format (torch/serialization.py: `<archive>/data.pkl` plus one
// `<archive>/data/<key>` entry per storage). Tensors are no-copy views of the memory-mapped file.
import PaellaCore

/// Why a file could not be read as a PyTorch checkpoint (zip and pickle problems throw `ZipError` and
/// `PickleError`). Each description is one sentence naming the problem and, where possible, the remedy.
public enum PyTorchCheckpointError: Error, CustomStringConvertible, Equatable {
    /// The pre-1.6 format (a bare pickle stream starting with torch's magic number).
    case legacyFormat(path: String)
    /// A bare pickle stream without torch's magic number (not something `torch.save` writes).
    case rawPickle(path: String)
    /// A zip archive without `<archive>/data.pkl`.
    case missingPickle(path: String)
    /// A TorchScript archive (`torch.jit.save`), which holds code rather than a state dict.
    case torchScript(path: String)
    /// Tensors saved in big-endian byte order.
    case bigEndian(path: String)
    /// A `byteorder` record that says neither `little` nor `big` (`what` says what it holds instead).
    case malformedByteOrder(path: String, what: String)
    /// The nested dicts would give the tensors more bytes of dotted names than the limit allows.
    case namesTooLong(path: String, limit: Int)
    /// A persistent id that is not `('storage', type, key, location, numel)`.
    case malformedPersistentID(path: String, what: String)
    /// A storage type this reader cannot represent (complex or quantized).
    case unsupportedStorageType(path: String, name: String)
    /// The archive lacks the entry holding a storage's bytes.
    case missingStorage(path: String, key: String, entry: String)
    /// A storage entry holds fewer bytes than its declared element count needs.
    case storageTooSmall(path: String, key: String, needed: Int, available: Int)

    public var description: String {
        switch self {
        case .legacyFormat(let path):
            return "\(path) uses PyTorch's legacy (pre-1.6) checkpoint format, which is not supported; re-save it in the zip format with `torch.save(torch.load(old), new)` from PyTorch 1.6 or later."
        case .rawPickle(let path):
            return "\(path) is a bare Python pickle, not a torch.save zip checkpoint; re-save the state dict with `torch.save` from PyTorch 1.6 or later."
        case .missingPickle(let path):
            return "\(path) is a ZIP archive without a `data.pkl` record, so it is not a torch.save checkpoint."
        case .torchScript(let path):
            return "\(path) is a TorchScript archive (torch.jit.save), which holds code; save the model's state_dict with `torch.save` instead."
        case .bigEndian(let path):
            return "\(path) stores its tensors big-endian, which this reader does not support; re-save it on a little-endian machine."
        case .malformedByteOrder(let path, let what):
            return "\(path) is corrupt: its byteorder record should say \"little\" or \"big\" but \(what)."
        case .namesTooLong(let path, let limit):
            return "Refusing to load \(path): its nested dicts would give its tensors more than \(limit) bytes of dotted names."
        case .malformedPersistentID(let path, let what):
            return "\(path) is corrupt: \(what)."
        case .unsupportedStorageType(let path, let name):
            return "\(path) holds a tensor stored as \(terminalSafe(name, maxLength: 200)), a type this reader does not support (only real floating-point, integer and bool tensors are)."
        case .missingStorage(let path, let key, let entry):
            return "\(path) is corrupt: storage \(terminalSafe(key, maxLength: 200)) should be the archive entry \(terminalSafe(entry, maxLength: 200)), which does not exist."
        case .storageTooSmall(let path, let key, let needed, let available):
            return "\(path) is corrupt: storage \(terminalSafe(key, maxLength: 200)) needs \(needed) bytes but its archive entry holds \(available)."
        }
    }
}

/// A checkpoint written by `torch.save` (`.pt`, `.pth`, `.bin`, Lightning `.ckpt`), read without running any
/// Python: the pickle is decoded by the restricted `Unpickler`, tensors view the memory-mapped archive.
///
/// Opening decodes the pickle and checks every tensor against its storage but reads no tensor bytes.
public struct PyTorchCheckpoint: Sendable {
    public let path: String
    /// The archive's directory name (the prefix of every entry, e.g. `model_600000`).
    public let archiveName: String
    /// Everything the pickle holds (for a Lightning checkpoint: `epoch`, `global_step`, `state_dict`, ...).
    public let root: PickleValue
    /// The state dict's tensors in file order. For a Lightning-style checkpoint (a dict with a `state_dict`
    /// dict) its entries; otherwise the root dict's. Nested dicts are flattened with dotted names; entries that
    /// are not tensors (numbers, strings) are left out here and stay readable in `root`.
    public let tensors: [(name: String, tensor: Tensor)]
    private let indexByName: [String: Int]

    /// The magic number that starts a legacy (pre-1.6) checkpoint: PROTO 2, LONG1 of 10 bytes 0x1950a86a20f9469cfc6c.
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Longest `byteorder` record read: torch.save writes "little" or "big"; a longer one is refused unread.
    static let maxByteOrderLength = 16

    /// Maps and decodes the checkpoint at `path` (a regular file, see `InputFile`) within `limits` (by default
    /// `CheckpointLimits.fromEnvironment()`: the defaults, or what PAELLA_CHECKPOINT_LIMITS raises).
    public init(path: String, limits: CheckpointLimits? = nil) throws {
        try self.init(file: InputFile.map(path), limits: limits)
    }

    /// Decodes a checkpoint already mapped (or copied into memory) within `limits`; its `path` names it in errors.
    public init(file: MappedFile, limits: CheckpointLimits? = nil) throws {
        let limits = try limits ?? CheckpointLimits.fromEnvironment()
        let path = file.path
        self.path = path
        let head = Array(file.bytes.prefix(PyTorchCheckpoint.legacyMagic.count))
        if head == PyTorchCheckpoint.legacyMagic { throw PyTorchCheckpointError.legacyFormat(path: path) }
        if head.first == 0x80 { throw PyTorchCheckpointError.rawPickle(path: path) }

        let archive = try ZipArchive(file: file, limits: limits.zip)
        // torch.save writes `<name>/data.pkl` first; its directory names the archive (and prefixes every entry).
        let isTopLevelPickle = { (name: String, file: String) in
            name == file || (name.hasSuffix("/" + file) && name.dropLast(file.count + 1).firstIndex(of: "/") == nil)
        }
        if archive.entries.contains(where: { isTopLevelPickle($0.name, "constants.pkl") }) {
            throw PyTorchCheckpointError.torchScript(path: path)
        }
        guard let pickle = archive.entries.first(where: { isTopLevelPickle($0.name, "data.pkl") }) else {
            throw PyTorchCheckpointError.missingPickle(path: path)
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))  // "<name>/", or "" for a bare data.pkl
        archiveName = prefix.isEmpty ? "" : String(prefix.dropLast())
        if let order = archive.entry(named: prefix + "byteorder") {
            guard order.uncompressedSize <= PyTorchCheckpoint.maxByteOrderLength else {
                throw PyTorchCheckpointError.malformedByteOrder(path: path, what: "is \(order.uncompressedSize) bytes long")
            }
            let text = String(decoding: try archive.data(of: order), as: UTF8.self)
            switch text {
            case "little": break
            case "big": throw PyTorchCheckpointError.bigEndian(path: path)
            default: throw PyTorchCheckpointError.malformedByteOrder(path: path, what: "says \"\(terminalSafe(text))\"")
            }
        }

        // Storages resolve through persistent ids; one TensorStorage per key, shared by every tensor viewing it.
        var storages: [String: PickleStorage] = [:]
        let load: Unpickler.PersistentLoader = { pid in
            func bad(_ why: String) -> PyTorchCheckpointError {
                .malformedPersistentID(path: path, what: "a persistent id \(why)")
            }
            guard case .tuple(let t) = pid, t.count == 5, case .string("storage") = t[0] else {
                throw bad("is not a ('storage', type, key, location, numel) tuple")
            }
            guard case .global(let module, let typeName) = t[1],
                  let known = AllowedGlobal.storageTypes[typeName] else {
                throw bad("names no storage type")
            }
            guard case .string(let key) = t[2], case .string(let location) = t[3], case .int(let numel) = t[4], numel >= 0 else {
                throw bad("has a bad key, location or element count")
            }
            guard let dtype = known else {
                throw PyTorchCheckpointError.unsupportedStorageType(path: path, name: "\(module).\(typeName)")
            }
            if let cached = storages[key] {
                guard cached.dtype == dtype, cached.elementCount == numel else {
                    throw bad("reuses storage \(terminalSafe(key, maxLength: 200)) with a different type or size")
                }
                return cached
            }
            let entryName = prefix + "data/" + key
            guard let entry = archive.entry(named: entryName) else {
                throw PyTorchCheckpointError.missingStorage(path: path, key: key, entry: entryName)
            }
            let (needed, overflow) = numel.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, needed <= entry.uncompressedSize else {
                throw PyTorchCheckpointError.storageTooSmall(path: path, key: key, needed: overflow ? Int.max : needed,
                                                             available: entry.uncompressedSize)
            }
            let storage = PickleStorage(typeName: "\(module).\(typeName)", dtype: dtype, key: key, location: location,
                                        elementCount: numel, storage: try archive.storage(for: entry))
            storages[key] = storage
            return storage
        }
        root = try archive.withBytes(of: pickle) { bytes in
            try Unpickler(limits: limits.pickle).load(bytes, persistentLoad: load)
        }

        var stateDict = root
        if let inner = root["state_dict"], inner.dict != nil { stateDict = inner }
        // Dotted names are built from the keys, so a deep chain of long keys above many tensors could spell
        // out far more name bytes than the pickle holds; they may take twice the pickle plus 1 MiB.
        var walk = Flattening(nameBudget: 2 * pickle.uncompressedSize + (1 << 20))
        guard walk.flatten(stateDict, prefix: "") else {
            throw PyTorchCheckpointError.namesTooLong(path: path, limit: walk.nameBudget)
        }
        tensors = walk.tensors
        var index: [String: Int] = [:]
        for (i, t) in walk.tensors.enumerated() where index[t.name] == nil { index[t.name] = i }
        indexByName = index
    }

    /// The walk from the state dict to its tensors. Each pickled dict is entered once: a dict the pickle
    /// refers to from several places (through its memo) lists its tensors under the first name that reaches
    /// it, so that a chain of dicts each referring twice to the next cannot make the walk exponential.
    private struct Flattening {
        let nameBudget: Int
        var nameBytes = 0
        var visited = Set<Int>()
        var tensors: [(name: String, tensor: Tensor)] = []

        /// Adds the tensors under `value`; false when the names would exceed the budget. Every name built, of a
        /// tensor or of a nested dict, counts against the budget, so the work is bounded by it too.
        mutating func flatten(_ value: PickleValue, prefix: String) -> Bool {
            guard let dict = value.dict else { return true }
            if let identity = dict.identity, !visited.insert(identity).inserted { return true }
            for (key, item) in dict.entries {
                switch item {
                case .tensor: break
                case .dict(let inner): if let identity = inner.identity, visited.contains(identity) { continue }
                default: continue
                }
                let name: String
                switch key {
                case .string(let s): name = prefix + s
                case .int(let i): name = prefix + String(i)
                default: continue
                }
                nameBytes += name.utf8.count
                guard nameBytes <= nameBudget else { return false }
                if case .tensor(let t) = item {
                    tensors.append((name, t))
                } else if !flatten(item, prefix: name + ".") {
                    return false
                }
            }
            return true
        }
    }

    /// Tensor names in file order.
    public var names: [String] { tensors.map(\.name) }

    /// The tensor called `name`, if any.
    public subscript(name: String) -> Tensor? {
        indexByName[name].map { tensors[$0].tensor }
    }

    /// The state dict's entries as an ordered dictionary (`root["state_dict"]` for Lightning, else `root`).
    public var stateDict: PickleDict? {
        if let inner = root["state_dict"]?.dict { return inner }
        return root.dict
    }
}
