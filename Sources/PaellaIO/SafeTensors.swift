// The safetensors format (huggingface/safetensors, docs "Format"): an 8-byte little-endian header length N,
// N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data section; offsets are relative to the start of the data section.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PaellaCore

/// A bad safetensors file (or a request to write one that cannot be written). Each description is one
/// sentence naming the file and the problem, and saying what to do.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case fileTooShort(path: String, byteCount: Int)
    /// The 8-byte header length is larger than the rest of the file or than the limit (100 MB by default).
    case invalidHeaderLength(path: String, headerLength: UInt64, fileSize: Int, limit: Int = SafeTensors.maxHeaderLength)
    /// The header lists more tensors than `SafeTensors.Limits.maxTensors`.
    case tooManyTensors(path: String, count: Int, limit: Int)
    /// The header is not UTF-8, not JSON, or has something after the JSON value other than padding.
    case invalidJSON(path: String, reason: String)
    case headerNotObject(path: String)
    case invalidMetadata(path: String, reason: String)
    case duplicateTensor(path: String, tensor: String)
    /// A tensor's entry is not a JSON object.
    case invalidEntry(path: String, tensor: String, reason: String)
    case missingField(path: String, tensor: String, field: String)
    /// A field has the wrong JSON type, or a number is negative, fractional or too large.
    case invalidField(path: String, tensor: String, field: String, reason: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// The product of the shape (or the byte count) does not fit in a 64-bit integer.
    case shapeTooLarge(path: String, tensor: String, shape: [Int])
    case byteCountMismatch(path: String, tensor: String, dtype: String, shape: [Int], expected: Int, actual: Int)
    case offsetsOutOfBounds(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case overlappingTensors(path: String, first: String, second: String)
    case missingTensor(path: String, tensor: String)
    /// A write was asked for something the format cannot hold (a duplicate name, the reserved name).
    case invalidWrite(path: String, reason: String)

    public var description: String {
        let corrupt = "the file is corrupt or truncated; download or save it again"
        switch self {
        case .fileTooShort(let path, let n):
            return "\(path) is only \(n) bytes long, too short to be a safetensors file (which starts with an 8-byte header length); \(corrupt)."
        case .invalidHeaderLength(let path, let length, let size, let limit):
            let room = max(size - 8, 0)
            let why = length > UInt64(limit)
                ? "larger than the limit of \(limit) bytes (raise `SafeTensors.Limits.maxHeaderBytes`, or max-safetensors-header-bytes in PAELLA_CHECKPOINT_LIMITS, if the file is trustworthy)"
                : "but only \(room) bytes follow the length field"
            return "\(path) declares a \(length)-byte safetensors header, \(why); \(corrupt)."
        case .tooManyTensors(let path, let count, let limit):
            return "\(path) lists \(count) tensors, more than the limit of \(limit); if the file is trustworthy, raise max-safetensors-tensors in PAELLA_CHECKPOINT_LIMITS (or `SafeTensors.Limits.maxTensors`)."
        case .invalidJSON(let path, let reason):
            return "The header of \(path) is not valid JSON (\(reason)); \(corrupt)."
        case .headerNotObject(let path):
            return "The header of \(path) is JSON but not an object mapping tensor names to entries; \(corrupt)."
        case .invalidMetadata(let path, let reason):
            return "The __metadata__ of \(path) \(reason) instead of mapping strings to strings; \(corrupt)."
        case .duplicateTensor(let path, let tensor):
            return "\(path) lists the tensor \"\(terminalSafe(tensor, maxLength: 200))\" twice; \(corrupt)."
        case .invalidEntry(let path, let tensor, let reason):
            return "The entry for tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) \(reason); \(corrupt)."
        case .missingField(let path, let tensor, let field):
            return "The entry for tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) has no \"\(field)\"; \(corrupt)."
        case .invalidField(let path, let tensor, let field, let reason):
            return "The \"\(field)\" of tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) \(reason); \(corrupt)."
        case .unsupportedDType(let path, let tensor, let dtype):
            let supported = SafeTensors.dtypeNames.map(\.name).joined(separator: ", ")
            let kind = SafeTensors.knownUnsupportedDTypes.contains(dtype)
                ? "dtype \(dtype), which Paella cannot hold"
                : "the unknown dtype \"\(dtype)\""
            return "Tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) has \(kind); convert the file to one of \(supported)."
        case .shapeTooLarge(let path, let tensor, let shape):
            return "Tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) has the absurd shape \(SafeTensors.brief(shape)), whose size overflows a 64-bit count; \(corrupt)."
        case .byteCountMismatch(let path, let tensor, let dtype, let shape, let expected, let actual):
            return "Tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) has dtype \(dtype) and shape \(SafeTensors.brief(shape)), which need \(expected) bytes, but its data_offsets span \(actual); \(corrupt)."
        case .offsetsOutOfBounds(let path, let tensor, let begin, let end, let size):
            return "Tensor \"\(terminalSafe(tensor, maxLength: 200))\" in \(path) claims bytes \(begin)..<\(end) of a data section that has only \(size) bytes; \(corrupt)."
        case .overlappingTensors(let path, let first, let second):
            return "Tensors \"\(terminalSafe(first, maxLength: 200))\" and \"\(terminalSafe(second, maxLength: 200))\" in \(path) claim overlapping bytes; \(corrupt)."
        case .missingTensor(let path, let tensor):
            return "\(path) has no tensor named \"\(terminalSafe(tensor, maxLength: 200))\"; check the name (`paella inspect \(path)` lists them)."
        case .invalidWrite(let path, let reason):
            return "Cannot write \(path): \(reason)."
        }
    }
}

/// A safetensors file, memory-mapped: opening reads only the header, and every tensor is a read-only view of
/// the mapped file (no copy), so a multi-gigabyte checkpoint opens instantly and pages load on first touch.
///
/// The header is validated completely before any tensor is made: well-formed JSON, known dtypes, integer
/// shapes whose size fits in 64 bits, byte counts that match dtype x shape, offsets inside the data section, and
/// no two tensors sharing bytes. Gaps between tensors are accepted.
///
/// Alignment: a tensor whose bytes do not start at a multiple of its element size (possible only in a file whose
/// writer did not pad the header to a multiple of 8 or did not order tensors by element size) is copied into
/// owned, aligned memory at open time, because typed access needs natural alignment. Files written by the
/// reference implementations and by `SafeTensors.write` never need this; `copiedForAlignment` lists any.
public struct SafeTensors: Sendable {
    /// The file this was read from.
    public let path: String
    /// Tensor names in the order the header lists them.
    public let names: [String]
    /// The `__metadata__` string map (empty when the file has none).
    public let metadata: [String: String]
    /// Size of the JSON header in bytes; the data section starts at `8 + headerLength`.
    public let headerLength: Int
    /// Tensors that had to be copied because their bytes were misaligned in the file (normally empty).
    public let copiedForAlignment: [String]
    private let byName: [String: Tensor]

    /// The default header cap, as in the reference implementation (100 MB).
    public static let maxHeaderLength = 100_000_000

    /// Caps on the header, checked before it is parsed (its size) and before any tensor is made (the count).
    /// Tensor bytes are never limited: they are views of the file, so a checkpoint of any size opens.
    public struct Limits: Sendable, Equatable {
        /// Largest JSON header accepted, in bytes (default 100,000,000, the reference implementation's cap).
        public var maxHeaderBytes: Int = SafeTensors.maxHeaderLength
        /// Most tensors a header may list (default 1,048,576; the largest released models have tens of
        /// thousands). Each costs a few hundred bytes of index, so this bounds memory beyond the JSON itself.
        public var maxTensors: Int = 1 << 20
        public init() {}
    }

    /// The safetensors dtype names Paella reads and writes.
    static let dtypeNames: [(name: String, dtype: DType)] = [
        ("F64", .float64), ("F32", .float32), ("F16", .float16), ("BF16", .bfloat16),
        ("I64", .int64), ("I32", .int32), ("I16", .int16), ("I8", .int8), ("U8", .uint8), ("BOOL", .bool),
    ]
    /// Dtypes of the format that have no `DType`; named as such in errors.
    static let knownUnsupportedDTypes: Set<String> = [
        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "U16", "U32", "U64", "C64",
    ]

    /// A shape for a message: in full up to 8 dimensions, else the first 8 and the count (a hostile header can
    /// list millions).
    static func brief(_ shape: [Int]) -> String {
        shape.count <= 8 ? "\(shape)" : "[\(shape.prefix(8).map(String.init).joined(separator: ", ")), ...] (\(shape.count) dimensions)"
    }

    /// The safetensors name of a dtype ("F32", "BF16", ...).
    public static func fileName(of dtype: DType) -> String {
        dtypeNames.first { $0.dtype == dtype }?.name ?? dtype.rawValue
    }

    /// Opens and validates `path` (a regular file, see `InputFile`) within `limits` (by default
    /// `CheckpointLimits.fromEnvironment().safetensors`); reads the header only.
    public init(path: String, limits: Limits? = nil) throws {
        try self.init(file: InputFile.map(path), limits: limits)
    }

    /// Validates a file already mapped (or copied into memory) within `limits`; its `path` names it in errors.
    public init(file: MappedFile, limits: Limits? = nil) throws {
        let limits = try limits ?? CheckpointLimits.fromEnvironment().safetensors
        let path = file.path
        let size = file.byteCount
        guard size >= 8 else { throw SafeTensorsError.fileTooShort(path: path, byteCount: size) }
        let declared = UInt64(littleEndian: file.base.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(max(limits.maxHeaderBytes, 0)), Int(declared) <= size - 8 else {
            throw SafeTensorsError.invalidHeaderLength(path: path, headerLength: declared, fileSize: size, limit: limits.maxHeaderBytes)
        }
        let headerLength = Int(declared)
        let dataStart = 8 + headerLength
        let dataSize = size - dataStart

        let headerBytes = UnsafeRawBufferPointer(rebasing: file.bytes[8..<dataStart])
        let root: JSONValue
        do {
            root = try JSONParser.parse(headerBytes)
        } catch let error as JSONParser.Failure {
            throw SafeTensorsError.invalidJSON(path: path, reason: error.reason)
        }
        guard case .object(let members) = root else { throw SafeTensorsError.headerNotObject(path: path) }
        let listed = members.count - (members.contains { $0.key == "__metadata__" } ? 1 : 0)
        guard listed <= limits.maxTensors else {
            throw SafeTensorsError.tooManyTensors(path: path, count: listed, limit: limits.maxTensors)
        }

        var entries: [Entry] = []
        var seen = Set<String>()
        var metadata: [String: String] = [:]
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw SafeTensorsError.duplicateTensor(path: path, tensor: name) }
            if name == "__metadata__" {
                metadata = try SafeTensors.parseMetadata(value, path: path)
            } else {
                entries.append(try Entry(name: name, value: value, path: path, dataSize: dataSize))
            }
        }

        // No two tensors may share bytes: sorted by start, each must begin at or after the previous end.
        // Empty tensors own no bytes and may sit anywhere.
        let sorted = entries.filter { $0.end > $0.begin }.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.begin < previous.end {
            throw SafeTensorsError.overlappingTensors(path: path, first: previous.name, second: next.name)
        }

        var byName: [String: Tensor] = [:]
        var copied: [String] = []
        for entry in entries {
            let offset = dataStart + entry.begin
            let byteCount = entry.end - entry.begin
            if offset % entry.dtype.size == 0 {
                let storage = TensorStorage(mapping: file, offset: offset, byteCount: byteCount)
                byName[entry.name] = Tensor(shape: entry.shape, dtype: entry.dtype, storage: storage)
            } else {
                let tensor = Tensor(uninitialized: entry.shape, dtype: entry.dtype)
                tensor.storage.pointer.copyMemory(from: file.base + offset, byteCount: byteCount)
                byName[entry.name] = tensor
                copied.append(entry.name)
            }
        }
        self.path = path
        self.names = entries.map(\.name)
        self.metadata = metadata
        self.headerLength = headerLength
        self.copiedForAlignment = copied
        self.byName = byName
    }

    /// The tensor called `name`, or nil.
    public subscript(name: String) -> Tensor? { byName[name] }

    /// The tensor called `name`; throws an error naming the file and the tensor when it is absent.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = byName[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        return t
    }

    /// Number of tensors.
    public var count: Int { names.count }

    /// All tensors in header order.
    public var tensors: [(name: String, tensor: Tensor)] {
        names.compactMap { name in byName[name].map { (name, $0) } }
    }

    // MARK: Header validation

    private struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let begin: Int
        let end: Int

        init(name: String, value: JSONValue, path: String, dataSize: Int) throws {
            guard case .object(let fields) = value else {
                throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "is not a JSON object")
            }
            func field(_ key: String) throws -> JSONValue {
                let matches = fields.filter { $0.key == key }
                guard let first = matches.first else { throw SafeTensorsError.missingField(path: path, tensor: name, field: key) }
                guard matches.count == 1 else {
                    throw SafeTensorsError.invalidField(path: path, tensor: name, field: key, reason: "appears twice")
                }
                return first.value
            }
            func integers(_ key: String) throws -> [Int] {
                guard case .array(let items) = try field(key) else {
                    throw SafeTensorsError.invalidField(path: path, tensor: name, field: key, reason: "is not an array")
                }
                return try items.map { item in
                    do { return try item.nonNegativeInteger() } catch let problem as JSONValue.NumberProblem {
                        throw SafeTensorsError.invalidField(path: path, tensor: name, field: key, reason: problem.reason)
                    }
                }
            }

            guard case .string(let dtypeName) = try field("dtype") else {
                throw SafeTensorsError.invalidField(path: path, tensor: name, field: "dtype", reason: "is not a string")
            }
            let shape = try integers("shape")
            let offsets = try integers("data_offsets")
            guard let dtype = SafeTensors.dtypeNames.first(where: { $0.name == dtypeName })?.dtype else {
                throw SafeTensorsError.unsupportedDType(path: path, tensor: name, dtype: dtypeName)
            }
            guard offsets.count == 2 else {
                throw SafeTensorsError.invalidField(path: path, tensor: name, field: "data_offsets",
                                                    reason: "has \(offsets.count) numbers instead of 2 (begin and end)")
            }
            guard offsets[0] <= offsets[1] else {
                throw SafeTensorsError.invalidField(path: path, tensor: name, field: "data_offsets",
                                                    reason: "begins at \(offsets[0]), after its end \(offsets[1])")
            }

            // Overflow-checked size: a hostile shape like [2^40, 2^40] (or [0, 2^40, 2^40]) must be refused.
            guard let (_, bytes) = checkedTensorSize(shape, elementSize: dtype.size) else {
                throw SafeTensorsError.shapeTooLarge(path: path, tensor: name, shape: shape)
            }
            guard offsets[1] - offsets[0] == bytes else {
                throw SafeTensorsError.byteCountMismatch(path: path, tensor: name, dtype: dtypeName, shape: shape,
                                                         expected: bytes, actual: offsets[1] - offsets[0])
            }
            guard offsets[1] <= dataSize else {
                throw SafeTensorsError.offsetsOutOfBounds(path: path, tensor: name, begin: offsets[0], end: offsets[1], dataSize: dataSize)
            }
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.begin = offsets[0]
            self.end = offsets[1]
        }
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws -> [String: String] {
        guard case .object(let members) = value else {
            throw SafeTensorsError.invalidMetadata(path: path, reason: "is not a JSON object")
        }
        var result: [String: String] = [:]
        for (key, item) in members {
            guard case .string(let text) = item else {
                throw SafeTensorsError.invalidMetadata(path: path, reason: "has a non-string value for \"\(terminalSafe(key, maxLength: 200))\"")
            }
            result[key] = text
        }
        return result
    }

    // MARK: Writing

    /// Writes `tensors` as a standard safetensors file at `path`, atomically (see `AtomicFile`).
    ///
    /// The header lists the tensors in the given order (the order `names` returns when the file is read back)
    /// and is padded with spaces to a multiple of 8 bytes. The data section has no gaps, as the reference
    /// reader requires, and is grouped by element size, largest first, keeping the given order within a size:
    /// that way every tensor starts at a multiple of its element size and reads back as a no-copy view.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             to path: String) throws {
        #if _endian(big)
        throw SafeTensorsError.invalidWrite(path: path, reason: "safetensors is little-endian and this machine is big-endian")
        #endif
        var seen = Set<String>()
        for (name, _) in tensors {
            guard name != "__metadata__" else {
                throw SafeTensorsError.invalidWrite(path: path, reason: "\"__metadata__\" is reserved and cannot name a tensor")
            }
            guard seen.insert(name).inserted else {
                throw SafeTensorsError.invalidWrite(path: path, reason: "two tensors are named \"\(name)\"")
            }
        }

        // Data layout: stable sort by element size, descending.
        let layout = tensors.indices.sorted { a, b in
            let (sa, sb) = (tensors[a].tensor.dtype.size, tensors[b].tensor.dtype.size)
            return sa != sb ? sa > sb : a < b
        }
        var begins = [Int](repeating: 0, count: tensors.count)
        var offset = 0
        for i in layout {
            begins[i] = offset
            offset += tensors[i].tensor.byteCount
        }

        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonStringLiteral($0)):\(jsonStringLiteral(metadata[$0] ?? ""))" }
            parts.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        for (i, (name, tensor)) in tensors.enumerated() {
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonStringLiteral(name)):{\"dtype\":\"\(fileName(of: tensor.dtype))\",\"shape\":[\(shape)],"
                         + "\"data_offsets\":[\(begins[i]),\(begins[i] + tensor.byteCount)]}")
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        try AtomicFile.write(to: path) { sink in
            var length = UInt64(headerBytes.count).littleEndian
            try withUnsafeBytes(of: &length) { try sink.write($0) }
            try sink.write(headerBytes)
            for i in layout {
                try tensors[i].tensor.withUnsafeBytes { try sink.write($0) }
            }
        }
    }
}

