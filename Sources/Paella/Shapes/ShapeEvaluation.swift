import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

// The evaluation of a model trained on the shapes dataset: generated images scored by the analyser, the
// tokenizer's reconstruction quality and CLIP's retrieval accuracy, all on held-out attribute combinations.

/// What `paella eval shapes` reports.
public struct ShapeEvaluationReport: Codable, Sendable {
    /// Accuracy per attribute (color, shape, position, size, count, background) for each step count.
    public var generation: [String: [String: Double]]
    /// Images generated per step count.
    public var prompts: Int
    /// Mean PSNR (dB) of VQGAN encode -> decode over rendered held-out scenes.
    public var reconstructionPSNR: Double
    /// The share of codebook entries those reconstructions used.
    public var codebookUsage: Double
    /// Top-1 retrieval accuracy among `retrievalCandidates` held-out images and their captions, both ways.
    public var retrievalImageToText: Double
    public var retrievalTextToImage: Double
    public var retrievalCandidates: Int
}

/// Runs the evaluation over a pipeline; deterministic for a seed and thread count.
public struct ShapeEvaluation: Sendable {
    public var prompts: Int
    public var steps: [Int]
    public var seed: UInt64
    /// Images generated per request (a batch; each is scored).
    public var batch: Int
    public var sampling: SamplingOverrides

    public init(prompts: Int = 100, steps: [Int] = [8, 24], seed: UInt64 = 1, batch: Int = 4,
                sampling: SamplingOverrides = SamplingOverrides()) {
        self.prompts = prompts
        self.steps = steps
        self.seed = seed
        self.batch = batch
        self.sampling = sampling
    }

    /// Every part of the report; `progress` gets a line per stage.
    public func run(_ pipeline: Pipeline, progress: @Sendable (String) -> Void = { _ in }) async throws -> ShapeEvaluationReport {
        let cases = ShapeSampler.prompts(count: prompts, seed: seed)
        var generation: [String: [String: Double]] = [:]
        for stepCount in steps {
            let tally = try await generationTally(pipeline, cases: cases, steps: stepCount)
            progress("\(stepCount) steps: \(tally.summary.replacingOccurrences(of: "\n", with: "; "))")
            generation["\(stepCount)"] = Dictionary(uniqueKeysWithValues: ShapeAttribute.allCases.map { ($0.rawValue, tally.accuracy($0)) })
        }
        let side = pipeline.defaults.imageSize
        let heldOut = ShapeSampler(seed: seed &+ 1, split: .heldout)
        let scenes = (0..<max(prompts, 8)).map { heldOut.sample(index: $0) }
        let renderer = ShapeRenderer(side: side)
        let images = scenes.map { renderer.render($0.scene) }
        let (psnr, usage) = try reconstruction(pipeline.models.vqgan, images)
        progress(String(format: "VQGAN: %.2f dB, %.0f%% of the codebook", psnr, usage * 100))
        let candidates = min(32, scenes.count)
        var retrieval = (imageToText: 0.0, textToImage: 0.0)
        if let vision = pipeline.models.visionEncoder {
            retrieval = try self.retrieval(pipeline, vision: vision, images: Array(images.prefix(candidates)),
                                           captions: scenes.prefix(candidates).map(\.caption))
            progress(String(format: "CLIP retrieval among %d: image->text %.1f%%, text->image %.1f%%", candidates,
                            retrieval.imageToText * 100, retrieval.textToImage * 100))
        }
        return ShapeEvaluationReport(generation: generation, prompts: cases.count, reconstructionPSNR: psnr, codebookUsage: usage,
                                     retrievalImageToText: retrieval.imageToText, retrievalTextToImage: retrieval.textToImage,
                                     retrievalCandidates: pipeline.models.visionEncoder == nil ? 0 : candidates)
    }

    /// Generates `batch` images per prompt at `steps` steps and scores each against its scene.
    func generationTally(_ pipeline: Pipeline, cases: [(scene: ShapeScene, prompt: String)], steps: Int) async throws -> ShapeScoreTally {
        var tally = ShapeScoreTally()
        var overrides = sampling
        overrides.steps = steps
        let analyser = ShapeAnalyser()
        for (i, item) in cases.enumerated() {
            let result = try await pipeline.generate(GenerateRequest(
                prompt: item.prompt, settings: CommonSettings(seed: seed &+ UInt64(i), count: batch, sampling: overrides)))
            for image in result.images { tally.add(ShapeScore(analyser.analyse(image), against: item.scene)) }
        }
        return tally
    }

    /// Mean PSNR of encode -> decode and the share of codes used.
    func reconstruction(_ vqgan: VQGAN, _ images: [PixelImage]) throws -> (psnr: Double, usage: Double) {
        var total = 0.0, used = Set<Int>()
        for image in images {
            let tokens = try vqgan.encode([image])
            used.formUnion(tokens.integers())
            let decoded = try vqgan.decodeImages(tokens)[0]
            let squared = zip(image.rgb().pixels, decoded.pixels).reduce(0.0) { sum, p in
                let d = Double(p.0) - Double(p.1)
                return sum + d * d
            }
            let mse = max(squared / Double(image.rgb().pixels.count), 1e-10)
            total += 10 * log10(255 * 255 / mse)
        }
        return (total / Double(max(images.count, 1)), Double(used.count) / Double(vqgan.config.nEmbed))
    }

    /// Top-1 retrieval among the given images and captions by cosine similarity, both ways.
    func retrieval(_ pipeline: Pipeline, vision: CLIPVisionEncoder, images: [PixelImage],
                   captions: [String]) throws -> (imageToText: Double, textToImage: Double) {
        let compute = pipeline.models.denoiser.compute
        let imageEmbeddings = normalizedRows(vision(try CLIPImagePreprocessing.tensor(images, size: vision.config.vision.imageSize),
                                                    compute: compute))
        let tokens = pipeline.models.tokenizer.contextTokens(captions, contextLength: pipeline.models.textEncoder.config.text.contextLength)
        let textEmbeddings = normalizedRows(pipeline.models.textEncoder(tokens, compute: compute))
        let n = images.count
        var similarity = [[Float]](repeating: [Float](repeating: 0, count: n), count: n)
        for i in 0..<n { for j in 0..<n { similarity[i][j] = zip(imageEmbeddings[i], textEmbeddings[j]).reduce(0) { $0 + $1.0 * $1.1 } } }
        func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] } ?? 0 }
        let imageToText = (0..<n).filter { argmax(similarity[$0]) == $0 }.count
        let textToImage = (0..<n).filter { j in argmax((0..<n).map { similarity[$0][j] }) == j }.count
        return (Double(imageToText) / Double(n), Double(textToImage) / Double(n))
    }

    private func normalizedRows(_ x: Tensor) -> [[Float]] {
        let (rows, width) = (x.shape[0], x.shape[1]), v = x.floats
        return (0..<rows).map { r in
            let row = Array(v[r * width..<(r + 1) * width])
            let norm = max(row.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            return row.map { $0 / norm }
        }
    }
}
