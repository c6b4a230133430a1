import PaellaCore

/// Why a tar archive could not be written or read. Each description is one sentence.
public enum TarError: Error, CustomStringConvertible, Equatable {
    case nameTooLong(String)
    case entryTooLarge(name: String, size: Int)
    case corrupt(source: String, offset: Int, reason: String)
    case truncated(source: String, name: String)
    case memberTooLarge(source: String, name: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case .nameTooLong(let name):
            return "The tar entry name \"\(name)\" does not fit a ustar header (at most 100 bytes, or 255 split at a '/')."
        case .entryTooLarge(let name, let size):
            return "The tar entry \(name) has \(size) bytes, more than a ustar header can record (8 GiB)."
        case .corrupt(let source, let offset, let reason):
            return "\(source) is not a valid tar archive at byte \(offset): \(reason)."
        case .truncated(let source, let name):
            return "\(source) ends inside the data of its entry \(name); the file was probably cut short."
        case .memberTooLarge(let source, _, _, _):
            return "\(source) has \(problem)."
        }
    }

    /// What is wrong, without the archive's name, for a message that names the file itself.
    public var problem: String {
        switch self {
        case .corrupt(_, let offset, let reason): return "not a valid tar archive at byte \(offset): \(reason)"
        case .truncated(_, let name): return "it ends inside the data of its entry \(name); the file was probably cut short"
        case .memberTooLarge(_, let name, let size, let limit):
            return "an entry \(name) of \(size) bytes, more than the limit of \(limit) bytes for one member; "
                + "pass a larger maxMemberBytes to read it"
        case .nameTooLong, .entryTooLarge: return description
        }
    }
}

/// One regular file in a tar archive: its name and where its bytes are.
public struct TarEntry: Sendable, Equatable {
    public var name: String
    /// Byte range of the entry's data within the archive.
    public var data: Range<Int>

    public init(name: String, data: Range<Int>) {
        self.name = name
        self.data = data
    }
}

/// Tar archives, the container of WebDataset shards, with the one reader that the dataset commands and the
/// training data both use. Each entry is a 512-byte header (name, octal mode, size and time, checksum, magic)
/// followed by its bytes padded to 512; two zero blocks end the archive. Writing makes plain POSIX ustar regular
/// files with fixed owner and time (0), so the same contents always give the same bytes. Reading understands
/// what common writers make: ustar (a long name split into prefix and name), GNU long names (`L` entries), pax
/// extended headers (`x` entries: their `path` and `size` records), GNU base-256 sizes and pre-POSIX headers
/// without magic; it lists regular files and skips every other entry type (folders, links, global pax headers).
public enum TarArchive {
    static let block = 512

    /// The ustar header checksum: the sum of the header's 512 bytes as unsigned numbers, with the checksum field
    /// itself (bytes 148..<156) counted as eight spaces. Writing and reading both use it.
    static func checksum(_ header: UnsafeRawBufferPointer) -> Int {
        var sum = 0
        for (i, byte) in header.enumerated() { sum += (148 ..< 156).contains(i) ? 32 : Int(byte) }
        return sum
    }

