import Foundation
import Testing
import PaellaTestSupport
@testable import PaellaIO
import PaellaCore

/// Writes `bytes` to a fresh temporary file, runs `body` with its path, then deletes it.
func withTemporaryFile<R>(_ bytes: [UInt8], suffix: String = ".bin", _ body: (String) throws -> R) rethrows -> R {
    let path = NSTemporaryDirectory() + "paella-io-test-\(UUID().uuidString)\(suffix)"
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

extension [UInt8] {
    /// Overwrites a little-endian field in place (for corrupting archives).
    mutating func putLE(_ value: UInt64, at offset: Int, width: Int) {
        for i in 0..<width { self[offset + i] = UInt8((value >> (8 * UInt64(i))) & 0xFF) }
    }
}

// MARK: - Tests

@Suite("ZipArchive")
struct ZipArchiveTests {
    static let text = Array("Paella paella paella paella paella paella paella! ".utf8)
    static let repeated = text + text + text + text  // 200 bytes
    /// `repeated` compressed with Python's `zlib.compressobj(9, zlib.DEFLATED, -15)` (raw deflate, 17 bytes).
    static let repeatedDeflated: [UInt8] = [11, 72, 76, 205, 201, 73, 84, 40, 32, 150, 82, 84, 8, 24, 148, 58, 0]

    @Test func storedEntriesAreAlignedNoCopyViews() throws {
        let a = Array(0..<100).map { UInt8($0) }, b: [UInt8] = [], c = Array("little".utf8)
        let zip = TestZip.stored([("m/data/0", a), ("m/empty", b), ("m/byteorder", c)]).build()
        try withTemporaryFile(zip.bytes) { path in
            let archive = try ZipArchive(path: path)
            #expect(archive.entries.map(\.name) == ["m/data/0", "m/empty", "m/byteorder"])
            let e = try #require(archive.entry(named: "m/data/0"))
            #expect(e.isStored && e.uncompressedSize == 100 && e.dataOffset % 64 == 0)
            let storage = try archive.storage(for: e)
            #expect(storage.isMapped)
            #expect(storage.pointer == UnsafeMutableRawPointer(mutating: archive.file.base + e.dataOffset))
            #expect(try archive.data(of: e) == a)
            #expect(try archive.data(of: #require(archive.entry(named: "m/empty"))) == b)
            #expect(try archive.data(of: #require(archive.entry(named: "m/byteorder"))) == c)
            #expect(archive.entry(named: "m/missing") == nil)
        }
    }

    @Test func zip64RecordsAndExtraFieldsAreRead() throws {
        let a = Array(repeating: UInt8(7), count: 130)
        let zip = TestZip.stored([("big/data.pkl", Self.text), ("big/data/0", a)], zip64: true).build()
        try withTemporaryFile(zip.bytes) { path in
            let archive = try ZipArchive(path: path)
            #expect(archive.entries.count == 2)
            let e = try #require(archive.entry(named: "big/data/0"))
            #expect(e.localHeaderOffset == zip.localOffsets[1] && e.uncompressedSize == 130 && e.compressedSize == 130)
            #expect(try archive.data(of: e) == a)
            #expect(try archive.data(of: #require(archive.entry(named: "big/data.pkl"))) == Self.text)
        }
    }

    @Test func deflatedEntriesInflate() throws {
        // A real zlib stream, and a hand-made stored deflate block (BFINAL=1, BTYPE=00, LEN, ~LEN, bytes).
        let raw = Array("abc".utf8)
        let storedBlock: [UInt8] = [0x01, 0x03, 0x00, 0xFC, 0xFF] + raw
        let zip = TestZip(entries: [
            .init(name: "z/a", payload: Self.repeatedDeflated, method: 8, uncompressedSize: 200, crc: 0x732E_C1FF),
            .init(name: "z/b", payload: storedBlock, method: 8, uncompressedSize: 3, crc: testCRC32(raw)),
        ]).build()
        try withTemporaryFile(zip.bytes) { path in
            let archive = try ZipArchive(path: path)
            let a = try #require(archive.entry(named: "z/a"))
            #expect(try archive.data(of: a) == Self.repeated)
            #expect(try !archive.storage(for: a).isMapped)
            #expect(try archive.data(of: #require(archive.entry(named: "z/b"))) == raw)
        }
    }

    @Test func deflateLiesAreCaught() throws {
        let cases: [(TestZip.Entry, String)] = [
            (.init(name: "z/short", payload: Self.repeatedDeflated, method: 8, uncompressedSize: 150, crc: 0x732E_C1FF), "more than the declared"),
            (.init(name: "z/long", payload: Self.repeatedDeflated, method: 8, uncompressedSize: 300, crc: 0x732E_C1FF), "inflates to 200 bytes"),
            (.init(name: "z/crc", payload: Self.repeatedDeflated, method: 8, uncompressedSize: 200, crc: 1), "CRC-32"),
            (.init(name: "z/cut", payload: Array(Self.repeatedDeflated.prefix(8)), method: 8, uncompressedSize: 200, crc: 0x732E_C1FF), "ends early"),
            (.init(name: "z/junk", payload: [0xFF, 0xFF, 0xFF, 0xFF], method: 8, uncompressedSize: 10, crc: 0), "corrupt"),
        ]
        for (entry, phrase) in cases {
            try withTemporaryFile(TestZip(entries: [entry]).build().bytes) { path in
                let archive = try ZipArchive(path: path)
                let e = try #require(archive.entries.first)
                let error = #expect(throws: ZipError.self) { _ = try archive.data(of: e) }
                guard case .decompressionFailed(_, let name, let reason)? = error else {
                    Issue.record("expected decompressionFailed for \(entry.name), got \(String(describing: error))"); return
                }
                #expect(name == entry.name)
                #expect(reason.contains(phrase), "\(reason)")
            }
        }
    }

    @Test func otherMethodsAndEncryptionAreRefused() throws {
        let bzip = TestZip(entries: [.init(name: "x", payload: [1, 2, 3], method: 12)]).build()
        try withTemporaryFile(bzip.bytes) { path in
            let archive = try ZipArchive(path: path)
            let error = #expect(throws: ZipError.self) { _ = try archive.data(of: archive.entries[0]) }
            #expect(error?.description.contains("compression method 12") == true)
        }
        let encrypted = TestZip(entries: [.init(name: "secret", payload: [1, 2, 3], flags: 1)]).build()
        withTemporaryFile(encrypted.bytes) { path in
            let error = #expect(throws: ZipError.self) { _ = try ZipArchive(path: path) }
            #expect(error?.description.contains("secret is encrypted") == true)
        }
    }

    /// Every hostile archive throws the expected error case, with a message naming the problem; none crashes.
    @Test func hostileArchivesAreRefused() throws {
        let good = TestZip.stored([("m/data.pkl", Self.text), ("m/data/0", Array(repeating: 1, count: 64))]).build()
        let bytes = good.bytes
        let end = good.endOffset

        func check(_ name: String, _ data: [UInt8], _ phrase: String, _ matches: (ZipError) -> Bool) {
            withTemporaryFile(data) { path in
                let error = #expect(throws: ZipError.self, "\(name)") { _ = try ZipArchive(path: path) }
                guard let error else { return }
                #expect(matches(error), "\(name): unexpected \(error)")
                #expect(error.description.contains(phrase), "\(name): \(error.description)")
            }
        }
        func isTruncated(_ e: ZipError) -> Bool { if case .truncated = e { return true }; return false }
        func isOutOfBounds(_ e: ZipError) -> Bool { if case .outOfBounds = e { return true }; return false }
        func isMalformed(_ e: ZipError) -> Bool { if case .malformed = e { return true }; return false }
        func isNotZip(_ e: ZipError) -> Bool { if case .notAZipArchive = e { return true }; return false }

        check("empty file", [], "not a ZIP archive", isNotZip)
        check("text file", Array("hello, world, this is not an archive at all".utf8), "not a ZIP archive", isNotZip)
        check("truncated in half", Array(bytes.prefix(bytes.count / 2)), "end-of-central-directory record is missing", isTruncated)
        check("truncated to 10 bytes", Array(bytes.prefix(10)), "ends before", isTruncated)

        var farDirectory = bytes
        farDirectory.putLE(UInt64(bytes.count + 1000), at: end + 16, width: 4)
        check("central directory offset past the end", farDirectory, "central directory offset", isOutOfBounds)

        var longDirectory = bytes
        longDirectory.putLE(UInt64(end - good.centralOffset + 10), at: end + 12, width: 4)
        check("central directory overlapping its end record", longDirectory, "runs past the end-of-central-directory record", isOutOfBounds)

        var manyEntries = bytes
        manyEntries.putLE(60000, at: end + 8, width: 2)
        manyEntries.putLE(60000, at: end + 10, width: 2)
        check("absurd entry count", manyEntries, "claims 60000 entries", isMalformed)

        var badSignature = bytes
        badSignature.putLE(0x1234_5678, at: good.centralOffsets[1], width: 4)
        check("bad central signature", badSignature, "bad signature", isMalformed)

        var farLocal = bytes
        farLocal.putLE(UInt64(bytes.count - 10), at: good.centralOffsets[1] + 42, width: 4)
        check("local header past the end", farLocal, "local header of entry m/data/0", isOutOfBounds)

        var notLocal = bytes
        notLocal.putLE(3, at: good.centralOffsets[1] + 42, width: 4)
        check("local header offset at garbage", notLocal, "no local header", isMalformed)

        var hugeEntry = bytes
        hugeEntry.putLE(0x7FFF_0000, at: good.centralOffsets[1] + 20, width: 4)
        hugeEntry.putLE(0x7FFF_0000, at: good.centralOffsets[1] + 24, width: 4)
        check("entry data past the end", hugeEntry, "compressed size of entry m/data/0", isOutOfBounds)

        var sizeMismatch = bytes
        sizeMismatch.putLE(10, at: good.centralOffsets[1] + 24, width: 4)
        check("stored sizes disagree", sizeMismatch, "stored entry m/data/0", isMalformed)

        var longName = bytes
        longName.putLE(0xFFFF, at: good.centralOffsets[1] + 28, width: 2)
        check("name running past the directory", longName, "entry 1 runs past the end of the central directory", isOutOfBounds)

        let twin = TestZip.stored([("same", [1]), ("same", [2])]).build().bytes
        check("duplicate names", twin, "appears twice", isMalformed)

        var saturatedNoLocator = bytes
        saturatedNoLocator.putLE(0xFFFF_FFFF, at: end + 16, width: 4)
        check("ZIP64 marker without locator", saturatedNoLocator, "no ZIP64 locator", isMalformed)

        let zip64 = TestZip.stored([("m/data.pkl", Self.text)], zip64: true).build()
        let locator = zip64.endOffset - 20
        var farRecord = zip64.bytes
        farRecord.putLE(UInt64(Int64.max), at: locator + 8, width: 8)
        check("ZIP64 record offset past the end", farRecord, "ZIP64 end-of-central-directory record offset", isOutOfBounds)
        var wrongRecord = zip64.bytes
        wrongRecord.putLE(0, at: locator + 8, width: 8)
        check("ZIP64 locator at garbage", wrongRecord, "no ZIP64 end-of-central-directory record", isMalformed)
        var zip64Count = zip64.bytes
        zip64Count.putLE(UInt64.max, at: locator - 56 + 24, width: 8)
        zip64Count.putLE(UInt64.max, at: locator - 56 + 32, width: 8)
        check("ZIP64 absurd count", zip64Count, "claims", isMalformed)
        var zip64Size = zip64.bytes
        zip64Size.putLE(UInt64.max, at: zip64.centralOffset + 46 + 10 + 4 + 8, width: 8)
        check("ZIP64 compressed size overflow", zip64Size, "compressed size of entry m/data.pkl", isOutOfBounds)
    }

    @Test func fixtureArchiveIsStoredAndAligned() throws {
        let archive = try ZipArchive(path: Fixtures.path("denoiser_v1_tiny.pt"))
        #expect(archive.entry(named: "denoiser_v1_tiny/data.pkl") != nil)
        let storages = archive.entries.filter { $0.name.hasPrefix("denoiser_v1_tiny/data/") }
        #expect(!storages.isEmpty)
        for e in storages {
            #expect(e.isStored && e.dataOffset % 64 == 0, "\(e.name) at \(e.dataOffset)")
        }
    }
}
