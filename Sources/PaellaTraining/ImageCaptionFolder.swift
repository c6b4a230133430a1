// Training data from a folder of images with captions, read in a reproducible shuffled order, and upstream's
// image preparation (utils.py ProcessData at dome272/Paella 3671515: Resize(image_size) then RandomCrop).
import Foundation
import PaellaCore
import PaellaIO

/// A data folder that cannot be used.
public enum TrainingDataError: Error, CustomStringConvertible, Equatable {
    case empty(path: String)
    case unreadable(path: String, reason: String)
    /// A caption longer than `TrainingSampleLimits.captionBytes`.
    case captionTooLong(path: String, bytes: Int)

    public var description: String {
        switch self {
        case .empty(let path): return "\(path) holds no .png, .jpg or .jpeg images to train on."
        case .unreadable(let path, let reason): return "\(path) cannot be read: \(reason)."
        case let .captionTooLong(path, bytes):
            return "The caption \(path) is \(bytes) bytes, more than the \(TrainingSampleLimits.captionBytes) a caption may have "
                + "(CLIP reads at most 77 tokens of it); shorten it."
        }
    }

    /// `MappedFile`'s failure to open `path`, as the reason this data cannot be read.
    static func unmappable(_ path: String, _ error: any Error) -> TrainingDataError {
        switch error {
        case MappedFile.Failure.notARegularFile(_, let kind): return .unreadable(path: path, reason: "it is \(kind), not a regular file")
        case MappedFile.Failure.cannotOpen(_, let reason), MappedFile.Failure.cannotMap(_, let reason): return .unreadable(path: path, reason: reason)
        default: return .unreadable(path: path, reason: "\(error)")
        }
    }
}

/// What one training sample may make a reader hold. Training data comes from anywhere (a downloaded shard, a
/// scraped folder): a 2 MB PNG can declare 16384x16384 pixels and a caption file can be any size, while every
/// trainer here crops or resizes to at most 1024 pixels and reads at most a CLIP context of text.
public enum TrainingSampleLimits {
    /// Images are read as edit inputs are (`ImageLimits.resizedAfterReading`): decoded at 1/2, 1/4 or 1/8 scale
    /// while both sides stay at least 1024, and within 2^24 decoded pixels (48 MiB of RGB). An image whose shorter
    /// side is under 2048 is decoded whole, as before; larger ones come out at most 2x larger than the 1024 a
    /// trainer's crop needs, and their crops see the same content resized.
    public static let image = ImageLimits.resizedAfterReading
    /// The longest caption read, in bytes (1 MiB: thousands of times what a CLIP context holds).
    public static let captionBytes = 1 << 20

    /// The caption in `bytes` from `source`, whitespace trimmed; too long a caption is refused.
    static func caption(_ bytes: UnsafeRawBufferPointer, source: String) throws -> String {
        guard bytes.count <= captionBytes else { throw TrainingDataError.captionTooLong(path: source, bytes: bytes.count) }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Numbered training samples: an image and its caption each.
public protocol TrainingSamples: Sendable {
    var count: Int { get }
    /// The caption of sample `i` ("" when it has none).
    func caption(_ i: Int) throws -> String
    /// The decoded image of sample `i`, as RGB, within `limits`.
    func image(_ i: Int, limits: ImageLimits) throws -> PixelImage
}

extension TrainingSamples {
    /// The decoded image of sample `i`, as RGB, within `TrainingSampleLimits.image`.
    public func image(_ i: Int) throws -> PixelImage { try image(i, limits: TrainingSampleLimits.image) }

    /// What to call sample `i` in a message (a file path where there is one).
    public func sampleName(_ i: Int) -> String {
        if let folder = self as? ImageCaptionFolder { return folder.images[i] }
        if let shards = self as? WebDatasetShards { return "sample \(shards.key(i))" }
        return "training sample \(i)"
    }

    /// The samples of batch `step` (`size` of them) in a reproducible order: the samples are shuffled once per
    /// epoch (a Fisher-Yates permutation seeded by `seed` and the epoch) and read in that order, so any step's
    /// batch can be recomputed (resuming needs no saved data position).
    public func batchIndices(step: Int, size: Int, seed: UInt64) -> [Int] {
        (0..<size).map { j in
            let position = step * size + j
            let epoch = position / count
            return shuffledOrder(count, seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)[position % count]
        }
    }
}

func shuffledOrder(_ n: Int, seed: UInt64) -> [Int] {
    var order = Array(0..<n), random = SplitMix64(seed: seed)
    for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(random.next() % UInt64(i + 1))) }
    return order
}

/// Opens training data: a WebDataset `.tar` shard, a folder holding `.tar` shards, or a folder of images with
/// captions (`ImageCaptionFolder`).
public func openTrainingSamples(path: String) throws -> any TrainingSamples {
    if path.lowercased().hasSuffix(".tar") { return try WebDatasetShards(shards: [path]) }
    let tars = (try? FileManager.default.contentsOfDirectory(atPath: path))?.filter { $0.lowercased().hasSuffix(".tar") } ?? []
    if !tars.isEmpty { return try WebDatasetShards(shards: tars.sorted().map { (path as NSString).appendingPathComponent($0) }) }
    return try ImageCaptionFolder(path: path)
}

/// Images (`.png`, `.jpg`, `.jpeg`, in any subfolder) each with an optional caption in a `.txt` file of the
/// same name (`cat.png` + `cat.txt`); an image without one has the empty caption.
public struct ImageCaptionFolder: TrainingSamples {
    public let path: String
    /// Image paths, sorted, so an index names the same sample on every run.
    public let images: [String]

    public init(path: String) throws {
        // The walk starts from the resolved path: Foundation's walker does not enter a folder given as a symbolic link.
        guard let walker = FileManager.default.enumerator(atPath: (path as NSString).resolvingSymlinksInPath) else {
            throw TrainingDataError.unreadable(path: path, reason: "not a folder")
        }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if ["png", "jpg", "jpeg"].contains((relative as NSString).pathExtension.lowercased()) {
                found.append((path as NSString).appendingPathComponent(relative))
            }
        }
        guard !found.isEmpty else { throw TrainingDataError.empty(path: path) }
        self.path = path
        images = found.sorted()
    }

    public var count: Int { images.count }

    /// The caption of sample `i` (the `.txt` beside its image, whitespace trimmed), or "" when there is none. Only
    /// a regular file is read (a FIFO would block forever), and at most `TrainingSampleLimits.captionBytes` of it.
    public func caption(_ i: Int) throws -> String {
        let file = (images[i] as NSString).deletingPathExtension + ".txt"
        guard FileManager.default.fileExists(atPath: file) else { return "" }
        let mapped: MappedFile
        do { mapped = try MappedFile(path: file) } catch { throw TrainingDataError.unmappable(file, error) }
        return try TrainingSampleLimits.caption(mapped.bytes, source: file)
    }

    public func image(_ i: Int, limits: ImageLimits) throws -> PixelImage {
        try PixelImage(contentsOf: images[i], limits: limits).rgb()
    }
}

extension PixelImage {
    /// Upstream's training crop: the shorter side resized to `size` (torchvision `Resize(size)`, bilinear),
    /// then a `size` x `size` window at a random offset (`RandomCrop(size)`), the offsets drawn from `random`.
    public func trainingCrop(size: Int, random: inout SplitMix64) -> PixelImage {
        let resized = resizedShortestSide(to: size, filter: .bilinear)
        let x = Int(random.next() % UInt64(resized.width - size + 1))
        let y = Int(random.next() % UInt64(resized.height - size + 1))
        return resized.cropped(x: x, y: y, width: size, height: size)
    }
}