// MARK: - A small strict JSON parser

/// A parsed JSON value. Objects keep their members in document order (tensor order matters), and numbers keep
/// their text so that integers are read exactly, never through a Double. Public for the server's sdapi, which
/// reads request bodies with the same parser.
public enum JSONValue: Sendable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    struct NumberProblem: Error { let reason: String }

    /// The value as a non-negative Int, or a problem phrased to follow "The \"shape\" of tensor x ...".
    func nonNegativeInteger() throws -> Int {
        guard case .number(let text) = self else { throw NumberProblem(reason: "contains \(kind), not a number") }
        if text.hasPrefix("-") { throw NumberProblem(reason: "contains the negative number \(text)") }
        if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
            throw NumberProblem(reason: "contains \(text), which is not an integer")
        }
        guard let value = Int(text) else { throw NumberProblem(reason: "contains \(text), which is too large") }
        return value
    }

    private var kind: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// Recursive-descent parser for RFC 8259 JSON over UTF-8 bytes, with a nesting limit so that a hostile
/// header of a million "[" cannot overflow the stack.
public struct JSONParser {
    public struct Failure: Error { public let reason: String }

    static let maxDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    /// Parses a whole document; only whitespace (the format's padding) may follow the value.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw Failure(reason: "it is not valid UTF-8") }
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.failure("unexpected text after the JSON value") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func failure(_ what: String) -> Failure { Failure(reason: "\(what) at byte \(index)") }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { index += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        guard current == c else {
            throw failure(current == nil ? "unexpected end, expected '\(Character(Unicode.Scalar(c)))'"
                                         : "expected '\(Character(Unicode.Scalar(c)))'")
        }
        index += 1
    }

