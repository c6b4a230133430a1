// WebDataset shards: POSIX tar files whose members sharing a key (the path up to the first dot of the file
// name) form one sample, here an image (`.jpg`, `.jpeg`, `.png`) and its caption (`.txt`), as upstream's
// get_dataloader reads them (utils.py, dome272/Paella 3671515). Changed on purpose: the shards are indexed
// once (headers only) and read by offset, so samples are numbered and the epoch-wise shuffle of
// `TrainingSamples` replaces the streaming shuffle buffer: a resumed run sees exactly the batches it would have.
import Foundation
import PaellaCore
import PaellaIO

/// Samples of one or more WebDataset `.tar` shards (whatever `TarArchive` reads: ustar, GNU long names, pax
/// records, base-256 sizes).
/// A key without an image is skipped; a missing caption is the empty one.
public struct WebDatasetShards: TrainingSamples {
    struct Member: Sendable { let shard: Int; let offset: UInt64; let size: Int }
    struct Sample: Sendable { let key: String; let image: Member; let caption: Member? }

    public let shards: [String]
    let samples: [Sample]

    /// Indexes `shards`; a member larger than `maxMemberBytes` (default `TarArchive.defaultMaxMemberBytes`) is
    /// refused before anything is read, since each image and caption is read into memory whole.
    public init(shards: [String], maxMemberBytes: Int = TarArchive.defaultMaxMemberBytes) throws {
        var samples: [Sample] = []
        for (index, shard) in shards.enumerated() {
            samples += Self.samples(of: try Self.members(of: shard, index: index, maxMemberBytes: maxMemberBytes))
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
        let source = "\(shards[member.shard]) (\(samples[i].key).txt)"
        guard member.size <= TrainingSampleLimits.captionBytes else { throw TrainingDataError.captionTooLong(path: source, bytes: member.size) }
        return try read(member).withUnsafeBytes { try TrainingSampleLimits.caption($0, source: source) }
    }

    public func image(_ i: Int, limits: ImageLimits) throws -> PixelImage {
        let member = samples[i].image
        return try PixelImage.decode(try read(member), source: "\(shards[member.shard]) (\(samples[i].key))",
                                     limits: limits).image.rgb()
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

    /// A shard's samples from its members: those sharing a key (the path up to the first dot of the file name)
    /// in archive order of their first image.
    static func samples(of members: [(String, Member)]) -> [Sample] {
        var images: [String: Member] = [:], captions: [String: Member] = [:], keys: [String] = []
        for (name, member) in members {
            let file = (name as NSString).lastPathComponent
            guard let dot = file.firstIndex(of: ".") else { continue }
            let key = (name as NSString).deletingLastPathComponent + "/" + file[..<dot]
            switch file[file.index(after: dot)...].lowercased() {
            case "jpg", "jpeg", "png": if images[key] == nil { keys.append(key) }; images[key] = member
            case "txt": captions[key] = member
            default: continue
            }
        }
        return keys.compactMap { key in images[key].map { Sample(key: key, image: $0, caption: captions[key]) } }
    }

    /// The regular files of a shard with the offsets of their data, in archive order (the headers are read by
    /// `TarArchive`, the one tar reader).
    static func members(of path: String, index: Int, maxMemberBytes: Int) throws -> [(String, Member)] {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw TrainingDataError.unmappable(path, error) }
        return try members(in: file.bytes, source: path, index: index, maxMemberBytes: maxMemberBytes)
    }

    /// `members(of:)` for a shard's bytes; `source` names it in errors.
    static func members(in bytes: UnsafeRawBufferPointer, source: String, index: Int, maxMemberBytes: Int) throws -> [(String, Member)] {
        do {
            return try TarArchive.entries(in: bytes, source: source, maxMemberBytes: maxMemberBytes).map {
                ($0.name, Member(shard: index, offset: UInt64($0.data.lowerBound), size: $0.data.count))
            }
        } catch let error as TarError {
            throw TrainingDataError.unreadable(path: source, reason: error.problem)
        }
    }
}
