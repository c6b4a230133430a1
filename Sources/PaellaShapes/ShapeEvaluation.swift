import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

// The evaluation of a model trained on the shapes dataset: generated images scored by the analyser, the
// tokenizer's reconstruction quality and CLIP's retrieval accuracy, all on held-out attribute combinations.

/// The parts of the evaluation, one per model component, each with its gate.
public enum ShapeEvaluationPart: String, Sendable, Codable, CaseIterable {
    /// The VQGAN: held-out scenes encoded and decoded, the reconstructions read by the analyser.
    case reconstruction
    /// CLIP: retrieval among held-out pairs, and captions that differ in one attribute told apart.
    case clip
    /// Denoiser and sampler: images generated for held-out prompts, read by the analyser.
    case generation
}

/// The bar each part must clear (the targets of the bundled-model issue), as fractions and dB.
public enum ShapeEvaluationTargets {
    /// Analyser accuracy on VQGAN reconstructions.
    public static let reconstruction: [ShapeAttribute: Double] = [.color: 0.98, .shape: 0.95, .position: 0.99, .count: 0.98]
    public static let reconstructionPSNR = 30.0
    public static let codebookUsage = 0.8
    /// Top-1 retrieval, both ways.
    public static let retrieval = 0.95
    /// An image closer to its own caption than to one with a colour, shape or position changed.
    public static let clipAttributes = 0.9
    /// Analyser accuracy on images generated at the fewest steps evaluated.
    public static let generation: [ShapeAttribute: Double] = [.color: 0.90, .position: 0.85, .shape: 0.75, .count: 0.90, .background: 0.98]
    /// Largest drop from the most steps evaluated to the fewest, per attribute.
    public static let stepGap = 0.05
}

/// What `paella eval shapes` reports. Accuracies are fractions keyed by attribute name.
public struct ShapeEvaluationReport: Codable, Sendable {
    /// Accuracy per attribute (color, shape, position, size, count, background) for each step count.
    public var generation: [String: [String: Double]]
    /// Images generated per step count.
    public var prompts: Int
    /// Whether those prompts were held-out combinations (the gate's) or seen ones (no gate).
    public var promptSplit: ShapeSplit
    /// Held-out scenes encoded and decoded by the VQGAN.
    public var reconstructionScenes: Int
    /// Mean PSNR (dB) of VQGAN encode -> decode over those scenes.
    public var reconstructionPSNR: Double
    /// The share of codebook entries those reconstructions used.
    public var codebookUsage: Double
    /// Analyser accuracy per attribute on the reconstructions.
    public var reconstruction: [String: Double]
    /// Top-1 retrieval accuracy among `retrievalCandidates` held-out images and their captions, both ways.
    public var retrievalImageToText: Double
    public var retrievalTextToImage: Double
    public var retrievalCandidates: Int
    /// Per attribute (color, shape, position): how often an image is closer to its caption than to the same
    /// caption with that one attribute of an object changed.
    public var clipAttributes: [String: Double]
    /// Per attribute (color, shape, position): the mean cosine similarity between the text embeddings of a
    /// caption and of the same caption with that one attribute changed. Near 1, the text tower hardly tells
    /// that attribute apart, and a denoiser conditioned on it cannot draw it. A diagnostic, without a gate.
    public var clipTextSimilarity: [String: Double]
    /// The mean cosine between the text embeddings of two captions of one scene worded differently (templates and
    /// synonyms drawn at random): the spread that wording alone causes, against which `clipTextSimilarity` reads.
    /// A changed attribute that moves the embedding less than rewording does is drowned by it. A diagnostic.
    public var clipRewordedSimilarity: Double
    /// Per attribute (color, shape, position, size): how often the text embedding of a randomly worded caption of a
    /// held-out one-object scene is nearest to the mean embedding of its own attribute value (means taken over
    /// the other half of those scenes): whether a denoiser could read the attribute from the embedding whatever
    /// the wording. A diagnostic, without a gate.
    public var clipTextProbe: [String: Double]
    /// Whether each part evaluated met its targets (`ShapeEvaluationTargets`), keyed by part name.
    public var gates: [String: Bool]
}

