import Foundation
import PaellaCore
import PaellaIO
import PaellaTraining
import Testing

/// WebDataset shards written here byte by byte (ustar headers with checksums, a GNU long name, a pax path
/// record, a folder entry, a member of another kind), read back as numbered samples.
@Suite struct WebDatasetTests {
    /// One 512-byte tar header (ustar) for `name` with `size` bytes of data and type `flag`.
    func header(_ name: String, size: Int, flag: Character = "0") -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at offset: Int) { for (i, b) in s.utf8.enumerated() { h[offset + i] = b } }
        put(String(name.prefix(100)), at: 0)
        put("0000644", at: 100)
        put(String(format: "%011o", size), at: 124)
        put(String(format: "%011o", 0), at: 136)
        h[156] = UInt8(ascii: flag.unicodeScalars.first!)
        put("ustar", at: 257)
        put("00", at: 263)
        put("        ", at: 148)
        put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }) + "\0 ", at: 148)
        return h
    }

    func member(_ name: String, _ data: [UInt8], flag: Character = "0") -> [UInt8] {
        header(name, size: data.count, flag: flag) + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    func png(_ value: UInt8, width: Int) throws -> [UInt8] {
        let path = NSTemporaryDirectory() + "paella-wds-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try PixelImage(width: width, height: 6, layout: .rgb, repeating: value).write(to: path)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test func readsSamplesFromShards() throws {
        let folder = NSTemporaryDirectory() + "paella-wds-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let long = "shard0/" + String(repeating: "x", count: 120)
        var first: [UInt8] = member("shard0/", [], flag: "5")                            // a folder entry
        first += member("shard0/000.png", try png(10, width: 8)) + member("shard0/000.txt", Array(" a red square \n".utf8))
        first += member("shard0/000.json", Array("{}".utf8))                                  // not used
        first += member("././@LongLink", Array((long + ".png\0").utf8), flag: "L") + member("ignored", try png(20, width: 9))
        first += member("././@LongLink", Array((long + ".txt\0").utf8), flag: "L") + member("ignored", Array("long".utf8))
        let record = " path=shard0/002.png\n"
        first += member("PaxHeaders/002", Array("\(record.utf8.count + 2)\(record)".utf8), flag: "x") + member("short", try png(30, width: 10))
        first += [UInt8](repeating: 0, count: 1024)
        try Data(first).write(to: URL(fileURLWithPath: folder + "/a.tar"))
        let second = member("003.png", try png(40, width: 11)) + [UInt8](repeating: 0, count: 1024)
        try Data(second).write(to: URL(fileURLWithPath: folder + "/b.tar"))

        let data = try openTrainingSamples(path: folder)
        #expect(data.count == 4)
        #expect(try (0..<4).map { try data.caption($0) } == ["a red square", "long", "", ""])
        #expect(try (0..<4).map { try data.image($0).width } == [8, 9, 10, 11])
        #expect(try data.image(3).pixels.allSatisfy { $0 == 40 })
        #expect(try openTrainingSamples(path: folder + "/b.tar").count == 1)
        // A damaged header is refused with its file named.
        var broken = second
        broken[130] = UInt8(ascii: "7")
        try Data(broken).write(to: URL(fileURLWithPath: folder + "/c.tar"))
        #expect(throws: TrainingDataError.self) { _ = try WebDatasetShards(shards: [folder + "/c.tar"]) }
        // A member above the size limit is refused from its header, naming the shard, the member and the way out.
        let image = try png(40, width: 11)
        let refusal = TrainingDataError.unreadable(path: folder + "/b.tar", reason: TarError.memberTooLarge(
            source: folder + "/b.tar", name: "003.png", size: image.count, limit: image.count - 1).problem)
        #expect(throws: refusal) { _ = try WebDatasetShards(shards: [folder + "/b.tar"], maxMemberBytes: image.count - 1) }
        #expect(try WebDatasetShards(shards: [folder + "/b.tar"], maxMemberBytes: image.count).count == 1)
    }

    /// Bounds on what a sample may make the reader hold: a caption member over 1 MiB is refused by name before it
    /// is read, and a shard that is a FIFO is refused at once (it would block).
    @Test func hostileSamplesAreBoundedInShards() throws {
        let folder = NSTemporaryDirectory() + "paella-wds-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let longCaption = [UInt8](repeating: UInt8(ascii: "a"), count: TrainingSampleLimits.captionBytes + 1)
        let shard = member("000.png", try png(10, width: 8)) + member("000.txt", longCaption) + [UInt8](repeating: 0, count: 1024)
        try Data(shard).write(to: URL(fileURLWithPath: folder + "/a.tar"))
        let data = try WebDatasetShards(shards: [folder + "/a.tar"])
        #expect(throws: TrainingDataError.captionTooLong(path: folder + "/a.tar (/000.txt)", bytes: longCaption.count)) {
            _ = try data.caption(0)
        }
        #expect(mkfifo(folder + "/pipe.tar", 0o644) == 0)
        #expect(throws: TrainingDataError.unreadable(path: folder + "/pipe.tar", reason: "it is a named pipe (FIFO), not a regular file")) {
            _ = try WebDatasetShards(shards: [folder + "/pipe.tar"])
        }
    }
}
