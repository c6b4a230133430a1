import Foundation
import Paella
import PaellaIO
import PaellaTestSupport
import Testing

/// `paella train denoiser` end to end on the tiny model folder: it trains, logs, writes a model folder that
/// generates, and a run stopped part way and resumed ends with the same weights as one that never stopped.
@Suite("Train CLI", .serialized)
struct TrainCLITests {
    let model: String
    let work: String

    init() throws {
        model = try Fixtures.tinyModelFolder(withVision: false)
        work = try PaellaCLI.temporaryDirectory()
        // Six small pictures (bands of colour), with captions; one without a caption. Two are square at the
        // model's image size (their tokens are computed once), the others are cropped at random every time.
        let data = work + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        for i in 0..<6 {
            let (w, h) = i % 3 == 0 ? (side, side) : (40 + 4 * i, 36)
            var pixels = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h { for x in 0..<w { pixels[(y * w + x) * 3 + i % 3] = UInt8((x * 255 / w + i * 40) % 256) } }
            try PixelImage(width: w, height: h, layout: .rgb, pixels: pixels).write(to: "\(data)/img\(i).png")
            if i != 5 { try "a picture with stripes number \(i)".write(toFile: "\(data)/img\(i).txt", atomically: true, encoding: .utf8) }
        }
    }

    func train(_ output: String, _ extra: [String]) throws -> PaellaCLI.Output {
        try PaellaCLI.run(["train", "denoiser", "--model", model, "--data", work + "/data", "--output", output, "--steps", "3",
                           "--batch-size", "2", "--checkpoint-every", "2", "--threads", "2", "--seed", "5", "--cache-embeddings",
                           "--final-lr", "0.5", "--self-correction", "0.5"] + extra, in: work)
    }

    @Test func trainsLogsWritesAModelFolderAndResumesExactly() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let whole = try train(work + "/whole", [])
        #expect(whole.status == 0, "\(whole.stderr)")
        #expect(whole.stdout.contains("batch 3/3") && whole.stdout.contains("loss"), "\(whole.stdout)")
        let lines = try String(contentsOfFile: work + "/whole/train.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        for key in ["step", "loss", "accuracy", "perplexity", "lr", "grad_norm", "average_loss", "unconditional"] {
            #expect(first[key] != nil, "train.jsonl has no \(key)")
        }
        // --final-lr 0.5: after the warm-up (none at three steps) the rate falls to half its peak (3e-4) at the end.
        let last = try #require(try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any])
        #expect(abs((last["lr"] as? Double ?? 0) - 1.5e-4) < 1e-12, "\(last)")
        // One epoch of six images: every caption's embedding computed once and kept (with resume).
        let cache = try SafeTensors(path: work + "/whole/caption-embeddings.safetensors")
        #expect(cache.count == 6)
        // A sample grid per checkpoint (after batches 2 and 3), one tile per caption of the first samples.
        let samples = try FileManager.default.contentsOfDirectory(atPath: work + "/whole/samples").sorted()
        #expect(samples == ["000000002.png", "000000003.png"])
        let grid = try PixelImage(contentsOf: work + "/whole/samples/000000003.png")
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        #expect(grid.width == 2 * (side + 2) + 2 && grid.height == grid.width)  // four tiles, 2 x 2, padding 2
        // The output folder is a model folder the pipeline loads and generates with.
        let folder = try ModelFolder(path: work + "/whole")
        #expect(folder.manifest.denoiser.file == "denoiser.safetensors")
        let generated = try PaellaCLI.run(["generate", "stripes", "--model", work + "/whole", "--steps", "2", "--seed", "1",
                                           "-o", "out.png", "--quiet", "--threads", "2"], in: work)
        #expect(generated.status == 0, "\(generated.stderr)")

        // Stopped after 2 batches (a checkpoint), resumed to the end: the same final weights, byte for byte.
        let stopped = try train(work + "/split", ["--stop-at", "2", "--quiet"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        // As if killed after logging batch 2 but before its checkpoint: resuming drops that record and redoes it.
        let handle = try #require(FileHandle(forWritingAtPath: work + "/split/train.jsonl"))
        handle.seekToEndOfFile()
        handle.write(Data("{\"step\":2,\"loss\":-1}\n".utf8))
        try handle.close()
        let resumed = try train(work + "/split", ["--resume", "--quiet"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = FileManager.default.contents(atPath: work + "/whole/denoiser.safetensors")
        let b = FileManager.default.contents(atPath: work + "/split/denoiser.safetensors")
        #expect(a != nil && a == b, "resumed weights differ from the uninterrupted run's")
        let log = try String(contentsOfFile: work + "/split/train.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(log.count == 3 && !log.contains { $0.contains("\"loss\":-1") })

        // Starting again over an existing run without --resume is refused with one sentence.
        let again = try train(work + "/whole", ["--quiet"])
        #expect(again.status != 0 && again.stderr.contains("--resume"), "\(again.stderr)")
    }

    @Test func badArgumentsAreOneSentence() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        try FileManager.default.createDirectory(atPath: work + "/empty", withIntermediateDirectories: true)
        let cases: [(arguments: [String], says: String)] = [
            (["--data", work + "/nowhere", "--output", work + "/o1"], "nowhere"),
            (["--data", work + "/empty", "--output", work + "/o2"], "no .png, .jpg or .jpeg images"),
            (["--data", work + "/data", "--output", work + "/o3", "--resume"], "holds no checkpoint"),
            (["--data", work + "/data", "--output", work + "/o4", "--image-size", "20"], "--image-size"),
            (["--data", work + "/data", "--output", work + "/o5", "--config", "x.json"], "--from-scratch"),
            (["--data", work + "/data", "--output", work + "/o6", "--final-lr", "0"], "--final-lr must be above 0"),
            (["--data", work + "/data", "--output", work + "/o7", "--self-correction", "1.5"], "--self-correction must be between 0 and 1"),
        ]
        for (arguments, says) in cases {
            let result = try PaellaCLI.run(["train", "denoiser", "--model", model, "--threads", "2", "--quiet"] + arguments, in: work)
            #expect(result.status != 0, "\(arguments) succeeded")
            #expect(result.stderr.contains(says), "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"))
        }
    }
}
