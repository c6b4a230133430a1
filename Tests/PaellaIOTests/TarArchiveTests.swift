import Foundation
import Testing
@testable import PaellaIO

/// The one tar reader on archives written here byte by byte: what GNU tar and pax writers add to ustar (long
/// names, extended headers, base-256 sizes, headers without magic), and sizes that must be refused, not trapped on.
@Suite("TarArchive")
struct TarArchiveTests {
    /// A 512-byte header with `name`, `type` and a size field filled by `size` (octal) or `rawSize` (12 bytes as
    /// given), with magic `magic` and a correct checksum.
    func header(_ name: String, size: Int = 0, rawSize: [UInt8]? = nil, type: Character = "0",
                magic: [UInt8] = Array("ustar".utf8) + [0] + Array("00".utf8)) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        put(Array(name.utf8.prefix(100)), at: 0)
        put(Array("0000644\0".utf8), at: 100)
        put(rawSize ?? Array(String(format: "%011o", size).utf8) + [0], at: 124)
        h[156] = UInt8(ascii: type.unicodeScalars.first!)
        put(magic, at: 257)
        let sum = h.withUnsafeBytes { TarArchive.checksum($0) }
        put(Array(String(format: "%06o", sum).utf8) + [0, 32], at: 148)
        return h
    }

    /// A header and its data padded to 512 bytes.
    func entry(_ name: String, _ data: [UInt8], type: Character = "0") -> [UInt8] {
        header(name, size: data.count, type: type) + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    func list(_ bytes: [UInt8]) throws -> [TarEntry] {
        try bytes.withUnsafeBytes { try TarArchive.entries(in: $0, source: "t.tar") }
    }

    let end = [UInt8](repeating: 0, count: 1024)

    @Test func longNamesFromGNUAndPax() throws {
        let long = String(repeating: "n", count: 130) + ".png"
        let record = " path=\(long)\n", sizeRecord = " size=3\n"
        let pax = "\(record.utf8.count + 3)\(record)" + "\(sizeRecord.utf8.count + 1)\(sizeRecord)"
        var bytes = entry("././@LongLink", Array((long + "\0").utf8), type: "L") + entry("cut", [1])
        bytes += entry("folder/", [], type: "5")
        bytes += entry("PaxHeaders/x", Array(pax.utf8), type: "x")
        // The pax size (3) wins over the header's (0).
        bytes += header("short") + [7, 8, 9] + [UInt8](repeating: 0, count: 509)
        bytes += entry("plain.txt", [5]) + end
        let entries = try list(bytes)
        #expect(entries.map(\.name) == [long, long, "plain.txt"])
        #expect(entries.map(\.data.count) == [1, 3, 1])
        #expect(Array(bytes[entries[1].data]) == [7, 8, 9])
    }

    @Test func gnuMagicAndHeadersWithoutMagic() throws {
        // GNU tar's "ustar  \0" keeps other fields where POSIX has the prefix; pre-POSIX headers have no magic.
        var gnu = header("a.txt", size: 1, magic: Array("ustar  ".utf8) + [0])
        gnu[345] = UInt8(ascii: "1")  // an access time, not a prefix
        gnu.replaceSubrange(148 ..< 156, with: [UInt8](repeating: 0, count: 8))
        let sum = gnu.withUnsafeBytes { TarArchive.checksum($0) }
        gnu.replaceSubrange(148 ..< 156, with: Array(String(format: "%06o", sum).utf8) + [0, 32])
        let old = header("b.txt", size: 1, magic: [UInt8](repeating: 0, count: 8))
        let entries = try list(gnu + [1] + [UInt8](repeating: 0, count: 511) + old + [2] + [UInt8](repeating: 0, count: 511) + end)
        #expect(entries.map(\.name) == ["a.txt", "b.txt"])
        #expect(throws: TarError.corrupt(source: "t.tar", offset: 257, reason: "no ustar magic")) {
            _ = try list(header("c", magic: Array("zip!".utf8)) + end)
        }
    }

    @Test func base256Sizes() throws {
        // GNU tar writes sizes of 8 GiB and more in base-256: 0x80, then the value big-endian.
        let four = [0x80] + [UInt8](repeating: 0, count: 10) + [4]
        let entries = try list(header("big", rawSize: four) + [1, 2, 3, 4] + [UInt8](repeating: 0, count: 508) + end)
        #expect(entries == [TarEntry(name: "big", data: 512 ..< 516)])
    }

    @Test func negativeAndAbsurdSizesAreRefused() throws {
        let negative = [UInt8](repeating: 0xFF, count: 12)  // base-256 -1
        #expect(throws: TarError.corrupt(source: "t.tar", offset: 124, reason: "the size field holds a negative number")) {
            _ = try list(header("n", rawSize: negative) + end)
        }
        let huge = [0x80] + [UInt8](repeating: 0xFF, count: 11)  // 2^88 - 1
        #expect(throws: TarError.corrupt(source: "t.tar", offset: 124, reason: "the size field holds a number too large for this machine")) {
            _ = try list(header("h", rawSize: huge) + end)
        }
        let signed = Array("-0000000001\0".utf8)
        #expect(throws: TarError.corrupt(source: "t.tar", offset: 124, reason: "the size field \"-0000000001\" is not an octal number")) {
            _ = try list(header("s", rawSize: signed) + end)
        }
        // A size that fits but runs past the archive's end, from the header or from a pax record.
        #expect(throws: TarError.truncated(source: "t.tar", name: "far")) { _ = try list(header("far", size: 0o77777777777) + end) }
        let record = " size=-5\n"
        let pax = entry("PaxHeaders/x", Array("\(record.utf8.count + 2)\(record)".utf8), type: "x")
        #expect(throws: TarError.corrupt(source: "t.tar", offset: 512, reason: "the pax size \"-5\" is not a non-negative whole number within range")) {
            _ = try list(pax + header("p") + end)
        }
        let badRecord = entry("PaxHeaders/x", Array("99 path=x\n".utf8), type: "x")
        #expect(throws: TarError.self) { _ = try list(badRecord + header("p") + end) }
    }

    @Test func membersOverTheLimitAreRefusedFromTheirHeader() throws {
        let bytes = entry("big.png", [UInt8](repeating: 7, count: 600)) + entry("pax", Array("12 path=a.b\n".utf8), type: "x")
            + entry("b.txt", [1]) + end
        let refusal = TarError.memberTooLarge(source: "t.tar", name: "big.png", size: 600, limit: 599)
        #expect(throws: refusal) { _ = try bytes.withUnsafeBytes { try TarArchive.entries(in: $0, source: "t.tar", maxMemberBytes: 599) } }
        #expect(refusal.description == "t.tar has an entry big.png of 600 bytes, more than the limit of 599 bytes for one member; "
                + "pass a larger maxMemberBytes to read it.")
        // Extended headers count as members too; at the limit every member is listed.
        #expect(throws: TarError.memberTooLarge(source: "t.tar", name: "pax", size: 12, limit: 11)) {
            _ = try Array(bytes[1536...]).withUnsafeBytes { try TarArchive.entries(in: $0, source: "t.tar", maxMemberBytes: 11) }
        }
        let listed = try bytes.withUnsafeBytes { try TarArchive.entries(in: $0, source: "t.tar", maxMemberBytes: 600) }
        #expect(listed.map(\.name) == ["big.png", "a.b"])
        #expect(TarArchive.defaultMaxMemberBytes == 1 << 30)
    }

    @Test func errorsReadAsOneSentence() {
        let error = TarError.corrupt(source: "t.tar", offset: 124, reason: "the size field holds a negative number")
        #expect(error.description == "t.tar is not a valid tar archive at byte 124: the size field holds a negative number.")
        #expect(error.problem == "not a valid tar archive at byte 124: the size field holds a negative number")
    }
}