/// Runs the evaluation over a pipeline; deterministic for a seed and thread count.
public struct ShapeEvaluation: Sendable {
    public var prompts: Int
    public var steps: [Int]
    public var seed: UInt64
    /// Images generated per request (a batch; each is scored).
    public var batch: Int
    public var sampling: SamplingOverrides
    /// Held-out scenes (one or two objects) for the reconstruction check and CLIP's one-attribute check; the
    /// first 32 also serve CLIP's retrieval.
    public var reconstructionScenes: Int
    public var parts: Set<ShapeEvaluationPart>
    /// When set, the images behind the numbers are written there: `generated-<steps>.png` (one row per prompt,
    /// `batch` columns, prompts in `prompts.txt`) and `reconstruction.png` (held-out scenes above their VQGAN
    /// reconstructions), to see what the analyser scored.
    public var imagesFolder: String?
    /// Where the generation prompts come from: held-out combinations (the gate's), or combinations the training
    /// set has (a diagnostic: a model that draws seen prompts well and held-out ones badly fails to compose
    /// attributes, rather than to draw). The reconstruction and CLIP parts always use held-out scenes.
    public var promptSplit: ShapeSplit

    public init(prompts: Int = 100, steps: [Int] = [8, 24], seed: UInt64 = 1, batch: Int = 4,
                sampling: SamplingOverrides = SamplingOverrides(), reconstructionScenes: Int = 256,
                parts: Set<ShapeEvaluationPart> = Set(ShapeEvaluationPart.allCases), imagesFolder: String? = nil,
                promptSplit: ShapeSplit = .heldout) {
        self.promptSplit = promptSplit
        self.prompts = prompts
        self.steps = steps
        self.seed = seed
        self.batch = batch
        self.sampling = sampling
        self.reconstructionScenes = reconstructionScenes
        self.parts = parts
        self.imagesFolder = imagesFolder
    }

