// Read-only ZIP archives (PKWARE APPNOTE.TXT 6.3: end of central directory, ZIP64, central directory, local
// headers) over a memory map, as written by torch.save. Stored entries are no-copy regions; deflated ones inflate.
import CZlib
import PaellaCore

/// Why a ZIP archive could not be read. Each description is one sentence naming the problem.
public enum ZipError: Error, CustomStringConvertible, Equatable {
    /// No end-of-central-directory record: the file is not a ZIP archive (or lost its tail).
    case notAZipArchive(path: String)
    /// A structure runs past the end of the file.
    case truncated(path: String, what: String)
    /// An offset or size points outside the file or the central directory, or overflows.
    case outOfBounds(path: String, what: String)
    /// A signature, count or field has a value that no valid archive has.
    case malformed(path: String, what: String)
    /// A valid feature this reader does not implement (encryption, split archives, other compression methods).
    case unsupported(path: String, what: String)
    /// No entry has this name.
    case entryNotFound(path: String, name: String)
    /// A deflated entry did not inflate to its declared size and checksum.
    case decompressionFailed(path: String, name: String, reason: String)
    /// The archive is well formed but exceeds a `ZipArchive.Limits` cap.
    case limitExceeded(path: String, what: String)

    public var description: String {
        switch self {
        case .notAZipArchive(let path):
            return "\(path) is not a ZIP archive (no end-of-central-directory record was found), so it is not a torch.save checkpoint or it is truncated."
        case .truncated(let path, let what):
            return "\(path) is truncated: \(what)."
        case .outOfBounds(let path, let what):
            return "\(path) is corrupt: \(what)."
        case .malformed(let path, let what):
            return "\(path) is not a valid ZIP archive: \(what)."
        case .unsupported(let path, let what):
            return "\(path) uses a ZIP feature this reader does not support: \(what)."
        case .entryNotFound(let path, let name):
            return "\(path) has no entry named \(terminalSafe(name))."
        case .decompressionFailed(let path, let name, let reason):
            return "Entry \(terminalSafe(name)) of \(path) could not be decompressed: \(reason)."
        case .limitExceeded(let path, let what):
            return "Refusing to read \(path): \(what); if the archive is trustworthy, raise the limit (see `ZipArchive.Limits`, or PAELLA_CHECKPOINT_LIMITS for the command line)."
        }
    }
}

/// A ZIP archive read in place from a memory-mapped file.
///
/// Opening parses the central directory and each entry's local header, and checks that every entry's data lies
/// inside the file; it never reads entry data. Stored entries (method 0, which is what `torch.save` writes) are
/// handed out as no-copy views of the map; deflated entries (method 8) are inflated into owned memory on request.
public struct ZipArchive: Sendable {
    /// One file inside the archive.
    public struct Entry: Sendable, Equatable {
        public let name: String
        /// 0 = stored, 8 = deflated; others are listed but cannot be read.
        public let method: UInt16
        public let compressedSize: Int
        public let uncompressedSize: Int
        public let crc32: UInt32
        public let localHeaderOffset: Int
        /// Where the entry's (possibly compressed) bytes start in the file.
        public let dataOffset: Int

        public var isStored: Bool { method == 0 }
    }

    public let file: MappedFile
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let indexByName: [String: Int]

    public var path: String { file.path }

    /// Caps on what deflated entries may inflate to, checked against the declared sizes when the archive is
    /// opened (inflating checks that an entry yields exactly its declared size, so the declarations bind).
    ///
    /// torch.save stores entries uncompressed: those are views of the file, cost no memory, and no limit applies
    /// to them, so a legitimate checkpoint of any size opens with the defaults. Only archives re-zipped by another
    /// tool hold deflated entries; a deflate bomb (a few megabytes that inflate to gigabytes) is refused here.
    public struct Limits: Sendable, Equatable {
        /// Most bytes all deflated entries together may inflate to (default 512 MiB: with what the unpickler
        /// may hold at its caps, a hostile archive stays well under 2 GB).
        public var maxTotalInflatedBytes: Int = 1 << 29
        /// Most bytes a deflated entry may inflate to per compressed byte (default 32; weights compress to
        /// about 1.1:1 and pickles to under 10:1, so only long runs of one value come near it, while a bomb
        /// needs a file a thirty-second of its inflated size). Entries that inflate to no more than
        /// `ratioExemptBytes` are exempt, so tiny records with a fixed deflate overhead are not refused.
        public var maxCompressionRatio: Int = 32
        /// Inflated size below which the ratio is not checked (default 64 KiB).
        public var ratioExemptBytes: Int = 1 << 16
        public init() {}
    }

