import ArgumentParser
import Foundation
import Paella

/// A folder of training pairs in the shapes dataset's layout: `NNNNNN.png` images with `NNNNNN.txt` captions
/// beside them, all images of one size, read into memory once (8-bit pixels: 64x64 images take 12 KB each).
struct TrainPairFolder {
    let images: [PixelImage]
    /// One caption per image ("" where the text file is missing and captions were not required).
    let captions: [String]
    var width: Int { images.first?.width ?? 0 }
    var height: Int { images.first?.height ?? 0 }
    var count: Int { images.count }

    /// Reads every `.png` of `path` in name order, with its caption when `captions` is true (then a missing
    /// `.txt` is an error). Throws when the folder has no images or they differ in size.
    init(path: String, captions needCaptions: Bool) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".png") }.sorted()
        guard !names.isEmpty else { throw ValidationError("The training folder \(path) holds no .png images.") }
        var images: [PixelImage] = [], captions: [String] = []
        for name in names {
            let image = try PixelImage(contentsOf: path + "/" + name).rgb()
            if let first = images.first, first.width != image.width || first.height != image.height {
                throw ValidationError("\(name) is \(image.width)x\(image.height), but \(names[0]) is \(first.width)x\(first.height): training images must share one size.")
            }
            images.append(image)
            let textPath = path + "/" + name.dropLast(4) + ".txt"
            if let text = try? String(contentsOfFile: textPath, encoding: .utf8) {
                captions.append(text.trimmingCharacters(in: .whitespacesAndNewlines))
            } else if needCaptions {
                throw ValidationError("\(name) has no caption file \(name.dropLast(4)).txt beside it.")
            } else {
                captions.append("")
            }
        }
        self.images = images
        self.captions = captions
    }

    /// Images `indices` as a `[B, H, W, 3]` tensor in [0, 1].
    func batch(_ indices: [Int]) throws -> Tensor {
        try PixelImage.batchTensor(indices.map { images[$0] })
    }
}

/// Appends one JSON object per line to a log file.
final class JSONLinesLog {
    private let handle: FileHandle

    /// Opens `path` for appending; records whose `step` is `resumedStep` or later are dropped first (a resumed
    /// run trains those steps again).
    init(path: String, resumedStep: Int) throws {
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let kept = text.split(separator: "\n").filter { line in
                let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return ((record?["step"] as? Int) ?? Int.max) < resumedStep
            }
            try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw ValidationError("Cannot write the log \(path).") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    func write<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        handle.write(try encoder.encode(value) + Data("\n".utf8))
    }

    deinit { try? handle.close() }
}

/// Options `train vqgan` and `train clip` share (named as `train denoiser` names them).
struct TrainRunOptions: ParsableArguments {
    @Option(help: "Training data: a folder of NNNNNN.png images (with NNNNNN.txt captions for CLIP), all one size.")
    var data: String

    @Option(name: .shortAndLong, help: "Output folder: checkpoint, the JSONL log, the model file and its JSON config.")
    var output: String

    @Flag(help: "Continue the run saved in --output.")
    var resume = false

    @Option(help: "Total steps of the learning-rate schedule, fixed when the run starts (default 1000); with --resume, stop after this step.")
    var steps: Int?

    @Option(help: "Images per step.")
    var batchSize = 16

    @Option(help: "Peak learning rate (warm-up over 5% of the steps, then cosine).")
    var lr: Double?

    @Option(help: "Print a log line every N steps.")
    var logEvery = 10

    @Option(help: "Save a checkpoint and the model file every N steps (and at the end).")
    var checkpointEvery = 200

    @Option(help: "Seed of the initial weights and of the batch order.")
    var seed: UInt64 = 0

    func validate() throws {
        guard (steps ?? 1) > 0, batchSize > 0, logEvery > 0, checkpointEvery > 0 else {
            throw ValidationError("--steps, --batch-size, --log-every and --checkpoint-every must be positive.")
        }
    }
}

/// A training step's log line: its result's fields and the wall time the step took.
struct TrainLogLine<Result: Encodable>: Encodable {
    var result: Result
    var seconds: Double

    enum CodingKeys: String, CodingKey { case seconds }

    func encode(to encoder: Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(seconds, forKey: .seconds)
    }
}

/// Writes a line to stdout unbuffered, so progress lines reach a log file or pipe as they happen.
func printFlushed(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