    /// Every part asked for; `progress` gets a line per stage.
    public func run(_ pipeline: Pipeline, progress: @Sendable (String) -> Void = { _ in }) async throws -> ShapeEvaluationReport {
        let cases = ShapeSampler.prompts(count: prompts, seed: seed, split: promptSplit)
        var report = ShapeEvaluationReport(generation: [:], prompts: 0, promptSplit: promptSplit, reconstructionScenes: 0, reconstructionPSNR: 0,
                                           codebookUsage: 0, reconstruction: [:], retrievalImageToText: 0,
                                           retrievalTextToImage: 0, retrievalCandidates: 0, clipAttributes: [:],
                                           clipTextSimilarity: [:], clipRewordedSimilarity: 0, clipTextProbe: [:], gates: [:])
        if let imagesFolder {
            try FileManager.default.createDirectory(atPath: imagesFolder, withIntermediateDirectories: true)
        }
        if parts.contains(.generation) {
            if let imagesFolder {
                try AtomicFile.write(to: imagesFolder + "/prompts.txt") { try $0.write(Array(cases.map { $0.prompt + "\n" }.joined().utf8)) }
            }
            for stepCount in steps {
                let tally = try await generationTally(pipeline, cases: cases, steps: stepCount)
                progress("\(stepCount) steps: \(tally.summary.replacingOccurrences(of: "\n", with: "; "))")
                report.generation["\(stepCount)"] = tally.accuracies
            }
            report.prompts = cases.count
            if promptSplit == .heldout {
                report.gates[ShapeEvaluationPart.generation.rawValue] = Self.generationPasses(report.generation)
            }
        }
        let side = pipeline.defaults.imageSize
        let heldOut = ShapeSampler(seed: seed &+ 1, split: .heldout)
        let scenes = (0..<max(reconstructionScenes, 1)).map { heldOut.sample(index: $0) }
        let renderer = ShapeRenderer(side: side)
        let images = scenes.map { renderer.render($0.scene) }
        if parts.contains(.reconstruction) {
            let (psnr, usage, tally) = try reconstruction(pipeline.models.vqgan, images, scenes: scenes.map(\.scene))
            progress(String(format: "VQGAN: %.2f dB, %.0f%% of the codebook; ", psnr, usage * 100)
                     + tally.summary.replacingOccurrences(of: "\n", with: "; "))
            report.reconstructionScenes = images.count
            (report.reconstructionPSNR, report.codebookUsage, report.reconstruction) = (psnr, usage, tally.accuracies)
            report.gates[ShapeEvaluationPart.reconstruction.rawValue] = psnr >= ShapeEvaluationTargets.reconstructionPSNR
                && usage >= ShapeEvaluationTargets.codebookUsage && Self.meets(tally.accuracies, ShapeEvaluationTargets.reconstruction)
        }
        if parts.contains(.clip), let vision = pipeline.models.visionEncoder {
            let candidates = min(32, scenes.count)
            let imageEmbeddings = try self.imageEmbeddings(pipeline, vision: vision, images)
            let retrieval = try self.retrieval(pipeline, imageEmbeddings: Array(imageEmbeddings.prefix(candidates)),
                                               captions: scenes.prefix(candidates).map(\.caption))
            progress(String(format: "CLIP retrieval among %d: image->text %.1f%%, text->image %.1f%%", candidates,
                            retrieval.imageToText * 100, retrieval.textToImage * 100))
            let (attributes, textSimilarity) = try attributeDiscrimination(pipeline, imageEmbeddings: imageEmbeddings,
                                                                          scenes: scenes.map(\.scene))
            progress("CLIP one-attribute captions told apart: " + attributes.sorted { $0.key < $1.key }
                .map { $0.key + String(format: " %.1f%%", $0.value * 100) }.joined(separator: ", ")
                + "; text cosine to the changed caption: " + textSimilarity.sorted { $0.key < $1.key }
                .map { $0.key + String(format: " %.2f", $0.value) }.joined(separator: ", "))
            report.retrievalCandidates = candidates
            (report.retrievalImageToText, report.retrievalTextToImage) = (retrieval.imageToText, retrieval.textToImage)
            report.clipAttributes = attributes
            report.clipTextSimilarity = textSimilarity
            (report.clipRewordedSimilarity, report.clipTextProbe) = textProbe(pipeline, scenes: scenes.map(\.scene))
            progress(String(format: "CLIP text cosine between rewordings %.2f; attribute read from reworded captions: ", report.clipRewordedSimilarity)
                     + report.clipTextProbe.sorted { $0.key < $1.key }.map { $0.key + String(format: " %.1f%%", $0.value * 100) }.joined(separator: ", "))
            report.gates[ShapeEvaluationPart.clip.rawValue] = min(retrieval.imageToText, retrieval.textToImage) >= ShapeEvaluationTargets.retrieval
                && attributes.values.allSatisfy { $0 >= ShapeEvaluationTargets.clipAttributes }
        }
        return report
    }

    /// Whether every targeted attribute reaches its target.
    static func meets(_ accuracies: [String: Double], _ targets: [ShapeAttribute: Double]) -> Bool {
        targets.allSatisfy { (accuracies[$0.key.rawValue] ?? 0) >= $0.value }
    }

    /// The fewest steps meet the generation targets and lose at most `stepGap` against the most steps.
    static func generationPasses(_ generation: [String: [String: Double]]) -> Bool {
        let counts = generation.keys.compactMap(Int.init)
        guard let fewest = counts.min(), let most = counts.max(), let low = generation["\(fewest)"],
              let high = generation["\(most)"] else { return false }
        return meets(low, ShapeEvaluationTargets.generation)
            && ShapeEvaluationTargets.generation.keys.allSatisfy { (high[$0.rawValue] ?? 0) - (low[$0.rawValue] ?? 0) <= ShapeEvaluationTargets.stepGap }
    }