    /// Maps and indexes the archive at `path` (a regular file; see `InputFile`).
    public init(path: String, limits: Limits = Limits()) throws {
        try self.init(file: InputFile.map(path), limits: limits)
    }

    /// Indexes an already mapped archive.
    ///
    /// Besides each entry's own bounds this checks that no two entries share bytes of the file (several
    /// central-directory records pointing at one local entry would be inflated once per record) and that the
    /// deflated entries stay within `limits`.
    public init(file: MappedFile, limits: Limits = Limits()) throws {
        self.file = file
        let reader = ZipByteReader(bytes: file.bytes, path: file.path)
        let directory = try reader.findCentralDirectory()
        var entries: [Entry] = []
        entries.reserveCapacity(directory.count)
        var index: [String: Int] = [:]
        var p = directory.offset
        let end = directory.offset + directory.size
        var totalInflated = 0
        for n in 0..<directory.count {
            let (entry, next) = try reader.centralEntry(at: p, end: end, number: n)
            if index[entry.name] != nil {
                throw ZipError.malformed(path: file.path, what: "the entry name \(terminalSafe(entry.name)) appears twice")
            }
            if entry.method == 8 {
                try Self.checkInflation(of: entry, limits: limits, path: file.path)
                // Each term is below the file size times the ratio (or the exemption), so the sum cannot overflow
                // before it passes the limit.
                totalInflated += entry.uncompressedSize
                guard totalInflated <= limits.maxTotalInflatedBytes else {
                    throw ZipError.limitExceeded(path: file.path, what: "its deflated entries inflate to more than \(limits.maxTotalInflatedBytes) bytes in total")
                }
            }
            index[entry.name] = entries.count
            entries.append(entry)
            p = next
        }
        try Self.checkDisjoint(entries, path: file.path)
        self.entries = entries
        indexByName = index
    }

    /// Refuses a deflated entry whose declared size is out of proportion to its compressed bytes.
    private static func checkInflation(of entry: Entry, limits: Limits, path: String) throws {
        guard entry.uncompressedSize > limits.ratioExemptBytes else { return }
        let (allowed, overflow) = entry.compressedSize.multipliedReportingOverflow(by: limits.maxCompressionRatio)
        if !overflow && entry.uncompressedSize > allowed {
            throw ZipError.limitExceeded(path: path, what: "entry \(terminalSafe(entry.name)) inflates \(entry.compressedSize) bytes to \(entry.uncompressedSize), more than \(limits.maxCompressionRatio) times its compressed size")
        }
    }

    /// Every entry (local header and data) must occupy its own bytes of the file.
    private static func checkDisjoint(_ entries: [Entry], path: String) throws {
        let spans = entries.map { (start: $0.localHeaderOffset, end: $0.dataOffset + $0.compressedSize, name: $0.name) }
            .sorted { $0.start < $1.start }
        for (previous, next) in zip(spans, spans.dropFirst()) where next.start < previous.end {
            throw ZipError.malformed(path: path, what: "entries \(terminalSafe(previous.name)) and \(terminalSafe(next.name)) share bytes of the file")
        }
    }

    /// The entry called `name`, if any.
    public func entry(named name: String) -> Entry? {
        indexByName[name].map { entries[$0] }
    }

    /// The entry's uncompressed bytes as tensor storage: a no-copy view of the map for a stored entry, freshly
    /// inflated memory for a deflated one.
    public func storage(for entry: Entry) throws -> TensorStorage {
        switch entry.method {
        case 0:
            return TensorStorage(mapping: file, offset: entry.dataOffset, byteCount: entry.uncompressedSize)
        case 8:
            let out = TensorStorage(uninitializedByteCount: entry.uncompressedSize)
            try inflate(entry, into: UnsafeMutableRawBufferPointer(start: out.pointer, count: entry.uncompressedSize))
            return out
        default:
            throw ZipError.unsupported(path: path, what: "entry \(entry.name) uses compression method \(entry.method) (only stored and deflate are readable)")
        }
    }

