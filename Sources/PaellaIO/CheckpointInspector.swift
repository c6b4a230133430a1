#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PaellaCore

/// The checkpoint formats Paella reads.
public enum CheckpointFormat: String, Sendable, Codable {
    /// huggingface safetensors (memory-mapped).
    case safetensors
    /// `torch.save` zip archive: `.pt`, `.pth`, `.bin`, Lightning `.ckpt`.
    case pytorch
}

/// A file that is not a checkpoint Paella can read, recognised from its first bytes.
public enum CheckpointFormatError: Error, CustomStringConvertible, Equatable {
    /// A `torch.save` file from before PyTorch 1.6 (a bare pickle stream with the legacy magic number).
    case legacyPyTorch(path: String)
    /// A pickle that is not a `torch.save` file.
    case barePickle(path: String)
    /// A Git LFS pointer file checked out instead of the real file.
    case gitLFSPointer(path: String)
    /// Anything else; `firstBytes` is a hex dump of the start of the file.
    case unrecognized(path: String, firstBytes: String)

    public var description: String {
        switch self {
        case .legacyPyTorch(let path):
            return "\(path) uses the legacy (pre-1.6) torch.save format, which Paella does not read; re-save it in PyTorch with torch.save(torch.load(path), path, _use_new_zipfile_serialization=True) or convert it to safetensors."
        case .barePickle(let path):
            return "\(path) is a plain pickle, not a torch.save checkpoint, and Paella never unpickles arbitrary files; save the weights with torch.save or as safetensors."
        case .gitLFSPointer(let path):
            return "\(path) is a Git LFS pointer, not the checkpoint itself; fetch the real file with `git lfs pull` or download it again."
        case .unrecognized(let path, let firstBytes):
            return "\(path) is neither a safetensors file nor a torch.save checkpoint (it starts with bytes \(firstBytes)); pass a .safetensors, .pt, .pth, .bin or .ckpt file."
        }
    }
}

/// Every resource cap of the checkpoint readers in one place: the ZIP reader's inflation caps, the unpickler's
/// object, stack, memo, nesting and copy caps, and the safetensors header caps. Each cap is documented where it
/// is declared; the defaults refuse bombs crafted to exhaust memory or time while accepting any real checkpoint
/// (tensor bytes of either format are views of the file and are never limited).
///
/// A trusted file that exceeds a default can be read by raising the cap: in code, set the field and pass the
/// limits to `PyTorchCheckpoint(path:limits:)` or `SafeTensors(path:limits:)`; on the command line, set the
/// environment variable PAELLA_CHECKPOINT_LIMITS to comma-separated `name=value` pairs, for example
/// `PAELLA_CHECKPOINT_LIMITS=max-inflated-bytes=8Gi,max-pickle-objects=20000000` (names in `settings`; values
/// take an optional Ki, Mi or Gi suffix).
public struct CheckpointLimits: Sendable, Equatable {
    public var zip = ZipArchive.Limits()
    public var pickle = Unpickler.Limits()
    public var safetensors = SafeTensors.Limits()
    public init() {}

    public static let environmentVariable = "PAELLA_CHECKPOINT_LIMITS"

    /// The names PAELLA_CHECKPOINT_LIMITS accepts and the cap each sets.
    public static var settings: [(name: String, field: WritableKeyPath<CheckpointLimits, Int>)] { [
        ("max-inflated-bytes", \.zip.maxTotalInflatedBytes),
        ("max-compression-ratio", \.zip.maxCompressionRatio),
        ("max-pickle-objects", \.pickle.maxObjects),
        ("max-pickle-objects-per-byte", \.pickle.maxObjectsPerInputByte),
        ("max-pickle-stack", \.pickle.maxStack),
        ("max-pickle-memo", \.pickle.maxMemo),
        ("max-pickle-nesting", \.pickle.maxNesting),
        ("max-copies-per-storage", \.pickle.maxCopiesPerStorage),
        ("max-safetensors-header-bytes", \.safetensors.maxHeaderBytes),
        ("max-safetensors-tensors", \.safetensors.maxTensors),
    ] }

    /// The defaults with the changes PAELLA_CHECKPOINT_LIMITS asks for (none when it is unset or empty).
    public static func fromEnvironment() throws -> CheckpointLimits {
        guard let text = getenv(environmentVariable).map({ String(cString: $0) }), !text.isEmpty else {
            return CheckpointLimits()
        }
        return try parse(text)
    }

