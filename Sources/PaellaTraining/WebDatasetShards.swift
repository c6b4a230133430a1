// WebDataset shards: POSIX tar files whose members sharing a key (the path up to the first dot of the file
// name) form one sample, here an image (`.jpg`, `.jpeg`, `.png`) and its caption (`.txt`), as upstream's
// get_dataloader reads them (utils.py, dome272/Paella 3671515). Changed on purpose: the shards are indexed
// once (headers only) and read by offset, so samples are numbered and the epoch-wise shuffle of
// `TrainingSamples` replaces the streaming shuffle buffer: a resumed run sees exactly the batches it would have.
import Foundation
import PaellaIO

/// Samples of one or more WebDataset `.tar` shards (ustar, GNU long names and pax `path` records understood).
/// A key without an image is skipped; a missing caption is the empty one.
public struct WebDatasetShards: TrainingSamples {
    struct Member: Sendable { let shard: Int; let offset: UInt64; let size: Int }
    struct Sample: Sendable { let key: String; let image: Member; let caption: Member? }

    public let shards: [String]
    let samples: [Sample]

    public init(shards: [String]) throws {
        var samples: [Sample] = []
        for (index, shard) in shards.enumerated() {
            var images: [String: Member] = [:], captions: [String: Member] = [:], keys: [String] = []
            for (name, member) in try Self.members(of: shard, index: index) {
                let file = (name as NSString).lastPathComponent
                guard let dot = file.firstIndex(of: ".") else { continue }
                let key = (name as NSString).deletingLastPathComponent + "/" + file[..<dot]
                switch file[file.index(after: dot)...].lowercased() {
                case "jpg", "jpeg", "png": if images[key] == nil { keys.append(key) }; images[key] = member
                case "txt": captions[key] = member
                default: continue
                }
            }
            samples += keys.compactMap { key in images[key].map { Sample(key: key, image: $0, caption: captions[key]) } }
        }
        guard !samples.isEmpty else { throw TrainingDataError.empty(path: shards.joined(separator: ", ")) }
        self.shards = shards
        self.samples = samples
    }

    public var count: Int { samples.count }

    /// The sample's key inside its shard (e.g. "./000123").
    public func key(_ i: Int) -> String { samples[i].key }

    public func caption(_ i: Int) throws -> String {
        guard let member = samples[i].caption else { return "" }
        return String(decoding: try read(member), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func image(_ i: Int) throws -> PixelImage {
        let member = samples[i].image
        return try PixelImage.decode(try read(member), source: "\(shards[member.shard]) (\(samples[i].key))").image.rgb()
    }

    func read(_ member: Member) throws -> [UInt8] {
        let path = shards[member.shard]
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TrainingDataError.unreadable(path: path, reason: "it cannot be opened")
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: member.offset)
        let data = try handle.read(upToCount: member.size) ?? Data()
        guard data.count == member.size else { throw TrainingDataError.unreadable(path: path, reason: "it ends inside a member") }
        return [UInt8](data)
    }

    /// The regular files of a tar archive with the offsets of their data, in archive order.
    static func members(of path: String, index: Int) throws -> [(String, Member)] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TrainingDataError.unreadable(path: path, reason: "it cannot be opened")
        }
        defer { try? handle.close() }
        func bad(_ reason: String) -> TrainingDataError { .unreadable(path: path, reason: "not a tar archive: \(reason)") }
        var found: [(String, Member)] = []
        var offset: UInt64 = 0
        var longName: String?
        while true {
            try handle.seek(toOffset: offset)
            guard let header = try handle.read(upToCount: 512).map({ [UInt8]($0) }), header.count == 512 else { break }
            if header.allSatisfy({ $0 == 0 }) { break }                          // end-of-archive blocks
            func text(_ range: Range<Int>) -> String {
                String(decoding: header[range].prefix { $0 != 0 }, as: UTF8.self)
            }
            func octal(_ range: Range<Int>) -> Int? {
                if header[range.lowerBound] & 0x80 != 0 {                             // GNU base-256 for big sizes
                    return header[(range.lowerBound + 1)..<range.upperBound].reduce(0) { $0 << 8 | Int($1) }
                }
                return Int(text(range).trimmingCharacters(in: .whitespaces), radix: 8)
            }
            let checksum = header.enumerated().reduce(0) { $0 + ((148..<156).contains($1.offset) ? 32 : Int($1.element)) }
            guard let stored = octal(148..<156), stored == checksum else { throw bad("bad header checksum at byte \(offset)") }
            guard let size = octal(124..<136) else { throw bad("bad size field at byte \(offset)") }
            let dataOffset = offset + 512
            var name = text(0..<100)
            if text(257..<262) == "ustar" && header[345] != 0 { name = text(345..<500) + "/" + name }
            switch header[156] {
            case UInt8(ascii: "0"), 0:                                                 // a regular file
                found.append((longName ?? name, Member(shard: index, offset: dataOffset, size: size)))
                longName = nil
            case UInt8(ascii: "L"):                                                    // GNU: the next member's long name
                try handle.seek(toOffset: dataOffset)
                longName = String(decoding: (try handle.read(upToCount: size) ?? Data()).prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"):                                                    // pax: the next member's path
                try handle.seek(toOffset: dataOffset)
                let records = String(decoding: try handle.read(upToCount: size) ?? Data(), as: UTF8.self)
                for record in records.split(separator: "\n") {
                    if let range = record.range(of: " path=") { longName = String(record[range.upperBound...]) }
                }
            default:                                                                   // folders, links, global pax
                break
            }
            offset = dataOffset + UInt64((size + 511) / 512 * 512)
        }
        return found
    }
}
