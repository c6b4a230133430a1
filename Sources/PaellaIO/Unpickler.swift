// A restricted unpickler for torch.save's data.pkl: opcodes as CPython Lib/pickle.py defines them (protocols 2-5),
// tensor rebuilding as torch/_utils.py describes it. Nothing is ever imported or called: globals are matched
// against a fixed allow-list and everything else is refused by name.
import PaellaCore

// MARK: - Values

/// A value decoded from a pickle: plain containers, numbers, strings, tensors, and a few inert objects.
public indirect enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer wider than 64 bits, as little-endian two's-complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    case dict(PickleDict)
    /// A `set` or `frozenset`.
    case set([PickleValue])
    case tensor(Tensor)
    /// A storage that no tensor wrapped (rare; tensors normally swallow their storages).
    case storage(PickleStorage)
    /// An allowed global used as a value, e.g. the dtype `torch.float32`.
    case global(module: String, name: String)
    /// An instance of an allowed metadata-only class (e.g. `argparse.Namespace`), recorded but never constructed.
    case object(PickleObject)

    /// The dictionary, when this is one.
    public var dict: PickleDict? { if case .dict(let d) = self { return d }; return nil }
    public var int: Int? { if case .int(let v) = self { return v }; return nil }
    public var string: String? { if case .string(let v) = self { return v }; return nil }
    public var tensor: Tensor? { if case .tensor(let v) = self { return v }; return nil }
    /// Elements of a tuple or list.
    public var items: [PickleValue]? {
        switch self {
        case .tuple(let v), .list(let v): return v
        default: return nil
        }
    }
    /// `self[key]` for a dictionary with string keys.
    public subscript(key: String) -> PickleValue? { dict?[key] }
}

/// A dictionary in insertion order (Python dicts and `OrderedDict` keep it; state dicts rely on it).
public struct PickleDict: Sendable {
    public private(set) var entries: [(key: PickleValue, value: PickleValue)]
    /// Attributes set by BUILD (an `OrderedDict` state dict carries `_metadata` there), or nil.
    public let attributes: PickleValue?
    /// Which pickled object this is: equal for every place the pickle refers to the same dict (through its
    /// memo), so a walk can visit a shared dict once instead of once per path to it. Nil when built in code.
    let identity: Int?
    /// The class when this is a dict subclass from the allow-list (e.g. Lightning's `AttributeDict`), else nil.
    public let className: String?
    private let stringIndex: [String: Int]

    init(entries: [(key: PickleValue, value: PickleValue)], attributes: PickleValue?, className: String?, identity: Int? = nil) {
        self.entries = entries
        self.identity = identity
        self.attributes = attributes
        self.className = className
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() { if case .string(let s) = e.key, index[s] == nil { index[s] = i } }
        stringIndex = index
    }

    public var count: Int { entries.count }
    public subscript(key: String) -> PickleValue? { stringIndex[key].map { entries[$0].value } }
}

/// A typed storage resolved from a persistent id: a region of the archive holding `elementCount` elements.
public struct PickleStorage: Sendable {
    /// The pickled storage type, e.g. `torch.FloatStorage`.
    public let typeName: String
    public let dtype: DType
    /// The storage's key: its bytes are the archive entry `<archive>/data/<key>`.
    public let key: String
    /// Where it lived when saved (`cpu`, `cuda:0`); everything loads to CPU memory.
    public let location: String
    public let elementCount: Int
    public let storage: TensorStorage

    public init(typeName: String, dtype: DType, key: String, location: String, elementCount: Int, storage: TensorStorage) {
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.size)
        precondition(elementCount >= 0 && !overflow && byteCount <= storage.byteCount,
                     "PickleStorage: \(elementCount) \(dtype) elements do not fit in \(storage.byteCount) bytes")
        self.typeName = typeName
        self.dtype = dtype
        self.key = key
        self.location = location
        self.elementCount = elementCount
        self.storage = storage
    }
}

/// An instance of an allowed metadata-only class: what the pickle said about it, without running its code.
public struct PickleObject: Sendable {
    /// `module.name` of the class.
    public let className: String
    public let args: [PickleValue]
    public let state: PickleValue?
}

// MARK: - Errors

/// Why a pickle was refused. Each description is one sentence naming the problem.
public enum PickleError: Error, CustomStringConvertible, Equatable {
    /// A global outside the allow-list: loading it could run code, so it is refused and never imported.
    case forbiddenGlobal(module: String, name: String)
    /// An opcode this reader does not implement (or that does not exist).
    case unsupportedOpcode(opcode: UInt8, offset: Int)
    /// The pickle ends (or a length prefix points) past the end of the data.
    case truncated(offset: Int, what: String)
    /// An opcode needs more values than the stack holds above the last MARK.
    case stackUnderflow(opcode: String, offset: Int)
    /// A memo GET of an index that was never PUT.
    case memoMissing(index: Int, offset: Int)
    /// A resource limit (stack, memo, nesting) was exceeded.
    case limitExceeded(what: String)
    /// Structurally valid opcodes with values of the wrong kind.
    case malformed(offset: Int, what: String)
    /// A tensor description that does not fit its storage.
    case invalidTensor(what: String)