    /// The defaults changed by `text`: comma-separated `name=value` pairs.
    public static func parse(_ text: String) throws -> CheckpointLimits {
        var limits = CheckpointLimits()
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpaces }
            guard parts.count == 2, let setting = settings.first(where: { $0.name == parts[0] }) else {
                throw CheckpointLimitsError.unknownSetting(terminalSafe(String(pair), maxLength: 100))
            }
            guard let value = parseCount(parts[1]) else {
                throw CheckpointLimitsError.badValue(name: setting.name, value: terminalSafe(parts[1], maxLength: 100))
            }
            limits[keyPath: setting.field] = value
        }
        return limits
    }

    /// A non-negative count with an optional binary suffix: "4096", "64Ki", "8Gi" (also "8G", "8GiB").
    static func parseCount(_ text: String) -> Int? {
        let units: [(suffix: String, scale: Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                                                     ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40),
                                                     ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)]
        let unit = units.first { text.hasSuffix($0.suffix) }
        guard let number = Int(text.dropLast(unit?.suffix.count ?? 0)), number >= 0 else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: unit?.scale ?? 1)
        return overflow ? nil : value
    }
}

/// A PAELLA_CHECKPOINT_LIMITS value that cannot be used.
public enum CheckpointLimitsError: Error, CustomStringConvertible, Equatable {
    case unknownSetting(String)
    case badValue(name: String, value: String)

    public var description: String {
        let names = CheckpointLimits.settings.map(\.name).joined(separator: ", ")
        switch self {
        case .unknownSetting(let pair):
            return "\(CheckpointLimits.environmentVariable) holds \"\(pair)\", which is not name=value with a known name; the names are \(names)."
        case .badValue(let name, let value):
            return "\(CheckpointLimits.environmentVariable) sets \(name) to \"\(value)\", which is not a whole number of zero or more (with an optional Ki, Mi or Gi suffix)."
        }
    }
}

private extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// What a checkpoint holds: per tensor its name, dtype, shape and size, and the totals.
public struct CheckpointReport: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Number of elements.
        public let parameters: Int
        public let bytes: Int
    }

    public let path: String
    public let format: CheckpointFormat
    /// Tensors in file order.
    public let entries: [Entry]
    /// The safetensors `__metadata__` (empty for PyTorch files).
    public let metadata: [String: String]

    // Saturating sums: each tensor fits, but many views of one large storage could add up past Int.max.
    public var totalParameters: Int { entries.reduce(0) { $0.addingReportingOverflow($1.parameters).overflow ? Int.max : $0 + $1.parameters } }
    public var totalBytes: Int { entries.reduce(0) { $0.addingReportingOverflow($1.bytes).overflow ? Int.max : $0 + $1.bytes } }

    public init(path: String, format: CheckpointFormat, tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) {
        self.path = path
        self.format = format
        self.entries = tensors.map { Entry(name: $0.name, dtype: $0.tensor.dtype, shape: $0.tensor.shape,
                                           parameters: $0.tensor.count, bytes: $0.tensor.byteCount) }
        self.metadata = metadata
    }

    /// A readable table (name, dtype, shape, parameters) of the first `limit` tensors (all when nil), then the
    /// totals over all tensors. Names and metadata come from the file, so characters a terminal would act on
    /// (escape sequences, carriage returns) are shown escaped (see `terminalSafe`).
    public func table(limit: Int? = nil) -> String {
        let shown = entries.prefix(max(limit ?? entries.count, 0))
        let rows = shown.map { [terminalSafe($0.name), $0.dtype.rawValue, "\($0.shape)", CheckpointReport.grouped($0.parameters)] }
        let titles = ["name", "dtype", "shape", "params"]
        var widths = titles.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            // Left-aligned text columns, right-aligned numbers.
            let text = cells.prefix(3).enumerated().map { $1 + String(repeating: " ", count: widths[$0] - $1.count) }
            let number = String(repeating: " ", count: widths[3] - cells[3].count) + cells[3]
            return (text + [number]).joined(separator: "  ")
        }
        var lines = [line(titles)]
        lines += rows.map(line)
        if shown.count < entries.count {
            let hidden = entries.count - shown.count
            lines.append("... \(hidden) more \(hidden == 1 ? "tensor" : "tensors") not shown")
        }
        for key in metadata.keys.sorted() { lines.append("metadata \(terminalSafe(key)): \(terminalSafe(metadata[key] ?? ""))") }
        lines.append("\(format.rawValue): \(entries.count) \(entries.count == 1 ? "tensor" : "tensors"), \(CheckpointReport.grouped(totalParameters)) parameters, "
                     + "\(CheckpointReport.grouped(totalBytes)) bytes (\(CheckpointReport.humanBytes(totalBytes)))")
        return lines.joined(separator: "\n")
    }

    /// One JSON object: path, format, metadata, the first `limit` tensors (all when nil) and the totals over all.
    public func json(limit: Int? = nil) -> String {
        let shown = entries.prefix(max(limit ?? entries.count, 0))
        let tensors = shown.map { e in
            "{\"name\":\(jsonStringLiteral(e.name)),\"dtype\":\"\(e.dtype.rawValue)\","
                + "\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"parameters\":\(e.parameters),\"bytes\":\(e.bytes)}"
        }
        let meta = metadata.keys.sorted().map { "\(jsonStringLiteral($0)):\(jsonStringLiteral(metadata[$0] ?? ""))" }
        return "{\"path\":\(jsonStringLiteral(path)),\"format\":\"\(format.rawValue)\","
            + "\"metadata\":{\(meta.joined(separator: ","))},\"tensors\":[\(tensors.joined(separator: ","))],"
            + "\"total_tensors\":\(entries.count),\"total_parameters\":\(totalParameters),\"total_bytes\":\(totalBytes)}"
    }

    /// 1234567 -> "1,234,567" (locale-independent, so output is stable for scripts and tests).
    static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// Bytes in the largest binary unit that keeps the number at least 1 ("2.3 GiB").
    static func humanBytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        if unit == 0 { return "\(n) B" }
        let rounded = (value * 10).rounded() / 10
        return "\(rounded) \(units[unit])"
    }
}