    /// Generates `batch` images per prompt at `steps` steps and scores each against its scene.
    func generationTally(_ pipeline: Pipeline, cases: [(scene: ShapeScene, prompt: String)], steps: Int) async throws -> ShapeScoreTally {
        var tally = ShapeScoreTally()
        var generated: [PixelImage] = []
        var overrides = sampling
        overrides.steps = steps
        let analyser = ShapeAnalyser()
        for (i, item) in cases.enumerated() {
            let result = try await pipeline.generate(GenerateRequest(
                prompt: item.prompt, settings: CommonSettings(seed: seed &+ UInt64(i), count: batch, sampling: overrides)))
            for image in result.images { tally.add(ShapeScore(analyser.analyse(image), against: item.scene)) }
            generated += result.images
        }
        if let imagesFolder {
            try PixelImage.grid(generated, columns: batch, padding: 2, background: 128).write(to: imagesFolder + "/generated-\(steps).png")
        }
        return tally
    }

    /// Mean PSNR of encode -> decode, the share of codes used, and the analyser's reading of the reconstructions.
    func reconstruction(_ vqgan: VQGAN, _ images: [PixelImage],
                        scenes: [ShapeScene]) throws -> (psnr: Double, usage: Double, tally: ShapeScoreTally) {
        var total = 0.0, used = Set<Int>(), reconstructions: [PixelImage] = [], tally = ShapeScoreTally()
        let analyser = ShapeAnalyser()
        for (image, scene) in zip(images, scenes) {
            let tokens = try vqgan.encode([image])
            used.formUnion(tokens.integers())
            let decoded = try vqgan.decodeImages(tokens)[0]
            reconstructions.append(decoded)
            tally.add(ShapeScore(analyser.analyse(decoded), against: scene))
            let squared = zip(image.rgb().pixels, decoded.pixels).reduce(0.0) { sum, p in
                let d = Double(p.0) - Double(p.1)
                return sum + d * d
            }
            let mse = max(squared / Double(image.rgb().pixels.count), 1e-10)
            total += 10 * log10(255 * 255 / mse)
        }
        if let imagesFolder, !images.isEmpty {
            let shown = min(images.count, 16)
            try PixelImage.grid(images.prefix(shown).map { $0.rgb() } + reconstructions.prefix(shown), columns: shown,
                                padding: 2, background: 128).write(to: imagesFolder + "/reconstruction.png")
        }
        return (total / Double(max(images.count, 1)), Double(used.count) / Double(vqgan.config.nEmbed), tally)
    }

    /// For each scene and each of colour, shape and position: the first object's attribute changed to the next
    /// value of its kind (another cell for position), both scenes captioned canonically; counts how often the
    /// image's embedding (`imageEmbeddings`, one per scene) is closer to its own caption; also the mean cosine
    /// between the two captions' text embeddings.
    func attributeDiscrimination(_ pipeline: Pipeline, imageEmbeddings: [[Float]],
                                 scenes: [ShapeScene]) throws -> (toldApart: [String: Double], textSimilarity: [String: Double]) {
        func next<T: CaseIterable & Equatable>(_ value: T) -> T {
            let all = Array(T.allCases)
            return all[((all.firstIndex(of: value) ?? 0) + 1) % all.count]
        }
        var (result, similarity): ([String: Double], [String: Double]) = ([:], [:])
        for attribute in ShapeTwins.attributes {
            var captions: [String] = []
            for scene in scenes {
                var altered = scene
                var object = altered.objects[0]
                switch attribute {
                case .color:
                    repeat { object.color = next(object.color) } while scene.objects.dropFirst().contains { $0.color == object.color }
                case .shape: object.shape = next(object.shape)
                default:
                    repeat { object.position = next(object.position) } while scene.objects.dropFirst().contains { $0.position == object.position }
                }
                altered.objects[0] = object
                captions += [ShapeCaptions.canonical(scene), ShapeCaptions.canonical(altered)]
            }
            let text = textEmbeddings(pipeline, captions)
            let right = scenes.indices.filter {
                dot(imageEmbeddings[$0], text[2 * $0]) > dot(imageEmbeddings[$0], text[2 * $0 + 1])
            }.count
            result[attribute.rawValue] = Double(right) / Double(max(scenes.count, 1))
            let cosines = scenes.indices.map { Double(dot(text[2 * $0], text[2 * $0 + 1])) }
            similarity[attribute.rawValue] = cosines.reduce(0, +) / Double(max(cosines.count, 1))
        }
        return (result, similarity)
    }