    public var description: String {
        switch self {
        case .forbiddenGlobal(let module, let name):
            return "Refusing to load the checkpoint: it references the Python global `\(terminalSafe(module, maxLength: 200)).\(terminalSafe(name, maxLength: 200))`, which could run code; only tensors and plain containers are allowed."
        case .unsupportedOpcode(let opcode, let offset):
            let printable = (0x21...0x7E).contains(opcode) ? " '\(Character(Unicode.Scalar(opcode)))'" : ""
            return "The checkpoint's pickle uses opcode 0x\(String(opcode, radix: 16))\(printable) at byte \(offset), which this restricted reader does not support."
        case .truncated(let offset, let what):
            return "The checkpoint's pickle is truncated at byte \(offset): \(what)."
        case .stackUnderflow(let opcode, let offset):
            return "The checkpoint's pickle is corrupt: \(opcode) at byte \(offset) needs more values than the stack holds."
        case .memoMissing(let index, let offset):
            return "The checkpoint's pickle is corrupt: it reads memo entry \(index) at byte \(offset), which was never stored."
        case .limitExceeded(let what):
            return "Refusing to load the checkpoint: \(what)."
        case .malformed(let offset, let what):
            return "The checkpoint's pickle is corrupt at byte \(offset): \(what)."
        case .invalidTensor(let what):
            return "The checkpoint is corrupt: \(what)."
        }
    }
}

// MARK: - Allow-list

/// What an allowed global is; anything not listed here is refused.
///
/// Lightning checkpoints may also carry `hyper_parameters` as an `omegaconf` config, numpy scalars in callback
/// states, or other library classes. Those are refused by name rather than modelled: their pickled form rebuilds
/// through arbitrary class constructors, and a checkpoint whose tensors we need can always be re-saved as a plain
/// `{"state_dict": ...}` (or converted to safetensors) in Python.
enum AllowedGlobal: Equatable {
    case orderedDict
    case set, frozenset
    case torchSize
    case codecsEncode
    case rebuildTensorV2, rebuildTensorV3, rebuildParameter, rebuildParameterWithState
    /// A storage type; dtype nil for torch storages this reader cannot represent (complex, quantized).
    case storageType(DType?)
    /// A dtype such as `torch.float32`; nil for dtypes this reader cannot represent.
    case dtype(DType?)
    /// A metadata-only class: recorded, never constructed. `isDict` for dict subclasses.
    case metadataClass(isDict: Bool)

    static func resolve(module rawModule: String, name: String) -> AllowedGlobal? {
        // Python 2 module names that protocol-2 pickles may carry.
        let module = rawModule == "__builtin__" ? "builtins" : (rawModule == "copy_reg" ? "copyreg" : rawModule)
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("builtins", "set"): return .set
        case ("builtins", "frozenset"): return .frozenset
        case ("torch", "Size"): return .torchSize
        case ("_codecs", "encode"): return .codecsEncode  // how protocol 2 spells a bytes object
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("argparse", "Namespace"): return .metadataClass(isDict: false)
        case ("pytorch_lightning.utilities.parsing", "AttributeDict"),
             ("lightning_fabric.utilities.data", "AttributeDict"),
             ("lightning.fabric.utilities.data", "AttributeDict"):
            return .metadataClass(isDict: true)
        default: break
        }
        if module == "torch" || module == "torch.storage" {
            if let storage = storageTypes[name] { return .storageType(storage) }
        }
        if module == "torch", let dtype = dtypes[name] { return .dtype(dtype) }
        return nil
    }

    /// `torch.<Name>Storage` -> element type (nil: a real torch storage type we cannot represent).
    static let storageTypes: [String: DType?] = [
        "DoubleStorage": .float64, "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool, "UntypedStorage": .uint8,
        "ComplexFloatStorage": nil, "ComplexDoubleStorage": nil, "QInt8Storage": nil, "QUInt8Storage": nil,
        "QInt32Storage": nil, "QUInt4x2Storage": nil, "QUInt2x4Storage": nil,
    ]

    /// `torch.<dtype>` -> element type (nil: a real torch dtype we cannot represent).
    static let dtypes: [String: DType?] = [
        "float32": .float32, "float": .float32, "float64": .float64, "double": .float64,
        "float16": .float16, "half": .float16, "bfloat16": .bfloat16,
        "int64": .int64, "long": .int64, "int32": .int32, "int": .int32, "int16": .int16, "short": .int16,
        "int8": .int8, "uint8": .uint8, "bool": .bool,
        "complex32": nil, "complex64": nil, "complex128": nil, "cfloat": nil, "cdouble": nil,
        "uint16": nil, "uint32": nil, "uint64": nil, "float8_e4m3fn": nil, "float8_e5m2": nil,
        "qint8": nil, "quint8": nil, "qint32": nil,
    ]
}

// MARK: - Unpickler

/// Decodes a pickle without executing anything.
///
/// Only the opcodes `torch.save` and ordinary containers use are implemented; globals resolve against a fixed
/// allow-list (`collections.OrderedDict`, the `torch._utils._rebuild_*` tensor builders, typed storages, dtypes,
/// `torch.Size`, sets, and the inert metadata classes `argparse.Namespace` and Lightning's `AttributeDict`);
/// every other global throws `PickleError.forbiddenGlobal` naming it. Stack, memo, nesting, objects created and
/// storage copies are capped (`Limits`) so that hostile input cannot exhaust memory, time or the call stack.
public struct Unpickler {
    /// Resource caps, so that memory and time stay proportional to the pickle's size and never reach gigabytes
    /// or minutes. Strings and bytes are bounded by the input (lengths are checked against it); what a pickle can
    /// multiply (shared containers expanded by allowed constructors, strided tensor copies, containers that are
    /// made and dropped) is counted here.
    ///
    /// The defaults are far above what `torch.save` writes for any model: a state dict costs about ten objects
    /// per tensor, a Lightning checkpoint with optimizer state about thirty, so a model with 100,000 tensors
    /// needs about 3 million objects of the 4 million allowed. At the caps the unpickler holds under 1 GB.
    public struct Limits: Sendable, Equatable {
        /// Values on the stack (all MARK levels together); default 1,048,576 (torch.save's stack stays in the
        /// thousands: it writes dict and list items in batches of 1,000).
        public var maxStack: Int = 1 << 20
        /// Memo entries; default 4,194,304.
        public var maxMemo: Int = 1 << 22
        /// Nesting depth of containers in the result; default 200.
        public var maxNesting: Int = 200
        /// Objects the pickle may create in all (default 4,194,304): one per container, one per element put into
        /// a container (including the copies `set(...)` and `torch.Size(...)` make), one per tensor, and one
        /// per 16 bytes of bytes made by `_codecs.encode` or of dict keys hashed. Containers are kept until the
        /// end (the pickle may refer to them again), so this bounds memory even for containers dropped at once.
        public var maxObjects: Int = 1 << 22
        /// Objects the pickle may create per byte of pickle (default 16, on top of an allowance of 65,536), so
        /// that a small pickle cannot expand a shared container or string many times over.
        public var maxObjectsPerInputByte: Int = 16
        /// How many times over the elements of one storage may be copied into tensors that cannot view it in
        /// place (strided or misaligned ones; default 4), so many strided views of one storage cannot each
        /// allocate a copy of it.
        public var maxCopiesPerStorage: Int = 4
        public init() {}
    }