    private mutating func value(depth: Int) throws -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw failure("nesting deeper than \(JSONParser.maxDepth) levels") }
        guard let c = current else { throw failure("unexpected end") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw failure("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        for expected in UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount) {
            guard current == expected else { throw failure("invalid literal") }
            index += 1
        }
    }

    private mutating func object(depth: Int) throws -> JSONValue {
        index += 1  // {
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if current == UInt8(ascii: "}") { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let key = try string()
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            let item = try value(depth: depth + 1)
            members.append((key, item))
            skipWhitespace()
            if current == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "}"))
            return .object(members)
        }
    }

    private mutating func array(depth: Int) throws -> JSONValue {
        index += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try value(depth: depth + 1))
            skipWhitespace()
            if current == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "]"))
            return .array(items)
        }
    }

    /// Number text per the JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func number() throws -> String {
        let start = index
        func digits() -> Int {
            let s = index
            while let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { index += 1 }
            return index - s
        }
        if current == UInt8(ascii: "-") { index += 1 }
        if current == UInt8(ascii: "0") { index += 1 } else if digits() == 0 { throw failure("invalid number") }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw failure("invalid number") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw failure("invalid number") }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure("unexpected end in a \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw failure("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private mutating func string() throws -> String {
        index += 1  // opening quote
        var out = [UInt8]()
        while true {
            guard let c = current else { throw failure("unterminated string") }
            index += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = current else { throw failure("unterminated string") }
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        // A high surrogate must be followed by \u and a low surrogate.
                        guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u")
                        else { throw failure("unpaired surrogate in a \\u escape") }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate in a \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw failure("unpaired surrogate in a \\u escape") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw failure("invalid escape")
                }
            case 0x00..<0x20:
                throw failure("control character inside a string")
            default:
                out.append(c)
            }
        }
    }
}
