// A ZIP writer for crafting archives byte by byte (PyTorch checkpoints, hostile archives) in tests.

/// CRC-32 (IEEE, reflected 0xEDB88320), bit by bit: slow and obviously right, for small test payloads.
public func testCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

/// A minimal ZIP writer: stored entries whose data starts on a 64-byte boundary (as torch.save writes them) or
/// entries with a given raw-deflate payload, optionally with ZIP64 records for every size and offset.
public struct TestZip {
    public struct Entry {
        public var name: String
        /// The bytes as they sit in the archive (compressed for method 8).
        public var payload: [UInt8]
        public var method: UInt16 = 0
        /// Declared uncompressed size (default: the payload's size).
        public var uncompressedSize: Int?
        /// Declared CRC-32 (default: the CRC of the payload, right for stored entries).
        public var crc: UInt32?
        public var flags: UInt16 = 0

        public init(name: String, payload: [UInt8], method: UInt16 = 0, uncompressedSize: Int? = nil, crc: UInt32? = nil,
                    flags: UInt16 = 0) {
            (self.name, self.payload, self.method, self.uncompressedSize, self.crc, self.flags) = (name, payload, method, uncompressedSize, crc, flags)
        }
    }

    public struct Built {
        public var bytes: [UInt8]
        public var localOffsets: [Int]
        public var centralOffset: Int
        public var centralOffsets: [Int]
        public var endOffset: Int
    }

    public var entries: [Entry]
    public var zip64 = false
    public var alignment = 64

    public init(entries: [Entry], zip64: Bool = false, alignment: Int = 64) {
        (self.entries, self.zip64, self.alignment) = (entries, zip64, alignment)
    }

    public static func stored(_ files: [(String, [UInt8])], zip64: Bool = false) -> TestZip {
        TestZip(entries: files.map { Entry(name: $0.0, payload: $0.1) }, zip64: zip64)
    }

    public func build() -> Built {
        var out: [UInt8] = []
        func u16(_ v: Int) { out += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func u32(_ v: UInt32) { for i in 0..<4 { out.append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
        func u64(_ v: Int) { for i in 0..<8 { out.append(UInt8((UInt64(v) >> (8 * UInt64(i))) & 0xFF)) } }
        let saturated: UInt32 = 0xFFFF_FFFF

        var locals: [Int] = []
        for e in entries {
            let name = Array(e.name.utf8)
            let size = e.uncompressedSize ?? e.payload.count
            locals.append(out.count)
            var extra: [UInt8] = []
            if zip64 {  // local ZIP64 field: uncompressed, compressed
                extra += [0x01, 0x00, 16, 0]
                for v in [size, e.payload.count] { for i in 0..<8 { extra.append(UInt8((UInt64(v) >> (8 * UInt64(i))) & 0xFF)) } }
            }
            // Pad with an unknown extra field (id "FB", as torch.save does) so the data is aligned.
            let unpadded = out.count + 30 + name.count + extra.count
            var pad = (alignment - unpadded % alignment) % alignment
            if pad > 0 && pad < 4 { pad += alignment }
            if pad > 0 { extra += [0x46, 0x42, UInt8((pad - 4) & 0xFF), UInt8((pad - 4) >> 8)] + [UInt8](repeating: 0x5A, count: pad - 4) }
            u32(0x0403_4B50); u16(zip64 ? 45 : 20); u16(Int(e.flags)); u16(Int(e.method)); u16(0); u16(0x21)
            u32(e.crc ?? testCRC32(e.payload))
            if zip64 { u32(saturated); u32(saturated) } else { u32(UInt32(e.payload.count)); u32(UInt32(size)) }
            u16(name.count); u16(extra.count)
            out += name + extra + e.payload
        }
        let central = out.count
        var centrals: [Int] = []
        for (i, e) in entries.enumerated() {
            let name = Array(e.name.utf8)
            let size = e.uncompressedSize ?? e.payload.count
            centrals.append(out.count)
            u32(0x0201_4B50); u16(0x031E); u16(zip64 ? 45 : 20); u16(Int(e.flags)); u16(Int(e.method)); u16(0); u16(0x21)
            u32(e.crc ?? testCRC32(e.payload))
            if zip64 { u32(saturated); u32(saturated) } else { u32(UInt32(e.payload.count)); u32(UInt32(size)) }
            u16(name.count); u16(zip64 ? 28 : 0); u16(0); u16(0); u16(0); u32(0)
            u32(zip64 ? saturated : UInt32(locals[i]))
            out += name
            if zip64 { u16(1); u16(24); u64(size); u64(e.payload.count); u64(locals[i]) }
        }
        let centralSize = out.count - central
        if zip64 {
            let record = out.count
            u32(0x0606_4B50); u64(44); u16(45); u16(45); u32(0); u32(0)
            u64(entries.count); u64(entries.count); u64(centralSize); u64(central)
            u32(0x0706_4B50); u32(0); u64(record); u32(1)
        }
        let end = out.count
        u32(0x0605_4B50); u16(0); u16(0)
        if zip64 { u16(0xFFFF); u16(0xFFFF); u32(saturated); u32(saturated) } else {
            u16(entries.count); u16(entries.count); u32(UInt32(centralSize)); u32(UInt32(central))
        }
        u16(0)
        return Built(bytes: out, localOffsets: locals, centralOffset: central, centralOffsets: centrals, endOffset: end)
    }
}

