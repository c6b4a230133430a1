import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PaellaCore
import PaellaIO

/// One line of a shapes dataset's `metadata.jsonl`: the sample's key, caption and full scene.
public struct ShapeDatasetRecord: Sendable, Hashable, Codable {
    /// The file stem of the sample ("000042"): `000042.png` and `000042.txt`.
    public var key: String
    public var split: ShapeSplit
    public var seed: UInt64
    public var index: Int
    public var caption: String
    public var scene: ShapeScene
}

/// Writes a shapes dataset: `count` samples from `ShapeSampler(seed:split:)` rendered at `side` pixels, either
/// as files (`NNNNNN.png` + `NNNNNN.txt` per sample) or as WebDataset shards (`SPLIT-NNNNNN.tar`, each holding
/// `NNNNNN.png` + `NNNNNN.txt` per sample), plus `metadata.jsonl` with one `ShapeDatasetRecord` per sample.
///
/// Samples are made in parallel (each depends only on seed, split and index, so the output does not depend
/// on the thread count). Shards and `metadata.jsonl` are written atomically; `metadata.jsonl` is written last,
/// so a folder that has it is complete. Per-sample files are written directly (an fsync per small file would
/// cost more than making the sample): an interrupted run leaves complete-looking files without metadata, and
/// rerunning the command rewrites them.
public struct ShapeDatasetWriter: Sendable {
    /// The on-disk layout.
    public enum Format: String, Sendable, CaseIterable {
        case files, tar
    }

    /// What a run wrote.
    public struct Summary: Sendable {
        /// Samples written.
        public var samples: Int
        /// Shards and metadata written (per-sample files are not listed).
        public var files: [String]
        /// Bytes written in all.
        public var bytes: Int
        /// Wall-clock time of the run.
        public var seconds: Double
    }

    /// The folder written to (created when missing).
    public var output: String
    /// Number of samples: keys 0 ..< count.
    public var count: Int
    /// The sampler's seed.
    public var seed: UInt64
    /// Image side in pixels.
    public var side: Int
    /// Which split to sample.
    public var split: ShapeSplit
    /// Files or tar shards.
    public var format: Format
    /// Samples per tar shard.
    public var shardSize: Int
    /// The sampler's `placementVariation` (1: the dataset's usual offsets and scales; 0: none).
    public var placementVariation: Float

    /// A writer of `count` samples of `split` from `seed` into `output`.
    public init(output: String, count: Int, seed: UInt64, side: Int = 64, split: ShapeSplit = .train,
                format: Format = .files, shardSize: Int = 1000, placementVariation: Float = 1) {
        precondition(count >= 0, "ShapeDatasetWriter: negative count \(count)")
        precondition(shardSize >= 1, "ShapeDatasetWriter: shard size must be at least 1, got \(shardSize)")
        self.output = output
        self.count = count
        self.seed = seed
        self.side = side
        self.split = split
        self.format = format
        self.shardSize = shardSize
        self.placementVariation = placementVariation
    }

    /// The key of sample `index`: zero-padded to 6 digits (more when `count` needs them).
    public func key(_ index: Int) -> String {
        let digits = String(index)
        let width = max(6, String(max(count - 1, 0)).count)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// One sample, encoded.
    struct Encoded {
        var png: [UInt8] = []
        var caption = ""
        var record = ""
    }

    /// Writes the dataset using `pool`; `progress` is called with the number of samples done so far.
    @discardableResult
    public func write(pool: ThreadPool, progress: (Int) -> Void = { _ in }) throws -> Summary {
        let start = Date()
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        } catch {
            throw ShapeDatasetError.cannotWrite(path: output, reason: "the folder cannot be created")
        }
        let sampler = ShapeSampler(seed: seed, split: split, placementVariation: placementVariation)
        let renderer = ShapeRenderer(side: side)
        var files: [String] = []
        var bytes = 0
        let batch = format == .tar ? shardSize : 512
        let metadataPath = "\(output)/metadata.jsonl"
        // metadata.jsonl streams into a temporary file that only becomes metadata.jsonl when all samples are out.
        try AtomicFile.write(to: metadataPath) { metadata in
            var done = 0
            while done < count {
                let n = min(batch, count - done)
                let encoded = try encode(base: done, count: n, sampler: sampler, renderer: renderer, pool: pool)
                if format == .tar {
                    let path = "\(output)/\(split.rawValue)-\(key(done / shardSize)).tar"
                    try AtomicFile.write(to: path) { sink in
                        for (i, sample) in encoded.enumerated() {
                            try TarArchive.append(name: key(done + i) + ".png", bytes: sample.png, to: &sink)
                            try TarArchive.append(name: key(done + i) + ".txt", bytes: Array(sample.caption.utf8), to: &sink)
                        }
                        try TarArchive.finish(&sink)
                        bytes += sink.bytesWritten
                    }
                    files.append(path)
                } else {
                    bytes += encoded.reduce(0) { $0 + $1.png.count + $1.caption.utf8.count }
                }
                for sample in encoded { try metadata.write(sample.record + "\n") }
                done += n
                progress(done)
            }
            bytes += metadata.bytesWritten
        }
        files.append(metadataPath)
        return Summary(samples: count, files: files, bytes: bytes, seconds: Date().timeIntervalSince(start))
    }