/// Finds out what a checkpoint file is from its content and lists its tensors, for `paella inspect`.
/// Reading is the same as for loading: safetensors are memory-mapped (no tensor bytes are read), PyTorch files
/// go through the restricted unpickler, which never runs code from the file.
public enum CheckpointInspector {
    /// The first bytes of a legacy `torch.save` stream: pickle protocol 2, then LONG1 with the 10-byte magic
    /// number 0x1950a86a20f9469cfc6c (torch/serialization.py, MAGIC_NUMBER).
    static let legacyTorchMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// The format of the file at `path`, from its first bytes (the `.safetensors` extension decides only for
    /// files too damaged to recognise, so that they get the safetensors reader's precise error).
    public static func detectFormat(path: String) throws -> CheckpointFormat {
        let file = try InputFile.map(path)
        let head = Array(file.bytes.prefix(32))
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || head.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .pytorch }
        if head.starts(with: legacyTorchMagic.prefix(3)) { throw CheckpointFormatError.legacyPyTorch(path: path) }
        if head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) { throw CheckpointFormatError.barePickle(path: path) }
        if head.count >= 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        if path.lowercased().hasSuffix(".safetensors") { return .safetensors }
        if head.starts(with: Array("version https://git-lfs".utf8)) { throw CheckpointFormatError.gitLFSPointer(path: path) }
        let hex = head.prefix(8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        throw CheckpointFormatError.unrecognized(path: path, firstBytes: hex.isEmpty ? "(none, the file is empty)" : hex.joined(separator: " "))
    }

    /// Reads the checkpoint at `path` and lists what it holds; throws the reader's typed error on a bad file.
    /// `limits` default to `CheckpointLimits.fromEnvironment()`.
    public static func inspect(path: String, limits: CheckpointLimits? = nil) throws -> CheckpointReport {
        let limits = try limits ?? CheckpointLimits.fromEnvironment()
        switch try detectFormat(path: path) {
        case .safetensors:
            let file = try SafeTensors(path: path, limits: limits.safetensors)
            return CheckpointReport(path: path, format: .safetensors, tensors: file.tensors, metadata: file.metadata)
        case .pytorch:
            let checkpoint = try PyTorchCheckpoint(path: path, limits: limits)
            return CheckpointReport(path: path, format: .pytorch, tensors: checkpoint.tensors)
        }
    }
}
