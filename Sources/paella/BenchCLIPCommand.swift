import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// `paella bench clip`: the CLIP tokenizer's throughput, and one prompt / one image through OpenCLIP ViT-g-14's
/// towers with random weights (compare with bench/pytorch/clip_bench.py).
struct BenchCLIPCommand: ParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "clip",
        abstract: "Time the CLIP tokenizer and OpenCLIP ViT-g-14's text and vision towers (random weights).",
        discussion: """
            The text tower runs the prompt "a photo of a cat" twice: trimmed (the positions after end-of-text are \
            skipped, as Paella runs it) and over all 77 positions (as PyTorch runs it). The vision tower takes one \
            224x224 image; its random float32 weights take about 4 GB. Compare: \
            /work/venv-torch/bin/python bench/pytorch/clip_bench.py --threads 1 --threads 2
            """)

    @Option(name: .long, help: "Thread count (repeatable; default: the cores this process may use).")
    var threads: [Int] = []

    @Option(name: .long, help: "What to time: tokenizer, text, vision (comma-separated).")
    var parts: String = "tokenizer,text,vision"

    @Option(name: .long, help: "GEMM backend: auto, builtin, openblas, mkl, blis, or a library path.")
    var blas: String?

    @OptionGroup var precisionOption: PrecisionOption

    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 5, warmup = 1  // the default --repeats and --warmup

    func validate() throws {
        guard threads.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads must be at least 1.") }
        let known: Set<Substring> = ["tokenizer", "text", "vision"]
        for part in parts.split(separator: ",") where !known.contains(part) {
            throw ValidationError("Unknown part \"\(part)\"; choose from tokenizer, text, vision.")
        }
    }

    func run() throws {
        try reportingErrors { try runBenchmark() }
    }

    private func runBenchmark() throws {
        let parts = Set(parts.split(separator: ",").map(String.init))
        let threadCounts = threads.isEmpty ? [ThreadPool.coreCount] : threads
        let choice: GEMMBackendChoice = try blas.map(GEMMBackendChoice.init(parsing:)) ?? .fromEnvironment
        try CPUInfo.applyEnvironment()
        if parts.contains("tokenizer") { BenchmarkReport.print(try tokenizerRows(), json: bench.json) }
        let config = CLIPConfig.vitG14
        for tower in ["text", "vision"] where parts.contains(tower) {
            let weights = precisionOption.randomWeights(seed: 1, scale: 0.02, origin: "random ViT-g-14 weights")
            let model = try CLIPModel(weights: weights, config: config, towers: tower == "text" ? .text : .vision)
            var rows: [BenchmarkRow] = []
            for threadCount in threadCounts {
                let compute = try Compute(threads: threadCount, backend: choice)
                if let text = model.text {
                    // CLIP BPE of "a photo of a cat" between start and end of text, zero padded to 77.
                    let ids: [Int32] = [49406, 320, 1125, 539, 320, 2368, 49407]
                    let tokens = Tensor(int32: ids + Array(repeating: 0, count: 77 - ids.count), shape: [1, 77])
                    for trimmed in [true, false] {
                        let ms = bench.time { _ = text(tokens, compute: compute, trimmed: trimmed) }.median
                        rows.append(BenchmarkRow(name: "ViT-g-14 text, 1 prompt", medianMs: ms, gflops: nil,
                                                 backend: compute.gemm.name, threads: threadCount,
                                                 extra: [("positions", trimmed ? "\(ids.count) (trimmed)" : "77")]))
                    }
                }
                if let vision = model.vision {
                    var random = SplitMix64(seed: 2)
                    let image = Tensor((0 ..< 224 * 224 * 3).map { _ in random.normal() }, shape: [1, 224, 224, 3])
                    let ms = bench.time { _ = vision(image, compute: compute) }.median
                    rows.append(BenchmarkRow(name: "ViT-g-14 vision, 1 image", medianMs: ms, gflops: nil,
                                             backend: compute.gemm.name, threads: threadCount,
                                             extra: [("positions", "257")]))
                }
            }
            BenchmarkReport.print(rows, json: bench.json)
        }
    }

    /// Tokenizer throughput on about 1 MB of caption-like text (one thread): a cold pass with an empty word
    /// cache, then a warm pass.
    private func tokenizerRows() throws -> [BenchmarkRow] {
        let words = ["a", "photo", "of", "the", "cat", "dog", "portrait", "highly", "detailed", "painting", "by",
                     "greg", "rutkowski", "trending", "on", "artstation", "4k", "8k", "unreal", "engine", "sunset",
                     "over", "mountains", "café", "naïve", "東京の夜景", "Paella", "Spanish!!", "it's", "don't",
                     "&amp;", "1234", "3.14", "cinematic", "lighting", "octane", "render", "surreal", "vaporwave"]
        var random = SplitMix64(seed: 3)
        var captions: [String] = []
        var bytes = 0
        while bytes < 1 << 20 {
            let caption = (0 ..< 12).map { _ in words[Int(random.next() % UInt64(words.count))] }.joined(separator: " ")
                + " \(random.next() % 100_000)"
            captions.append(caption)
            bytes += caption.utf8.count
        }
        let path = try CLIPTokenizer.locateVocabulary()
        let tokenizer = try CLIPTokenizer(openCLIPVocabulary: path)
        var rows: [BenchmarkRow] = []
        for pass in ["cold cache", "warm cache"] {
            let start = DispatchTime.now().uptimeNanoseconds
            var count = 0
            for caption in captions { count += tokenizer.encode(caption).count }
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            let mbPerSecond = Double(bytes) / 1e6 / (ms / 1000)
            rows.append(BenchmarkRow(name: "CLIP tokenizer, \(bytes / 1000) kB, \(pass)", medianMs: ms, gflops: nil,
                                     backend: "swift", threads: 1,
                                     extra: [("MB/s", String(format: "%.2f", mbPerSecond)), ("tokens", "\(count)")]))
        }
        return rows
    }
}