    /// Makes samples `base ..< base + count` in parallel; in the files format, also writes their files.
    private func encode(base: Int, count n: Int, sampler: ShapeSampler, renderer: ShapeRenderer,
                        pool: ThreadPool) throws -> [Encoded] {
        var encoded = [Encoded](repeating: Encoded(), count: n)
        var failures = [Error?](repeating: nil, count: n)
        let writeFiles = format == .files
        encoded.withUnsafeMutableBufferPointer { slots in
            failures.withUnsafeMutableBufferPointer { errors in
                pool.parallelFor(n) { i in
                    let index = base + i
                    do {
                        let (scene, caption) = sampler.sample(index: index)
                        // Level 1: these flat images compress nearly as well, and encoding is most of the time.
                        let png = try renderer.render(scene).encodePNG(compressionLevel: 1)
                        let record = ShapeDatasetRecord(key: key(index), split: split, seed: seed, index: index,
                                                        caption: caption, scene: scene)
                        let encoder = JSONEncoder()
                        encoder.outputFormatting = [.sortedKeys]
                        let line = String(decoding: try encoder.encode(record), as: UTF8.self)
                        if writeFiles {
                            try ShapeDatasetWriter.writePlain(png, to: "\(output)/\(key(index)).png")
                            try ShapeDatasetWriter.writePlain(Array(caption.utf8), to: "\(output)/\(key(index)).txt")
                        }
                        slots[i] = Encoded(png: png, caption: caption, record: line)
                    } catch {
                        errors[i] = error
                    }
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        return encoded
    }

    /// Reads the records of a dataset's `metadata.jsonl`.
    public static func readMetadata(_ path: String) throws -> [ShapeDatasetRecord] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").map { try decoder.decode(ShapeDatasetRecord.self, from: Data($0.utf8)) }
    }

    /// Writes `bytes` to `path` (created or truncated), without the temporary file and fsync of `AtomicFile`. A
    /// symbolic link at `path` is refused rather than followed, and the file gets `AtomicFile.newFileMode`
    /// whatever it had (no special bits survive).
    static func writePlain(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link, which the dataset writer does not follow" : String(cString: strerror(errno))
            throw ShapeDatasetError.cannotWrite(path: path, reason: reason)
        }
        defer { close(fd) }
        _ = fchmod(fd, AtomicFile.newFileMode)
        try bytes.withUnsafeBytes { buffer in
            guard var p = buffer.baseAddress else { return }
            var left = buffer.count
            while left > 0 {
                #if canImport(Glibc)
                let n = Glibc.write(fd, p, left)
                #else
                let n = Darwin.write(fd, p, left)
                #endif
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw ShapeDatasetError.cannotWrite(path: path, reason: n < 0 ? String(cString: strerror(errno)) : "nothing written")
                }
                p += n
                left -= n
            }
        }
    }
}

/// Why a dataset could not be written.
public enum ShapeDatasetError: Error, CustomStringConvertible, Equatable {
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotWrite(let path, let reason): return "Cannot write \(path): \(reason); check the folder and free space."
        }
    }
}