    /// Resolves a persistent id (for `torch.save`: `('storage', type, key, location, numel)`) to a storage.
    public typealias PersistentLoader = (PickleValue) throws -> PickleStorage

    public var limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Decodes `bytes`; `persistentLoad` resolves BINPERSID ids (a pickle that uses one without a loader is refused).
    public func load(_ bytes: UnsafeRawBufferPointer, persistentLoad: PersistentLoader? = nil) throws -> PickleValue {
        var machine = Machine(input: bytes, limits: limits, persistentLoad: persistentLoad)
        return try machine.run()
    }

    /// Decodes an in-memory pickle.
    public func load(_ bytes: [UInt8], persistentLoad: PersistentLoader? = nil) throws -> PickleValue {
        try bytes.withUnsafeBytes { try load($0, persistentLoad: persistentLoad) }
    }
}

/// A value on the machine's stack. Containers live in `nodes` and are referenced by index, so that a pickle
/// can mutate them after memoizing them (as SETITEMS after BINPUT does), and so that nothing is recursive:
/// deep nesting in hostile input can never overflow the call stack while building or freeing.
///
/// The stack, the memo and every container hold these by the million in a large pickle, so the rare large
/// payloads are boxed (`indirect`), keeping each value at 17 bytes (a string's) instead of a storage's 80.
private enum Obj {
    case none, bool(Bool), int(Int), bigInt([UInt8]), float(Double), string(String), bytes([UInt8])
    indirect case global(module: String, name: String, AllowedGlobal)
    indirect case tensor(Tensor)
    indirect case storage(PickleStorage)
    case node(Int)
}

private enum HashKey: Hashable { case string(String), int(Int) }

private struct Node {
    enum Kind { case tuple, list, dict, set, frozenset, object }
    var kind: Kind
    /// Tuple/list/set elements, or dict keys.
    var items: [Obj] = []
    /// Dict values, parallel to `items`.
    var values: [Obj] = []
    /// Dict: position of string and int keys, so a repeated key replaces its value as in Python.
    var keyIndex: [HashKey: Int] = [:]
    /// What only objects and dicts with a class or BUILD state have, boxed so that the millions of plain
    /// containers a pickle may make stay small (see `Obj`).
    private var details: Details?

    final class Details {
        var className: String?
        var args: [Obj] = []
        var state: Obj?
    }

    init(kind: Kind, items: [Obj] = [], className: String? = nil, args: [Obj] = []) {
        self.kind = kind
        self.items = items
        if className != nil || !args.isEmpty {
            let details = Details()
            details.className = className
            details.args = args
            self.details = details
        }
    }

    /// Class of an object or dict subclass.
    var className: String? { details?.className }
    var args: [Obj] { details?.args ?? [] }
    /// State set by BUILD (each node owns its box, so setting it changes no other node).
    var state: Obj? {
        get { details?.state }
        set {
            if details == nil { details = Details() }
            details?.state = newValue
        }
    }
}

private struct Machine {
    let input: UnsafeRawBufferPointer
    let limits: Unpickler.Limits
    let persistentLoad: Unpickler.PersistentLoader?

    var pos = 0
    var opStart = 0
    var stack: [Obj] = []
    var metastack: [[Obj]] = []
    var stackTotal = 0
    var memo: [Int: Obj] = [:]
    var nodes: [Node] = []
    /// Objects created so far and the most allowed (see `Unpickler.Limits.maxObjects`).
    var objects = 0
    let objectBudget: Int
    /// Elements copied out of each storage (by key) into strided or misaligned tensors.
    var copiedElements: [String: Int] = [:]

    init(input: UnsafeRawBufferPointer, limits: Unpickler.Limits, persistentLoad: Unpickler.PersistentLoader?) {
        self.input = input
        self.limits = limits
        self.persistentLoad = persistentLoad
        let (perByte, overflow) = input.count.multipliedReportingOverflow(by: max(limits.maxObjectsPerInputByte, 0))
        let scaled = overflow ? Int.max : perByte.addingReportingOverflow(1 << 16).partialValue
        objectBudget = min(limits.maxObjects, scaled < 0 ? Int.max : scaled)
    }

    /// Counts `count` new objects against the budget, before they are made.
    mutating func charge(_ count: Int) throws {
        objects += count  // count is at most the input size or a container's length, never near Int.max
        guard objects <= objectBudget else {
            let why = objectBudget == limits.maxObjects
                ? "its pickle creates more than \(limits.maxObjects) objects"
                : "its \(input.count)-byte pickle creates more than \(objectBudget) objects (at most \(limits.maxObjectsPerInputByte) per byte are allowed)"
            throw PickleError.limitExceeded(what: why)
        }
    }