    /// Calls `body` with the entry's uncompressed bytes (no copy for a stored entry).
    public func withBytes<R>(of entry: Entry, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        if entry.method == 0 {
            return try body(UnsafeRawBufferPointer(start: file.base + entry.dataOffset, count: entry.uncompressedSize))
        }
        let storage = try self.storage(for: entry)
        return try withExtendedLifetime(storage) {
            try body(UnsafeRawBufferPointer(start: storage.pointer, count: entry.uncompressedSize))
        }
    }

    /// A copy of the entry's uncompressed bytes (for small entries such as `byteorder`).
    public func data(of entry: Entry) throws -> [UInt8] {
        try withBytes(of: entry) { Array($0) }
    }

    /// Raw deflate (RFC 1951) through zlib into a buffer of exactly the declared size; the CRC-32 is checked
    /// because the whole entry has been read anyway.
    private func inflate(_ entry: Entry, into out: UnsafeMutableRawBufferPointer) throws {
        func fail(_ reason: String) -> ZipError {
            .decompressionFailed(path: path, name: entry.name, reason: reason)
        }
        var stream = z_stream()
        let streamSize = Int32(MemoryLayout<z_stream>.size)
        guard inflateInit2_(&stream, -MAX_WBITS, zlibVersion(), streamSize) == Z_OK else {
            throw fail("zlib could not be initialised")
        }
        defer { inflateEnd(&stream) }
        var inputLeft = entry.compressedSize
        var input = UnsafeMutablePointer(mutating: (file.base + entry.dataOffset).assumingMemoryBound(to: UInt8.self))
        var outputLeft = out.count
        var output = out.baseAddress?.assumingMemoryBound(to: UInt8.self)
        var scratch: UInt8 = 0  // lets zlib report data beyond the declared size when the output is full
        while true {
            let inChunk = min(inputLeft, Int(UInt32.max))
            let outChunk = min(outputLeft, Int(UInt32.max))
            stream.next_in = input
            stream.avail_in = UInt32(inChunk)
            var status: Int32 = Z_OK
            if outChunk > 0, let o = output {
                stream.next_out = o
                stream.avail_out = UInt32(outChunk)
                status = CZlib.inflate(&stream, Z_NO_FLUSH)
            } else {
                status = withUnsafeMutablePointer(to: &scratch) { s in
                    stream.next_out = s
                    stream.avail_out = 1
                    return CZlib.inflate(&stream, Z_NO_FLUSH)
                }
                if stream.avail_out == 0 { throw fail("it inflates to more than the declared \(entry.uncompressedSize) bytes") }
            }
            let consumed = inChunk - Int(stream.avail_in)
            input += consumed
            inputLeft -= consumed
            if outChunk > 0 {
                let produced = outChunk - Int(stream.avail_out)
                output = output.map { $0 + produced }
                outputLeft -= produced
            }
            if status == Z_STREAM_END { break }
            if status != Z_OK && status != Z_BUF_ERROR {
                throw fail("the deflate stream is corrupt (zlib status \(status))")
            }
            if status == Z_BUF_ERROR && inputLeft == 0 {
                throw fail("the deflate stream ends early")
            }
        }
        guard outputLeft == 0 else {
            throw fail("it inflates to \(out.count - outputLeft) bytes, not the declared \(entry.uncompressedSize)")
        }
        let crc = out.count == 0 ? 0 : UInt32(truncatingIfNeeded: crc32_z(0, out.baseAddress?.assumingMemoryBound(to: UInt8.self), out.count))
        guard crc == entry.crc32 else { throw fail("its CRC-32 does not match") }
    }
}