    /// The 512-byte ustar header of a regular file.
    public static func header(name: String, size: Int, mode: Int = 0o644, modificationTime: Int = 0) throws -> [UInt8] {
        guard size >= 0 && size < 1 << 33 else { throw TarError.entryTooLarge(name: name, size: size) }
        let nameBytes = Array(name.utf8)
        var (prefix, base) = ([UInt8](), nameBytes)
        if nameBytes.count > 100 {
            // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
            guard let cut = nameBytes.indices.last(where: { nameBytes[$0] == UInt8(ascii: "/") && $0 <= 155 && nameBytes.count - $0 - 1 <= 100 }),
                  cut > 0 else { throw TarError.nameTooLong(name) }
            (prefix, base) = (Array(nameBytes[..<cut]), Array(nameBytes[(cut + 1)...]))
        }
        guard !base.isEmpty else { throw TarError.nameTooLong(name) }
        var h = [UInt8](repeating: 0, count: block)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        func octal(_ value: Int, width: Int) -> [UInt8] {  // zero-padded octal digits, then NUL
            let digits = String(value, radix: 8)
            return Array((String(repeating: "0", count: width - 1 - digits.count) + digits).utf8) + [0]
        }
        put(base, at: 0)
        put(octal(mode, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)  // uid
        put(octal(0, width: 8), at: 116)  // gid
        put(octal(size, width: 12), at: 124)
        put(octal(modificationTime, width: 12), at: 136)
        h[156] = UInt8(ascii: "0")  // regular file
        put(Array("ustar".utf8) + [0] + Array("00".utf8), at: 257)
        put(prefix, at: 345)
        let sum = h.withUnsafeBytes { checksum($0) }
        put(octal(sum, width: 7) + [UInt8(ascii: " ")], at: 148)  // six digits, NUL, space
        return h
    }

    /// Appends one regular file (header, bytes, padding) to an archive being written.
    public static func append(name: String, bytes: [UInt8], to sink: inout AtomicFile.Sink) throws {
        try sink.write(try header(name: name, size: bytes.count))
        try sink.write(bytes)
        let padding = (block - bytes.count % block) % block
        if padding > 0 { try sink.write([UInt8](repeating: 0, count: padding)) }
    }

    /// Ends an archive being written (two zero blocks).
    public static func finish(_ sink: inout AtomicFile.Sink) throws {
        try sink.write([UInt8](repeating: 0, count: 2 * block))
    }

    /// Writes an archive of `entries` to `path` atomically (see `AtomicFile`).
    public static func write(_ entries: [(name: String, bytes: [UInt8])], to path: String) throws {
        try AtomicFile.write(to: path) { sink in
            for entry in entries { try append(name: entry.name, bytes: entry.bytes, to: &sink) }
            try finish(&sink)
        }
    }

    /// The largest entry a reader accepts by default (1 GiB, as much as `Gzip` inflates): readers copy a member's
    /// bytes into memory whole (an image, a caption), so a member above this is refused from its header, before
    /// anything is read or allocated. Extended headers (long names, pax records) count as entries.
    public static let defaultMaxMemberBytes = 1 << 30

    /// The regular files of an archive held in memory, in archive order, with every header's checksum checked;
    /// `source` names the archive in errors. A size that is negative, does not fit an `Int`, runs past the end
    /// of the bytes or exceeds `maxMemberBytes` is refused with a `TarError`.
    public static func entries(in bytes: UnsafeRawBufferPointer, source: String = "tar data",
                               maxMemberBytes: Int = defaultMaxMemberBytes) throws -> [TarEntry] {
        var result: [TarEntry] = []
        var offset = 0
        // Set by GNU `L` and pax `x` entries; they describe the next real entry only.
        var longName: String?, paxSize: Int?
        while offset + block <= bytes.count {
            let h = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + block])
            if h.allSatisfy({ $0 == 0 }) { return result }  // end of archive
            func corrupt(_ at: Int, _ reason: String) -> TarError { .corrupt(source: source, offset: offset + at, reason: reason) }
            func text(_ start: Int, _ length: Int) -> String { string(UnsafeRawBufferPointer(rebasing: h[start ..< start + length])) }
            func number(_ start: Int, _ length: Int, _ what: String) throws -> Int {
                do { return try headerNumber(UnsafeRawBufferPointer(rebasing: h[start ..< start + length])) }
                catch let problem as NumberProblem { throw corrupt(start, "the \(what) field \(problem.reason)") }
            }
            let stored = try number(148, 8, "checksum")
            let sum = checksum(h)
            guard stored == sum else { throw corrupt(0, "header checksum \(stored), computed \(sum)") }
            // POSIX writes "ustar\0" "00", GNU tar "ustar  \0"; headers from before POSIX carry no magic at all.
            let magic = Array(h[257 ..< 263])
            let posix = magic == Array("ustar".utf8) + [0]
            guard magic.starts(with: Array("ustar".utf8)) || magic.allSatisfy({ $0 == 0 }) else {
                throw corrupt(257, "no ustar magic")
            }
            let prefix = posix ? text(345, 155) : ""  // GNU keeps other fields at 345
            let name = prefix.isEmpty ? text(0, 100) : prefix + "/" + text(0, 100)
            let type = h[156]
            let isExtension = [UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g")].contains(type)
            let size = try isExtension ? number(124, 12, "size") : paxSize ?? number(124, 12, "size")
            let start = offset + block
            guard size <= bytes.count - start else { throw TarError.truncated(source: source, name: longName ?? name) }
            guard size <= maxMemberBytes else {
                throw TarError.memberTooLarge(source: source, name: longName ?? name, size: size, limit: maxMemberBytes)
            }
            let data = UnsafeRawBufferPointer(rebasing: bytes[start ..< start + size])
            switch type {
            case UInt8(ascii: "0"), 0:  // a regular file
                result.append(TarEntry(name: longName ?? name, data: start ..< start + size))
                (longName, paxSize) = (nil, nil)
            case UInt8(ascii: "L"):  // GNU: the next entry's long name
                longName = string(data)
            case UInt8(ascii: "x"):  // pax: records for the next entry
                for (key, value) in try paxRecords(data, corrupt: { corrupt(block, $0) }) {
                    switch key {
                    case "path": longName = value
                    case "size":
                        guard !value.isEmpty, value.utf8.allSatisfy({ (48 ... 57).contains($0) }), let n = Int(value) else {
                            throw corrupt(block, "the pax size \"\(value)\" is not a non-negative whole number within range")
                        }
                        paxSize = n
                    default: continue  // times, owners, link paths: nothing a reader of files needs
                    }
                }
            case UInt8(ascii: "K"), UInt8(ascii: "g"):  // GNU long link name, pax global header: not needed
                break
            default:  // folders, links, devices: skipped, and the long name they carried goes with them
                (longName, paxSize) = (nil, nil)
            }
            offset = start + (size + block - 1) / block * block
        }
        if offset < bytes.count { throw TarError.corrupt(source: source, offset: offset, reason: "a partial header block") }
        if offset > bytes.count {
            throw TarError.corrupt(source: source, offset: bytes.count, reason: "the last entry's padding is missing")
        }
        return result
    }