    /// The cost of `byteCount` bytes made or hashed, in objects.
    static func byteCost(_ byteCount: Int) -> Int { byteCount / 16 + 1 }

    // MARK: Reading

    var remaining: Int { input.count - pos }

    mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else {
            throw PickleError.truncated(offset: pos, what: "\(what) needs \(n) bytes but only \(remaining) remain")
        }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: input[pos..<(pos + n)])
    }

    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what)[0] }
    mutating func u16(_ what: String) throws -> UInt16 { UInt16(littleEndian: try take(2, what).loadUnaligned(as: UInt16.self)) }
    mutating func u32(_ what: String) throws -> UInt32 { UInt32(littleEndian: try take(4, what).loadUnaligned(as: UInt32.self)) }
    mutating func u64(_ what: String) throws -> UInt64 { UInt64(littleEndian: try take(8, what).loadUnaligned(as: UInt64.self)) }

    /// A length prefix, checked against the bytes that remain before anything is allocated.
    mutating func length(_ raw: UInt64, _ what: String) throws -> Int {
        guard raw <= UInt64(remaining) else {
            throw PickleError.truncated(offset: pos, what: "\(what) declares \(raw) bytes but only \(remaining) remain")
        }
        return Int(raw)
    }

    /// A newline-terminated line (text opcodes: GLOBAL's module and name, PUT/GET indices).
    mutating func line(_ what: String) throws -> String {
        guard let nl = input[pos...].firstIndex(of: 0x0A) else {
            throw PickleError.truncated(offset: pos, what: "\(what) has no terminating newline")
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: input[pos..<nl]), as: UTF8.self)
        pos = nl + 1
        return text
    }

    mutating func utf8(_ n: Int, _ what: String) throws -> String {
        let raw = try take(n, what)
        guard let s = validUTF8(raw) else {
            throw PickleError.malformed(offset: opStart, what: "\(what) is not valid UTF-8")
        }
        return s
    }

    /// The bytes as a string when they are valid UTF-8 (decoding repairs invalid bytes, so a repaired string
    /// no longer matches them).
    func validUTF8(_ raw: UnsafeRawBufferPointer) -> String? {
        let s = String(decoding: raw, as: UTF8.self)
        return s.utf8.elementsEqual(raw) ? s : nil
    }

    // MARK: Stack

    mutating func push(_ o: Obj) throws {
        guard stackTotal < limits.maxStack else {
            throw PickleError.limitExceeded(what: "its pickle stack grows past \(limits.maxStack) values")
        }
        stack.append(o)
        stackTotal += 1
    }

    mutating func pop(_ opcode: String) throws -> Obj {
        guard let o = stack.popLast() else { throw PickleError.stackUnderflow(opcode: opcode, offset: opStart) }
        stackTotal -= 1
        return o
    }

    mutating func top(_ opcode: String) throws -> Obj {
        guard let o = stack.last else { throw PickleError.stackUnderflow(opcode: opcode, offset: opStart) }
        return o
    }

    mutating func mark() throws {
        guard metastack.count < limits.maxStack else {
            throw PickleError.limitExceeded(what: "its pickle nests more than \(limits.maxStack) MARKs")
        }
        metastack.append(stack)
        stack = []
    }

    /// The values pushed since the last MARK, removing the mark.
    mutating func popMark(_ opcode: String) throws -> [Obj] {
        guard let below = metastack.popLast() else {
            throw PickleError.stackUnderflow(opcode: "\(opcode) (no MARK)", offset: opStart)
        }
        let items = stack
        stack = below
        stackTotal -= items.count
        return items
    }

    mutating func newNode(_ node: Node) throws -> Obj {
        try charge(1 + node.items.count + node.args.count)
        nodes.append(node)
        return .node(nodes.count - 1)
    }

    mutating func memoPut(_ index: Int) throws {
        let value = try top("PUT")
        guard memo.count < limits.maxMemo || memo[index] != nil else {
            throw PickleError.limitExceeded(what: "its pickle memo grows past \(limits.maxMemo) entries")
        }
        memo[index] = value
    }

    mutating func memoGet(_ index: Int) throws {
        guard let value = memo[index] else { throw PickleError.memoMissing(index: index, offset: opStart) }
        try push(value)
    }

    // MARK: Main loop

    mutating func run() throws -> PickleValue {
        while true {
            opStart = pos
            let op = try u8("the next opcode (the pickle has no STOP)")
            switch op {
            case 0x80:  // PROTO
                let version = try u8("PROTO")
                guard version <= 5 else {
                    throw PickleError.malformed(offset: opStart, what: "pickle protocol \(version) is newer than 5")
                }
            case 0x95: _ = try u64("FRAME")  // FRAME: a length hint for buffered readers; the data follows inline.
            case 0x2E:  // STOP
                let result = try pop("STOP")
                var cache: [Int: PickleValue] = [:]
                return try convert(result, depth: 0, cache: &cache)
            case 0x28: try mark()  // MARK
            case 0x30: _ = try pop("POP")
            case 0x31: _ = try popMark("POP_MARK")
            case 0x32: try push(try top("DUP"))

            // Constants and numbers.
            case 0x4E: try push(.none)  // NONE
            case 0x88: try push(.bool(true))  // NEWTRUE
            case 0x89: try push(.bool(false))  // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(bitPattern: try u32("BININT")))))  // BININT
            case 0x4B: try push(.int(Int(try u8("BININT1"))))  // BININT1
            case 0x4D: try push(.int(Int(try u16("BININT2"))))  // BININT2
            case 0x8A: try push(try long(Int(try u8("LONG1")), "LONG1"))  // LONG1
            case 0x8B:  // LONG4
                let n = Int32(bitPattern: try u32("LONG4"))
                guard n >= 0 else { throw PickleError.malformed(offset: opStart, what: "LONG4 has negative length \(n)") }
                try push(try long(try length(UInt64(n), "LONG4"), "LONG4"))
            case 0x47:  // BINFLOAT: big-endian IEEE double
                try push(.float(Double(bitPattern: UInt64(bigEndian: try take(8, "BINFLOAT").loadUnaligned(as: UInt64.self)))))

            // Strings and bytes.
            case 0x58: try push(.string(try utf8(try length(UInt64(try u32("BINUNICODE")), "BINUNICODE"), "BINUNICODE")))
            case 0x8C: try push(.string(try utf8(Int(try u8("SHORT_BINUNICODE")), "SHORT_BINUNICODE")))
            case 0x8D: try push(.string(try utf8(try length(try u64("BINUNICODE8"), "BINUNICODE8"), "BINUNICODE8")))
            case 0x55: try push(.string(legacyString(try take(Int(try u8("SHORT_BINSTRING")), "SHORT_BINSTRING"))))
            case 0x54:  // BINSTRING (signed 4-byte length)
                let n = Int32(bitPattern: try u32("BINSTRING"))
                guard n >= 0 else { throw PickleError.malformed(offset: opStart, what: "BINSTRING has negative length \(n)") }
                try push(.string(legacyString(try take(Int(n), "BINSTRING"))))
            case 0x43: try push(.bytes(Array(try take(Int(try u8("SHORT_BINBYTES")), "SHORT_BINBYTES"))))
            case 0x42: try push(.bytes(Array(try take(try length(UInt64(try u32("BINBYTES")), "BINBYTES"), "BINBYTES"))))
            case 0x8E: try push(.bytes(Array(try take(try length(try u64("BINBYTES8"), "BINBYTES8"), "BINBYTES8"))))
            case 0x96: try push(.bytes(Array(try take(try length(try u64("BYTEARRAY8"), "BYTEARRAY8"), "BYTEARRAY8"))))

            // Containers.
            case 0x29: try push(try newNode(Node(kind: .tuple)))  // EMPTY_TUPLE
            case 0x85: let a = try pop("TUPLE1"); try push(try newNode(Node(kind: .tuple, items: [a])))
            case 0x86:
                let b = try pop("TUPLE2"), a = try pop("TUPLE2")
                try push(try newNode(Node(kind: .tuple, items: [a, b])))
            case 0x87:
                let c = try pop("TUPLE3"), b = try pop("TUPLE3"), a = try pop("TUPLE3")
                try push(try newNode(Node(kind: .tuple, items: [a, b, c])))
            case 0x74: let items = try popMark("TUPLE"); try push(try newNode(Node(kind: .tuple, items: items)))
            case 0x5D: try push(try newNode(Node(kind: .list)))  // EMPTY_LIST
            case 0x6C: let items = try popMark("LIST"); try push(try newNode(Node(kind: .list, items: items)))
            case 0x7D: try push(try newNode(Node(kind: .dict)))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark("DICT")
                let d = try newNode(Node(kind: .dict))
                try setItems(d, items, "DICT")
                try push(d)
            case 0x8F: try push(try newNode(Node(kind: .set)))  // EMPTY_SET
            case 0x91: let items = try popMark("FROZENSET"); try push(try newNode(Node(kind: .frozenset, items: items)))
            case 0x61:  // APPEND
                let v = try pop("APPEND")
                try append(to: try top("APPEND"), [v], "APPEND")
            case 0x65:  // APPENDS
                let vs = try popMark("APPENDS")
                try append(to: try top("APPENDS"), vs, "APPENDS")
            case 0x90:  // ADDITEMS
                let vs = try popMark("ADDITEMS")
                try addItems(to: try top("ADDITEMS"), vs)
            case 0x73:  // SETITEM
                let v = try pop("SETITEM"), k = try pop("SETITEM")
                try setItems(try top("SETITEM"), [k, v], "SETITEM")
            case 0x75:  // SETITEMS
                let kvs = try popMark("SETITEMS")
                try setItems(try top("SETITEMS"), kvs, "SETITEMS")

            // Memo.
            case 0x71: try memoPut(Int(try u8("BINPUT")))  // BINPUT
            case 0x72: try memoPut(Int(try u32("LONG_BINPUT")))  // LONG_BINPUT
            case 0x94: try memoPut(memo.count)  // MEMOIZE
            case 0x70: try memoPut(try textIndex("PUT"))  // PUT
            case 0x68: try memoGet(Int(try u8("BINGET")))  // BINGET
            case 0x6A: try memoGet(Int(try u32("LONG_BINGET")))  // LONG_BINGET
            case 0x67: try memoGet(try textIndex("GET"))  // GET

            // Globals and object construction: the only places code could run in Python, all gated.
            case 0x63:  // GLOBAL
                let module = try line("GLOBAL's module name")
                let name = try line("GLOBAL's name")
                try push(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop("STACK_GLOBAL"), module = try pop("STACK_GLOBAL")
                guard case .string(let m) = module, case .string(let n) = name else {
                    throw PickleError.malformed(offset: opStart, what: "STACK_GLOBAL needs two strings")
                }
                try push(try global(m, n))
            case 0x52:  // REDUCE
                let args = try pop("REDUCE"), callable = try pop("REDUCE")
                try push(try call(callable, args: try tupleItems(args, "REDUCE's arguments"), opcode: "REDUCE"))
            case 0x81:  // NEWOBJ
                let args = try pop("NEWOBJ"), cls = try pop("NEWOBJ")
                try push(try call(cls, args: try tupleItems(args, "NEWOBJ's arguments"), opcode: "NEWOBJ"))
            case 0x92:  // NEWOBJ_EX
                let kwargs = try pop("NEWOBJ_EX"), args = try pop("NEWOBJ_EX"), cls = try pop("NEWOBJ_EX")
                guard case .node(let k) = kwargs, nodes[k].kind == .dict, nodes[k].items.isEmpty else {
                    throw PickleError.malformed(offset: opStart, what: "NEWOBJ_EX with keyword arguments is not supported")
                }
                try push(try call(cls, args: try tupleItems(args, "NEWOBJ_EX's arguments"), opcode: "NEWOBJ_EX"))
            case 0x62:  // BUILD
                let state = try pop("BUILD")
                try build(try top("BUILD"), state: state)
            case 0x51:  // BINPERSID
                let pid = try pop("BINPERSID")
                try push(try persistent(pid))

            default:
                // Text-protocol opcodes, INST/OBJ (which import and call), extension codes and out-of-band buffers.
                throw PickleError.unsupportedOpcode(opcode: op, offset: opStart)
            }
        }
    }

    /// LONG1/LONG4 payload: little-endian two's complement.
    mutating func long(_ n: Int, _ what: String) throws -> Obj {
        let raw = try take(n, what)
        if n == 0 { return .int(0) }
        if n <= 8 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(raw[i]) << (8 * UInt64(i)) }
            if n < 8 && raw[n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }  // sign-extend
            return .int(Int(Int64(bitPattern: v)))
        }
        return .bigInt(Array(raw))
    }

    /// Python 2 `str` payloads: UTF-8 when valid, else Latin-1 (byte = code point).
    func legacyString(_ raw: UnsafeRawBufferPointer) -> String {
        if let s = validUTF8(raw) { return s }
        return String(String.UnicodeScalarView(raw.map { Unicode.Scalar($0) }))
    }

    mutating func textIndex(_ what: String) throws -> Int {
        let text = try line(what)
        guard let i = Int(text), i >= 0 else {
            throw PickleError.malformed(offset: opStart, what: "\(what) has a bad memo index")
        }
        return i
    }

    // MARK: Container mutation

    func describe(_ o: Obj) -> String {
        switch o {
        case .none: return "None"
        case .bool: return "a bool"
        case .int: return "an int"
        case .bigInt: return "an integer wider than 64 bits"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .global(let m, let n, _): return "`\(terminalSafe(m, maxLength: 200)).\(terminalSafe(n, maxLength: 200))`"
        case .tensor: return "a tensor"
        case .storage: return "a storage"
        case .node(let i):
            switch nodes[i].kind {
            case .tuple: return "a tuple"
            case .list: return "a list"
            case .dict: return "a dict"
            case .set, .frozenset: return "a set"
            case .object: return "an object"
            }
        }
    }

    mutating func append(to target: Obj, _ values: [Obj], _ opcode: String) throws {
        guard case .node(let i) = target, nodes[i].kind == .list else {
            throw PickleError.malformed(offset: opStart, what: "\(opcode) applies to \(describe(target)), not a list")
        }
        try charge(values.count)
        nodes[i].items.append(contentsOf: values)
    }

    mutating func addItems(to target: Obj, _ values: [Obj]) throws {
        guard case .node(let i) = target, nodes[i].kind == .set else {
            throw PickleError.malformed(offset: opStart, what: "ADDITEMS applies to \(describe(target)), not a set")
        }
        try charge(values.count)
        nodes[i].items.append(contentsOf: values)
    }

    mutating func setItems(_ target: Obj, _ kvs: [Obj], _ opcode: String) throws {
        guard case .node(let i) = target, nodes[i].kind == .dict else {
            throw PickleError.malformed(offset: opStart, what: "\(opcode) applies to \(describe(target)), not a dict")
        }
        guard kvs.count % 2 == 0 else {
            throw PickleError.malformed(offset: opStart, what: "\(opcode) has a key without a value")
        }
        for p in stride(from: 0, to: kvs.count, by: 2) {
            let key = kvs[p], value = kvs[p + 1]
            let hashKey: HashKey?
            try charge(1)
            switch key {
            case .string(let s):
                try charge(Machine.byteCost(s.utf8.count))  // hashing reads the whole key, however often it is set
                hashKey = .string(s)
            case .int(let v): hashKey = .int(v)
            default: hashKey = nil
            }
            if let h = hashKey, let existing = nodes[i].keyIndex[h] {
                nodes[i].values[existing] = value
            } else {
                if let h = hashKey { nodes[i].keyIndex[h] = nodes[i].items.count }
                nodes[i].items.append(key)
                nodes[i].values.append(value)
            }
        }
    }

    mutating func build(_ target: Obj, state: Obj) throws {
        switch target {
        case .node(let i) where nodes[i].kind == .dict || nodes[i].kind == .object:
            // OrderedDict attributes (`_metadata`) or an inert object's __dict__: recorded, not applied.
            nodes[i].state = state
        case .tensor:
            break  // Tensor/Parameter Python-side state (hooks, attributes) has no meaning here.
        default:
            throw PickleError.malformed(offset: opStart, what: "BUILD applies to \(describe(target)), which has no state")
        }
    }

    func tupleItems(_ o: Obj, _ what: String) throws -> [Obj] {
        guard case .node(let i) = o, nodes[i].kind == .tuple else {
            throw PickleError.malformed(offset: opStart, what: "\(what) is \(describe(o)), not a tuple")
        }
        return nodes[i].items
    }

    // MARK: Globals and calls

    func global(_ module: String, _ name: String) throws -> Obj {
        guard let allowed = AllowedGlobal.resolve(module: module, name: name) else {
            throw PickleError.forbiddenGlobal(module: module, name: name)
        }
        return .global(module: module, name: name, allowed)
    }

    /// REDUCE / NEWOBJ on an allowed global. Only the handful of constructors a state dict needs are modelled;
    /// each is interpreted here, never called.
    mutating func call(_ callable: Obj, args: [Obj], opcode: String) throws -> Obj {
        guard case .global(let module, let name, let kind) = callable else {
            throw PickleError.malformed(offset: opStart, what: "\(opcode) calls \(describe(callable)), which is not a global")
        }
        let qualified = "\(module).\(name)"
        func bad(_ why: String) -> PickleError {
            .malformed(offset: opStart, what: "\(terminalSafe(qualified, maxLength: 200)) is called with \(why)")
        }
        switch kind {
        case .orderedDict:
            guard args.isEmpty else { throw bad("\(args.count) arguments instead of none") }
            return try newNode(Node(kind: .dict))
        case .set, .frozenset:
            let setKind: Node.Kind = kind == .set ? .set : .frozenset
            if args.isEmpty { return try newNode(Node(kind: setKind)) }
            guard args.count == 1, case .node(let i) = args[0], nodes[i].kind == .list || nodes[i].kind == .tuple else {
                throw bad("arguments other than one list")
            }
            return try newNode(Node(kind: setKind, items: nodes[i].items))
        case .torchSize:
            guard args.count == 1 else { throw bad("\(args.count) arguments instead of one tuple") }
            return try newNode(Node(kind: .tuple, items: try tupleItems(args[0], "torch.Size's argument")))
        case .codecsEncode:
            // Protocol 2 writes bytes as _codecs.encode(text, 'latin1'): each code point below 256 is one byte.
            guard args.count == 2, case .string(let text) = args[0], case .string(let encoding) = args[1],
                  ["latin1", "latin-1", "iso-8859-1"].contains(encoding.lowercased()) else {
                throw bad("arguments other than (text, 'latin1')")
            }
            try charge(Machine.byteCost(text.utf8.count))
            var out: [UInt8] = []
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { throw bad("text that is not Latin-1") }
                out.append(UInt8(scalar.value))
            }
            return .bytes(out)
        case .rebuildTensorV2, .rebuildTensorV3:
            let v3 = kind == .rebuildTensorV3
            let needed = v3 ? 7 : 6
            guard args.count == needed || args.count == needed + 1 else {
                throw bad("\(args.count) arguments instead of \(needed) or \(needed + 1)")
            }
            guard case .storage(let storage) = args[0] else { throw bad("\(describe(args[0])) instead of a storage") }
            guard case .int(let offset) = args[1] else { throw bad("a storage offset that is \(describe(args[1]))") }
            let size = try intTuple(args[2], "size", qualified)
            let strides = try intTuple(args[3], "stride", qualified)
            var dtype = storage.dtype
            if v3 {
                guard case .global(let m, let n, .dtype(let d)) = args[6] else { throw bad("a dtype that is \(describe(args[6]))") }
                guard let d else { throw PickleError.invalidTensor(what: "a tensor has dtype \(m).\(n), which this reader does not support") }  // an allow-listed name
                dtype = d
            }
            try charge(1)
            return .tensor(try rebuildTensor(storage, dtype: dtype, offset: offset, size: size, strides: strides))
        case .rebuildParameter, .rebuildParameterWithState:
            guard args.count == (kind == .rebuildParameter ? 3 : 4) else { throw bad("\(args.count) arguments") }
            guard case .tensor = args[0] else { throw bad("\(describe(args[0])) instead of a tensor") }
            return args[0]
        case .metadataClass(let isDict):
            return try newNode(Node(kind: isDict ? .dict : .object, className: qualified, args: args))
        case .storageType, .dtype:
            throw bad("arguments, but this reader only accepts it as a value")
        }
    }

    func intTuple(_ o: Obj, _ what: String, _ function: String) throws -> [Int] {
        try tupleItems(o, "the \(what) given to \(function)").map {
            guard case .int(let v) = $0 else {
                throw PickleError.malformed(offset: opStart, what: "the \(what) given to \(function) holds \(describe($0)), not an int")
            }
            return v
        }
    }

    mutating func persistent(_ pid: Obj) throws -> Obj {
        guard let persistentLoad else {
            throw PickleError.malformed(offset: opStart, what: "it uses a persistent id (BINPERSID) but no storages are available")
        }
        // torch.save's ids are flat 5-tuples of scalars and a global; a container id that is anything else is
        // refused before it is converted, so an id sharing a large structure costs nothing however often it is
        // loaded. (Scalars go to the loader, which names what it expected.)
        if case .node(let i) = pid, nodes[i].kind != .tuple || nodes[i].items.count > 8
            || nodes[i].items.contains(where: { if case .node = $0 { return true } else { return false } }) {
            throw PickleError.malformed(offset: opStart, what: "a persistent id is not a flat ('storage', type, key, location, numel) tuple")
        }
        var cache: [Int: PickleValue] = [:]
        return .storage(try persistentLoad(try convert(pid, depth: 0, cache: &cache)))
    }

    // MARK: Tensors

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: offset and strides count elements. A row-major
    /// layout becomes a no-copy view of the storage; any other layout is copied into a contiguous tensor, as
    /// long as that copy is no larger than the storage (so a zero-stride "expanded" tensor cannot be used to
    /// allocate far more memory than the file holds) and the storage has not been copied
    /// `limits.maxCopiesPerStorage` times over already.
    ///
    /// Every number here comes from the file, so each product and sum is overflow-checked and turns into a
    /// refusal, never a trap.
    mutating func rebuildTensor(_ storage: PickleStorage, dtype: DType, offset: Int, size: [Int], strides: [Int]) throws -> Tensor {
        let elementSize = dtype.size
        // The storage's declared size, in elements of the tensor's dtype (v3 views a byte storage as any dtype);
        // PickleStorage guarantees that elementCount x its element size fits in its bytes.
        let available = storage.elementCount * storage.dtype.size / elementSize
        let key = terminalSafe(storage.key)
        guard size.count == strides.count else {
            throw PickleError.invalidTensor(what: "a tensor has \(size.count) sizes but \(strides.count) strides")
        }
        guard offset >= 0, size.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
            throw PickleError.invalidTensor(what: "a tensor in storage \(key) has a negative offset, size or stride")
        }
        guard let (count, _) = checkedTensorSize(size, elementSize: elementSize) else {
            throw PickleError.invalidTensor(what: "a tensor in storage \(key) has \(size.count) sizes whose product overflows a 64-bit count")
        }
        if count == 0 {
            return Tensor(shape: size, dtype: dtype, storage: storage.storage, byteOffset: 0)
        }
        // Size-1 dimensions never move the index, whatever their stride (which may be huge), so the layout is
        // walked over the others only: at most 63 of them, since each is at least 2 and the count fits.
        let layout = zip(size, strides).filter { $0.0 != 1 }
        var lastIndex = offset
        for (n, s) in layout {
            let (span, o1) = (n - 1).multipliedReportingOverflow(by: s)
            let (l, o2) = lastIndex.addingReportingOverflow(span)
            guard !o1, !o2 else {
                throw PickleError.invalidTensor(what: "a tensor in storage \(key) has strides whose offsets overflow a 64-bit index")
            }
            lastIndex = l
        }
        guard lastIndex < available else {
            throw PickleError.invalidTensor(what: "a tensor of \(count) elements at offset \(offset) reaches past the end of storage \(key), which holds \(available) elements (its last element would be \(lastIndex))")
        }
        var contiguous = true
        var expected = 1
        for (n, s) in layout.reversed() {
            if s != expected { contiguous = false }
            expected *= n  // a partial product of the count, which fits
        }
        let byteOffset = offset * elementSize  // offset <= lastIndex < available: inside the storage
        let aligned = Int(bitPattern: storage.storage.pointer + byteOffset) % elementSize == 0
        if contiguous && aligned {
            return Tensor(shape: size, dtype: dtype, storage: storage.storage, byteOffset: byteOffset)
        }
        guard count <= max(available, 1) else {
            throw PickleError.invalidTensor(what: "a tensor of \(count) elements with strides \(layout.map(\.1)) would expand the \(available) elements of storage \(key)")
        }
        let copied = (copiedElements[storage.key] ?? 0) + count  // each term is at most `available`
        let (allowed, overflow) = max(available, 1).multipliedReportingOverflow(by: max(limits.maxCopiesPerStorage, 0))
        guard overflow || copied <= allowed else {
            throw PickleError.limitExceeded(what: "its strided or misaligned tensors copy storage \(key) more than \(limits.maxCopiesPerStorage) times over")
        }
        copiedElements[storage.key] = copied
        // Gather element by element, walking the index like an odometer over the last dimension. Every `src`
        // stays within [offset, lastIndex + largest stride], which the checks above keep far from overflow.
        let copy = TensorStorage(uninitializedByteCount: count * elementSize)
        let source = UnsafeRawPointer(storage.storage.pointer)
        let sizes = layout.map(\.0), steps = layout.map(\.1)
        var index = [Int](repeating: 0, count: layout.count)
        var src = offset
        for i in 0..<count {
            (copy.pointer + i * elementSize).copyMemory(from: source + src * elementSize, byteCount: elementSize)
            var d = layout.count - 1
            while d >= 0 {
                index[d] += 1
                src += steps[d]
                if index[d] < sizes[d] { break }
                src -= steps[d] * sizes[d]
                index[d] = 0
                d -= 1
            }
        }
        return Tensor(shape: size, dtype: dtype, storage: copy)
    }

    // MARK: Conversion

    /// Turns the machine's graph into a value tree. Each container converts once (shared ones share their
    /// arrays), a container that contains itself is refused, and nesting is capped.
    func convert(_ o: Obj, depth: Int, cache: inout [Int: PickleValue]) throws -> PickleValue {
        switch o {
        case .none: return .none
        case .bool(let v): return .bool(v)
        case .int(let v): return .int(v)
        case .bigInt(let v): return .bigInt(v)
        case .float(let v): return .float(v)
        case .string(let v): return .string(v)
        case .bytes(let v): return .bytes(v)
        case .global(let m, let n, _): return .global(module: m, name: n)
        case .tensor(let t): return .tensor(t)
        case .storage(let s): return .storage(s)
        case .node(let i):
            if let done = cache[i] { return done }
            guard depth < limits.maxNesting else {
                throw PickleError.limitExceeded(what: "its containers nest deeper than \(limits.maxNesting) levels (or contain themselves)")
            }
            let node = nodes[i]
            let items = try node.items.map { try convert($0, depth: depth + 1, cache: &cache) }
            let value: PickleValue
            switch node.kind {
            case .tuple: value = .tuple(items)
            case .list: value = .list(items)
            case .set, .frozenset: value = .set(items)
            case .dict:
                let values = try node.values.map { try convert($0, depth: depth + 1, cache: &cache) }
                let state = try node.state.map { try convert($0, depth: depth + 1, cache: &cache) }
                value = .dict(PickleDict(entries: Array(zip(items, values).map { (key: $0.0, value: $0.1) }),
                                         attributes: state, className: node.className, identity: i))
            case .object:
                let args = try node.args.map { try convert($0, depth: depth + 1, cache: &cache) }
                let state = try node.state.map { try convert($0, depth: depth + 1, cache: &cache) }
                value = .object(PickleObject(className: node.className ?? "object", args: args, state: state))
            }
            cache[i] = value
            return value
        }
    }
}