/// Bounds-checked little-endian reads of the archive's structures.
private struct ZipByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var size: Int { bytes.count }

    // Signatures (APPNOTE 4.3).
    static let localHeader: UInt32 = 0x0403_4B50
    static let centralHeader: UInt32 = 0x0201_4B50
    static let endOfCentralDirectory: UInt32 = 0x0605_4B50
    static let zip64End: UInt32 = 0x0606_4B50
    static let zip64Locator: UInt32 = 0x0706_4B50

    func u16(_ at: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }

    /// `a + b`, or nil on overflow.
    static func add(_ a: Int, _ b: Int) -> Int? {
        let (s, o) = a.addingReportingOverflow(b)
        return o ? nil : s
    }

    /// A 64-bit field as an offset or size inside this file.
    func fileRange(_ value: UInt64, _ what: String) throws -> Int {
        guard let v = Int(exactly: value), v <= size else {
            throw ZipError.outOfBounds(path: path, what: "\(what) (\(value)) lies past the end of the \(size)-byte file")
        }
        return v
    }

    struct Directory { var offset: Int; var size: Int; var count: Int }

    /// Finds the end-of-central-directory record (scanning back over a comment of up to 65535 bytes) and, when
    /// present, the ZIP64 record it points to.
    func findCentralDirectory() throws -> Directory {
        guard size >= 22 else {
            if size >= 4 && u32(0) == Self.localHeader {
                throw ZipError.truncated(path: path, what: "the \(size)-byte file ends before its end-of-central-directory record")
            }
            throw ZipError.notAZipArchive(path: path)
        }
        var eocd = -1
        var p = size - 22
        let lowest = max(0, size - 22 - 65535)
        while p >= lowest {
            if u32(p) == Self.endOfCentralDirectory && p + 22 + Int(u16(p + 20)) <= size { eocd = p; break }
            p -= 1
        }
        guard eocd >= 0 else {
            if u32(0) == Self.localHeader {
                throw ZipError.truncated(path: path, what: "the file starts like a ZIP archive but its end-of-central-directory record is missing")
            }
            throw ZipError.notAZipArchive(path: path)
        }
        let disk = u16(eocd + 4), directoryDisk = u16(eocd + 6)
        var countOnDisk = UInt64(u16(eocd + 8)), count = UInt64(u16(eocd + 10))
        var directorySize = UInt64(u32(eocd + 12)), directoryOffset = UInt64(u32(eocd + 16))
        var recordStart = eocd

        let locator = eocd - 20
        if locator >= 0 && u32(locator) == Self.zip64Locator {
            // ZIP64: the locator gives the offset of the ZIP64 end record, whose 64-bit fields replace the others.
            guard u32(locator + 16) <= 1 else {
                throw ZipError.unsupported(path: path, what: "it is split over \(u32(locator + 16)) disks")
            }
            let record = try fileRange(u64(locator + 8), "the ZIP64 end-of-central-directory record offset")
            guard let recordEnd = Self.add(record, 56), recordEnd <= locator else {
                throw ZipError.outOfBounds(path: path, what: "the ZIP64 end-of-central-directory record at \(record) overlaps its locator or the end of the file")
            }
            guard u32(record) == Self.zip64End else {
                throw ZipError.malformed(path: path, what: "the ZIP64 locator points at \(record), where there is no ZIP64 end-of-central-directory record")
            }
            guard u32(record + 16) == 0 && u32(record + 20) == 0 else {
                throw ZipError.unsupported(path: path, what: "it is split over several disks")
            }
            countOnDisk = u64(record + 24)
            count = u64(record + 32)
            directorySize = u64(record + 40)
            directoryOffset = u64(record + 48)
            recordStart = record
        } else {
            if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
                throw ZipError.malformed(path: path, what: "the end-of-central-directory record needs ZIP64 fields but there is no ZIP64 locator")
            }
            guard disk == 0 && directoryDisk == 0 else {
                throw ZipError.unsupported(path: path, what: "it is split over several disks")
            }
        }
        guard countOnDisk == count else {
            throw ZipError.unsupported(path: path, what: "it is split over several disks")
        }
        let offset = try fileRange(directoryOffset, "the central directory offset")
        let length = try fileRange(directorySize, "the central directory size")
        guard let end = Self.add(offset, length), end <= recordStart else {
            throw ZipError.outOfBounds(path: path, what: "the central directory (\(length) bytes at \(offset)) runs past the end-of-central-directory record at \(recordStart)")
        }
        // Each central entry takes at least 46 bytes, so the count cannot exceed size / 46.
        guard count <= UInt64(length / 46) else {
            throw ZipError.malformed(path: path, what: "it claims \(count) entries but its \(length)-byte central directory can hold at most \(length / 46)")
        }
        return Directory(offset: offset, size: length, count: Int(count))
    }

    /// Parses central-directory entry `number` at `p` (ending before `end`), resolves its local header, and
    /// returns the entry and where the next one starts.
    func centralEntry(at p: Int, end: Int, number: Int) throws -> (ZipArchive.Entry, Int) {
        guard p + 46 <= end else {
            throw ZipError.outOfBounds(path: path, what: "central directory entry \(number) runs past the end of the central directory")
        }
        guard u32(p) == Self.centralHeader else {
            throw ZipError.malformed(path: path, what: "central directory entry \(number) at offset \(p) has a bad signature")
        }
        let flags = u16(p + 8)
        let method = u16(p + 10)
        let crc = u32(p + 16)
        var compressed = UInt64(u32(p + 20))
        var uncompressed = UInt64(u32(p + 24))
        let nameLength = Int(u16(p + 28)), extraLength = Int(u16(p + 30)), commentLength = Int(u16(p + 32))
        var localOffset = UInt64(u32(p + 42))
        let next = p + 46 + nameLength + extraLength + commentLength
        guard next <= end else {
            throw ZipError.outOfBounds(path: path, what: "central directory entry \(number) runs past the end of the central directory")
        }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
        let label = terminalSafe(name)  // for messages: the name is the file's, not ours
        if flags & 1 != 0 {
            throw ZipError.unsupported(path: path, what: "entry \(label) is encrypted")
        }

        // ZIP64 extended information (header 0x0001): 64-bit values for exactly the fields saturated above, in order.
        var e = p + 46 + nameLength
        let extraEnd = e + extraLength
        while e + 4 <= extraEnd {
            let id = u16(e), length = Int(u16(e + 2))
            let dataStart = e + 4
            guard dataStart + length <= extraEnd else {
                throw ZipError.malformed(path: path, what: "an extra field of entry \(label) runs past its end")
            }
            if id == 0x0001 {
                var q = dataStart
                func take() throws -> UInt64 {
                    guard q + 8 <= dataStart + length else {
                        throw ZipError.malformed(path: path, what: "the ZIP64 extra field of entry \(label) is too short")
                    }
                    defer { q += 8 }
                    return u64(q)
                }
                if uncompressed == 0xFFFF_FFFF { uncompressed = try take() }
                if compressed == 0xFFFF_FFFF { compressed = try take() }
                if localOffset == 0xFFFF_FFFF { localOffset = try take() }
            }
            e = dataStart + length
        }

        let compressedSize = try fileRange(compressed, "the compressed size of entry \(label)")
        let local = try fileRange(localOffset, "the local header offset of entry \(label)")
        guard let uncompressedSize = Int(exactly: uncompressed) else {
            throw ZipError.malformed(path: path, what: "entry \(label) declares an impossible size \(uncompressed)")
        }
        if method == 0 && compressedSize != uncompressedSize {
            throw ZipError.malformed(path: path, what: "stored entry \(label) has compressed size \(compressedSize) but uncompressed size \(uncompressedSize)")
        }
        if method == 8 {
            // Deflate expands at most about 1032:1; anything beyond that is a lie (`Limits` set the tighter caps).
            let limit = compressedSize.multipliedReportingOverflow(by: 1032).partialValue + 1024
            guard uncompressedSize <= limit else {
                throw ZipError.malformed(path: path, what: "deflated entry \(label) claims to inflate \(compressedSize) bytes to \(uncompressedSize)")
            }
        }

        // The local header repeats the name and has its own extra field (torch.save pads it to align the data).
        guard let localFixedEnd = Self.add(local, 30), localFixedEnd <= size else {
            throw ZipError.outOfBounds(path: path, what: "the local header of entry \(label) at offset \(local) runs past the end of the \(size)-byte file")
        }
        guard u32(local) == Self.localHeader else {
            throw ZipError.malformed(path: path, what: "entry \(label) points at offset \(local), where there is no local header")
        }
        let dataOffset = localFixedEnd + Int(u16(local + 26)) + Int(u16(local + 28))
        guard let dataEnd = Self.add(dataOffset, compressedSize), dataEnd <= size else {
            throw ZipError.outOfBounds(path: path, what: "the \(compressedSize) bytes of entry \(label) at offset \(dataOffset) run past the end of the \(size)-byte file")
        }
        let entry = ZipArchive.Entry(name: name, method: method, compressedSize: compressedSize,
                                     uncompressedSize: uncompressedSize, crc32: crc, localHeaderOffset: local,
                                     dataOffset: dataOffset)
        return (entry, next)
    }
}