    /// Bytes up to the first NUL, as UTF-8.
    static func string(_ bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Why a numeric header field could not be read.
    struct NumberProblem: Error { let reason: String }

    /// A numeric header field: octal digits (leading spaces, then digits, ended by a space, a NUL or the field's
    /// end; an empty field is 0), or, when the first byte's high bit is set, GNU tar's big-endian base-256, which
    /// it writes for sizes of 8 GiB and more. Negative values and values past `Int.max` are refused.
    static func headerNumber(_ field: UnsafeRawBufferPointer) throws -> Int {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            // Base-256: the rest of the first byte and the following bytes; bit 6 of the first byte is the sign.
            guard first & 0x40 == 0 else { throw NumberProblem(reason: "holds a negative number") }
            var value = Int(first & 0x3F)
            for byte in field.dropFirst() {
                guard value <= Int.max >> 8 else { throw NumberProblem(reason: "holds a number too large for this machine") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0
        for byte in field.drop(while: { $0 == UInt8(ascii: " ") }) {
            if byte == 0 || byte == UInt8(ascii: " ") { break }
            guard (UInt8(ascii: "0") ... UInt8(ascii: "7")).contains(byte) else {
                throw NumberProblem(reason: "\"\(string(field))\" is not an octal number")
            }
            value = value * 8 + Int(byte - UInt8(ascii: "0"))  // at most 12 digits: far from overflowing
        }
        return value
    }

    /// The records of a pax extended header: each is "LENGTH KEY=VALUE\n", LENGTH counting the whole record.
    static func paxRecords(_ data: UnsafeRawBufferPointer, corrupt: (String) -> TarError) throws -> [(String, String)] {
        var records: [(String, String)] = []
        var at = 0
        while at < data.count, data[at] != 0 {
            guard let space = data[at...].firstIndex(of: UInt8(ascii: " ")), space - at <= 20,
                  let length = Int(String(decoding: data[at ..< space], as: UTF8.self)), length > space - at + 1,
                  length <= data.count - at, data[at + length - 1] == UInt8(ascii: "\n") else {
                throw corrupt("a malformed pax record at byte \(at) of the extended header")
            }
            let record = String(decoding: data[(space + 1) ..< (at + length - 1)], as: UTF8.self)
            guard let equals = record.firstIndex(of: "=") else {
                throw corrupt("a pax record without '=' at byte \(at) of the extended header")
            }
            records.append((String(record[..<equals]), String(record[record.index(after: equals)...])))
            at += length
        }
        return records
    }

    /// The regular files of the archive at `path`, with their bytes (none larger than `maxMemberBytes`).
    public static func read(contentsOf path: String, maxMemberBytes: Int = defaultMaxMemberBytes) throws -> [(name: String, bytes: [UInt8])] {
        let file = try MappedFile(path: path)
        let list = try entries(in: file.bytes, source: path, maxMemberBytes: maxMemberBytes)
        return list.map { ($0.name, Array(file.bytes[$0.data])) }
    }
}
