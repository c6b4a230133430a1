/// Why a tar archive could not be written or read. Each description is one sentence.
public enum TarError: Error, CustomStringConvertible, Equatable {
    case nameTooLong(String)
    case entryTooLarge(name: String, size: Int)
    case corrupt(source: String, offset: Int, reason: String)
    case truncated(source: String, name: String)

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

/// Plain POSIX ustar archives, the container of WebDataset shards: each file is a 512-byte header (name,
/// octal mode, size and time, checksum, magic "ustar\0" "00") followed by its bytes padded to 512; two zero
/// blocks end the archive. Writing makes regular files with fixed owner and time (0), so the same contents
/// always give the same bytes; reading lists regular files and skips other entry types (folders, pax headers).
public enum TarArchive {
    static let block = 512

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
        put(Array("        ".utf8), at: 148)  // checksum field counts as spaces while summing
        h[156] = UInt8(ascii: "0")  // regular file
        put(Array("ustar".utf8) + [0] + Array("00".utf8), at: 257)
        put(prefix, at: 345)
        let sum = h.reduce(0) { $0 + Int($1) }
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

    /// The regular files of an archive held in memory, with every header's checksum and magic checked;
    /// `source` names the archive in errors.
    public static func entries(in bytes: UnsafeRawBufferPointer, source: String = "tar data") throws -> [TarEntry] {
        var result: [TarEntry] = []
        var offset = 0
        while offset + block <= bytes.count {
            let h = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + block])
            if h.allSatisfy({ $0 == 0 }) { return result }  // end of archive
            func field(_ start: Int, _ length: Int) -> [UInt8] { Array(h[start ..< start + length].prefix { $0 != 0 }) }
            func number(_ start: Int, _ length: Int) throws -> Int {
                let text = String(decoding: field(start, length), as: UTF8.self).trimmingSpaces()
                guard let value = Int(text.isEmpty ? "0" : text, radix: 8) else {
                    throw TarError.corrupt(source: source, offset: offset + start, reason: "\"\(text)\" is not an octal number")
                }
                return value
            }
            let stored = try number(148, 8)
            let sum = h.enumerated().reduce(0) { $0 + ((148 ..< 156).contains($1.offset) ? 32 : Int($1.element)) }
            guard stored == sum else {
                throw TarError.corrupt(source: source, offset: offset, reason: "header checksum \(stored), computed \(sum)")
            }
            guard field(257, 5) == Array("ustar".utf8) else {
                throw TarError.corrupt(source: source, offset: offset + 257, reason: "no ustar magic")
            }
            let prefix = field(345, 155)
            let name = String(decoding: prefix.isEmpty ? field(0, 100) : prefix + [UInt8(ascii: "/")] + field(0, 100), as: UTF8.self)
            let size = try number(124, 12)
            let start = offset + block
            guard start + size <= bytes.count else { throw TarError.truncated(source: source, name: name) }
            let type = h[156]
            if type == UInt8(ascii: "0") || type == 0 { result.append(TarEntry(name: name, data: start ..< start + size)) }
            offset = start + (size + block - 1) / block * block
        }
        if offset != bytes.count {
            throw TarError.corrupt(source: source, offset: offset, reason: "a partial header block")
        }
        return result
    }

    /// The regular files of the archive at `path`, with their bytes.
    public static func read(contentsOf path: String) throws -> [(name: String, bytes: [UInt8])] {
        let file = try MappedFile(path: path)
        let list = try entries(in: file.bytes, source: path)
        return list.map { ($0.name, Array(file.bytes[$0.data])) }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