    /// Two randomly worded captions of each one-object scene: their mean cosine, and nearest-class-mean accuracy
    /// per attribute (class means from the first caption of the even scenes, tested on the second caption of the
    /// odd ones), see `clipRewordedSimilarity` and `clipTextProbe`.
    func textProbe(_ pipeline: Pipeline, scenes: [ShapeScene]) -> (reworded: Double, probe: [String: Double]) {
        let single = scenes.filter { $0.objects.count == 1 }
        guard single.count >= 4 else { return (0, [:]) }
        var random = SplitMix64(seed: seed &+ 7)
        let captions = single.flatMap { scene in (0..<2).map { _ in ShapeCaptions.caption(scene, random: &random) } }
        let text = textEmbeddings(pipeline, captions)
        let reworded = single.indices.map { Double(dot(text[2 * $0], text[2 * $0 + 1])) }.reduce(0, +) / Double(single.count)
        let attributes: [(String, (ShapeObject) -> String)] = [("color", { $0.color.rawValue }), ("shape", { $0.shape.rawValue }),
                                                               ("position", { $0.position.rawValue }), ("size", { $0.size.rawValue })]
        var probe: [String: Double] = [:]
        for (name, value) in attributes {
            var means: [String: [Float]] = [:]
            for i in stride(from: 0, to: single.count, by: 2) {
                let key = value(single[i].objects[0])
                means[key] = zip(means[key] ?? [Float](repeating: 0, count: text[0].count), text[2 * i]).map { $0 + $1 }
            }
            let tested = Array(stride(from: 1, to: single.count, by: 2))
            let right = tested.filter { i in
                let nearest = means.max { dot($0.value, text[2 * i + 1]) / norm($0.value) < dot($1.value, text[2 * i + 1]) / norm($1.value) }
                return nearest?.key == value(single[i].objects[0])
            }.count
            probe[name] = Double(right) / Double(max(tested.count, 1))
        }
        return (reworded, probe)
    }

    private func norm(_ v: [Float]) -> Float { max(dot(v, v).squareRoot(), 1e-12) }

    /// Top-1 retrieval among images (their embeddings) and their captions by cosine similarity, both ways.
    func retrieval(_ pipeline: Pipeline, imageEmbeddings: [[Float]], captions: [String]) throws -> (imageToText: Double, textToImage: Double) {
        let textEmbeddings = textEmbeddings(pipeline, captions)
        let n = imageEmbeddings.count
        let similarity = (0..<n).map { i in (0..<n).map { j in dot(imageEmbeddings[i], textEmbeddings[j]) } }
        func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] } ?? 0 }
        let imageToText = (0..<n).filter { argmax(similarity[$0]) == $0 }.count
        let textToImage = (0..<n).filter { j in argmax((0..<n).map { similarity[$0][j] }) == j }.count
        return (Double(imageToText) / Double(n), Double(textToImage) / Double(n))
    }

    /// CLIP image embeddings, L2-normalised, one row per image.
    private func imageEmbeddings(_ pipeline: Pipeline, vision: CLIPVisionEncoder, _ images: [PixelImage]) throws -> [[Float]] {
        normalizedRows(vision(try CLIPImagePreprocessing.tensor(images, size: vision.config.vision.imageSize),
                              compute: pipeline.models.denoiser.compute))
    }

    /// CLIP text embeddings, L2-normalised, one row per caption.
    private func textEmbeddings(_ pipeline: Pipeline, _ captions: [String]) -> [[Float]] {
        let tokens = pipeline.models.tokenizer.contextTokens(captions, contextLength: pipeline.models.textEncoder.config.text.contextLength)
        return normalizedRows(pipeline.models.textEncoder(tokens, compute: pipeline.models.denoiser.compute))
    }

    private func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    private func normalizedRows(_ x: Tensor) -> [[Float]] {
        let (rows, width) = (x.shape[0], x.shape[1]), v = x.floats
        return (0..<rows).map { r in
            let row = Array(v[r * width..<(r + 1) * width])
            let norm = max(row.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            return row.map { $0 / norm }
        }
    }
}
