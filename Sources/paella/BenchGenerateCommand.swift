import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// `paella bench generate`: one text-to-image generation, part by part (CLIP text, the sampler's guided steps,
/// the VQGAN decode) and whole, with the full v1 models on random weights or a model folder.
struct BenchGenerateCommand: AsyncParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Time a whole text-to-image generation and its parts (full v1 sizes with random weights, or --model).",
        discussion: """
            Without --model: DenoiseUNet(8192) v1, the ruDALL-E f8 VQGAN and OpenCLIP ViT-g-14's text tower with \
            random float32 weights (about 4 GB, made once per run), the real CLIP vocabulary and the v1 defaults \
            (256x256 pixels). With --model: that folder's models and defaults. Rows: CLIP text (tokenizer and text \
            tower), the sampler's steps with the mode's guidance (conditional and unconditional passes as one batch \
            of 2 per image), the VQGAN decode of every image, and the whole Pipeline.generate call, with its peak \
            resident memory (weights included). Compare with PyTorch: bench/pytorch/generate_bench.py, or \
            bench/side_by_side.py generate.
            """)

    @Option(help: "Model folder (default: the full v1 sizes with random weights).")
    var model: String?

    @Option(help: "Image size in pixels, N or WIDTHxHEIGHT (default: 256 for v1, the folder's default with --model).")
    var size: String?

    @Option(help: "Sampling steps.")
    var steps = 8

    @Option(name: [.customShort("n"), .long], help: "Images generated together from the prompt.")
    var count = 1

    @Option(help: "The prompt.")
    var prompt = "a photo of a cat"

    @Option(name: .long, help: "Thread count (repeatable; default: the cores this process may use).")
    var threads: [Int] = []

    @Option(help: ArgumentHelp(
        "GEMM backend: auto, builtin, openblas, mkl, blis, accelerate, or a path to a BLAS shared library."))
    var blas: String?

    @OptionGroup var precisionOption: PrecisionOption

    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 3, warmup = 1  // the default --repeats and --warmup: a v1 generation takes many seconds

    func validate() throws {
        guard threads.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads must be at least 1.") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1.") }
        guard count >= 1 else { throw ValidationError("--count must be at least 1.") }
        _ = try parseSize(size)
    }

    func run() async throws {
        try await reportingErrorsAsync { try await runBenchmark() }
    }

    private func runBenchmark() async throws {
        let choice: GEMMBackendChoice = try blas.map(GEMMBackendChoice.init(parsing:)) ?? .fromEnvironment
        try CPUInfo.applyEnvironment()
        let threadCounts = threads.isEmpty ? [ThreadPool.coreCount] : threads
        let first = try Compute(threads: threadCounts[0], backend: choice)
        let pixels = try parseSize(size)
        let request = GenerateRequest(prompt: prompt, width: pixels?.width, height: pixels?.height,
                                      settings: CommonSettings(seed: 0, count: count, sampling: SamplingOverrides(steps: steps)))
        let clock = ContinuousClock()
        let loadStart = clock.now
        let base: Pipeline
        if let model {
            base = try Pipeline(folder: ModelFolder(path: model), compute: first, precision: precisionOption.precision)
            try base.validate(.generate(request))
        } else {
            // The request is checked on the same models made of free read-only zeros before 4 GB of weights are made.
            try Self.randomV1(shapesOnly: true, compute: first).validate(.generate(request))
            base = try Self.randomV1(shapesOnly: false, compute: first, precision: precisionOption.precision)
        }
        if !bench.json {
            print(CPUInfo.summary)
            print("\(first.gemm.name): \(first.gemm.details)")
            print("\(model.map { "models of \($0) loaded" } ?? "random v1 weights built") in " +
                  String(format: "%.1f s", milliseconds(clock.now - loadStart) / 1e3))
        }
        var rows: [BenchmarkRow] = []
        for threadCount in threadCounts {
            let compute = threadCount == threadCounts[0] ? first : try Compute(threads: threadCount, backend: choice)
            rows += try await measure(request, on: try base.using(compute))
        }
        BenchmarkReport.print(rows, json: bench.json)
    }

    /// The four rows for `request` on `pipeline`: its parts through the calls `Pipeline.generate` makes, then itself.
    private func measure(_ request: GenerateRequest, on pipeline: Pipeline) async throws -> [BenchmarkRow] {
        let models = pipeline.models, compute = models.denoiser.compute
        let (settings, seed) = try request.settings.resolved(pipeline.defaults.generate, limits: pipeline.limits)
        let factor = models.vqgan.config.downsamplingFactor
        let (width, height) = (request.width ?? pipeline.defaults.imageSize, request.height ?? pipeline.defaults.imageSize)

        var embedding = Tensor(zeros: [1, models.textEncoder.config.embedDim])
        let clip = bench.time {
            let context = models.textEncoder.config.text.contextLength
            embedding = models.textEncoder(models.tokenizer.contextTokensReportingCuts([request.prompt], contextLength: context).tokens,
                                           compute: compute)
        }
        let conditioning = compute.concat([Tensor](repeating: embedding, count: count), axis: 0)
        let sampler = Sampler(denoiser: models.denoiser)
        var tokens = Tensor(zeros: [1])
        let sampling = try bench.time {
            var random = TorchCompatibleGenerator(seed: seed)
            tokens = try sampler.sample(conditioning: conditioning, settings: settings, height: height / factor,
                                        width: width / factor, random: &random)
        }
        let decode = try bench.time {
            for i in 0..<count { _ = try models.vqgan.decode(tokens.slice(i..<i + 1)) }  // one at a time, as the pipeline does
        }
        PeakMemory.reset()
        let whole = try await bench.time { _ = try await pipeline.generate(request) }
        let peak = String(format: "%.1f", PeakMemory.megabytes())

        func row(_ name: String, _ ms: Double, perStep: Double? = nil, peak: String = "-") -> BenchmarkRow {
            BenchmarkRow(name: name, medianMs: ms, gflops: nil, backend: compute.gemm.name, threads: compute.pool.threadCount,
                         extra: [("size", "\(width)x\(height)"), ("steps", String(settings.steps)), ("count", String(count)),
                                 ("per_step_ms", perStep.map { String(format: "%.1f", $0) } ?? "-"), ("peak_rss_mb", peak)])
        }
        return [row(Self.rowNames[0], clip.median),
                row(Self.rowNames[1], sampling.median, perStep: sampling.median / Double(settings.steps)),
                row(Self.rowNames[2], decode.median),
                row(Self.rowNames[3], whole.median, peak: peak)]
    }

    /// The rows' names, as bench/pytorch/generate_bench.py prints them.
    static let rowNames = ["generate: CLIP text", "generate: sampler", "generate: VQGAN decode", "generate: whole"]

    /// Paella v1 at full size on random weights (those of `bench denoiser`, `bench vqgan` and `bench clip`), or on
    /// free read-only zeros (`shapesOnly`, to check a request): the v1 denoiser, the ruDALL-E f8 VQGAN, ViT-g-14's
    /// text tower, the real CLIP vocabulary and the v1 defaults.
    static func randomV1(shapesOnly: Bool, compute: Compute, precision: Precision = .fp32) throws -> Pipeline {
        func loader(seed: UInt64, scale: Float) -> WeightLoader {
            if !shapesOnly { return WeightLoader.random(seed: seed, scale: scale, origin: "random v1 weights", precision: precision) }
            return WeightLoader(synthetic: .shapesOnly, origin: "random v1 weights")
        }
        let denoiser = try Denoiser(config: .v1, weights: loader(seed: 1, scale: 0.02), compute: compute)
        let vqgan = try VQGAN(config: .rudalleF8, weights: loader(seed: 0, scale: 0.05), compute: compute)
        guard let text = try CLIPModel(weights: loader(seed: 1, scale: 0.02), config: .vitG14, towers: .text).text else {
            throw PipelineError.incompatibleModels("ViT-g-14 was built without its text tower")
        }
        let tokenizer = try CLIPTokenizer(openCLIPVocabulary: CLIPTokenizer.locateVocabulary())
        let models = try PipelineModels(denoiser: denoiser, vqgan: vqgan, textEncoder: text, tokenizer: tokenizer)
        return Pipeline(models: models, defaults: .v1, modelName: "paella-v1 (random weights)", precision: shapesOnly ? .fp32 : precision)
    }
}

extension Pipeline {
    /// The same models, defaults and limits computing on `compute` (another thread count or GEMM backend).
    func using(_ compute: Compute) throws -> Pipeline {
        guard compute !== models.denoiser.compute else { return self }
        let m = models
        let rebound = try PipelineModels(denoiser: m.denoiser.using(compute), vqgan: m.vqgan.using(compute),
                                          textEncoder: m.textEncoder, visionEncoder: m.visionEncoder, tokenizer: m.tokenizer)
        return Pipeline(models: rebound, defaults: defaults, modelName: modelName, limits: limits, precision: precision)
    }
}
