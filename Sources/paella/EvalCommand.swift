import ArgumentParser
import Foundation
import Paella
import PaellaShapes
import PaellaModels

/// `paella eval`: evaluations of trained models.
struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate a model.", subcommands: [EvalShapesCommand.self])
}

extension ShapeSplit: ExpressibleByArgument {}

/// `paella eval shapes`: how well a model trained on the shapes dataset follows held-out prompts.
struct EvalShapesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shapes", abstract: "Score a shapes model on attribute combinations it never saw in training.",
        discussion: """
            Three parts, each with its gate (the targets of the bundled model): generation: images for held-out \
            prompts (every purple triangle, green at the bottom right, ...) at each --steps value, read back with \
            the shape analyser, accuracy per attribute; reconstruction: held-out scenes through the VQGAN, PSNR, \
            codebook use and the analyser's accuracy on the reconstructions; clip: top-1 retrieval among 32 \
            held-out images, and how often an image is closer to its caption than to one with an attribute changed.
            """)

    @Option(help: "Held-out prompts per step count.") var prompts = 50
    @Option(help: ArgumentHelp("Generation prompts: held-out combinations (heldout, gated) or seen ones (train, a "
                               + "diagnostic: drawing apart from composing).", valueName: "split")) var split: ShapeSplit = .heldout
    @Option(help: "Images per prompt.") var batch = 2
    @Option(parsing: .upToNextOption, help: "Step counts to compare.") var steps: [Int] = [8, 24]
    @Option(help: "Seed of the prompts and of the sampler.") var seed: UInt64 = 1
    @Option(name: [.customLong("cfg"), .customLong("guidance")], help: "Guidance scale (default: the model's).") var cfg: Float?
    @Option(help: "Temperature, or first:last (default: the model's).") var temperature: String?
    @Option(help: "Typical mass; turns typical filtering on (default: the model's).") var typicalMass: Float?
    @Flag(help: "No typical filtering.") var noTypical = false
    @Option(help: "What renoising draws from: start, prev or rand (default: the model's).") var renoise: RenoiseMode?
    @Option(help: "Held-out scenes for the reconstruction check (at least 32).") var scenes = 256
    @Option(help: "Parts to run, comma-separated: generation, reconstruction, clip (default: all).") var parts: String?
    @Option(help: ArgumentHelp("Also write the generated images and the VQGAN reconstructions into this folder.",
                               valueName: "folder")) var saveImages: String?
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var model: ModelOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if prompts < 1 || batch < 1 || steps.isEmpty || steps.contains(where: { $0 < 1 }) {
            throw ValidationError("--prompts, --batch and every --steps value must be at least 1.")
        }
        if scenes < 32 || scenes > 100_000 { throw ValidationError("--scenes must be between 32 and 100000, got \(scenes).") }
        _ = try chosenParts()
    }

    func chosenParts() throws -> Set<ShapeEvaluationPart> {
        guard let parts else { return Set(ShapeEvaluationPart.allCases) }
        return Set(try parts.split(separator: ",").map { name in
            guard let part = ShapeEvaluationPart(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--parts takes generation, reconstruction and clip, comma-separated; got \(name).")
            }
            return part
        })
    }

    func run() async throws {
        var overrides = SamplingOverrides(guidanceScale: cfg, typicalFiltering: noTypical ? false : typicalMass.map { _ in true },
                                          typicalMass: typicalMass, renoiseMode: renoise)
        if let temperature {
            var sampling = SamplingCLIOptions()
            sampling.temperature = temperature
            overrides.temperatureRange = try sampling.temperatures()
        }
        let evaluation = ShapeEvaluation(prompts: prompts, steps: steps, seed: seed, batch: batch, sampling: overrides,
                                        reconstructionScenes: scenes, parts: try chosenParts(), imagesFolder: saveImages,
                                        promptSplit: split)
        let quiet = json
        let report = try await reportingErrorsAsync {
            let folder = try ModelFolder(path: model.folderPath())
            let pipeline = try Pipeline(folder: folder, compute: try compute.makeCompute(), loadVision: folder.hasVisionTower,
                                        precision: model.precision)
            return try await evaluation.run(pipeline) { line in
                if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let attributes = ["color", "shape", "position", "size", "count", "background"]
        func row(_ accuracies: [String: Double]) -> String {
            attributes.map { name in accuracies[name].map { String(format: "%5.1f%%     ", $0 * 100) } ?? "    -      " }.joined()
        }
        func verdict(_ part: ShapeEvaluationPart) -> String {
            report.gates[part.rawValue].map { $0 ? "  [gate: pass]" : "  [gate: FAIL]" } ?? ""
        }
        print("       " + attributes.map { $0.padding(toLength: 11, withPad: " ", startingAt: 0) }.joined())
        if !report.generation.isEmpty {
            print("generation, \(report.prompts) \(split == .heldout ? "held-out" : "seen (training-split)") prompts x \(batch) images"
                  + verdict(.generation))
            for s in steps { print(String(s).padding(toLength: 7, withPad: " ", startingAt: 0) + row(report.generation["\(s)"] ?? [:])) }
        }
        if report.reconstructionScenes > 0 {
            print(String(format: "reconstruction of %d held-out scenes: %.2f dB PSNR, %.0f%% of the codebook used",
                         report.reconstructionScenes, report.reconstructionPSNR, report.codebookUsage * 100) + verdict(.reconstruction))
            print("VQGAN  " + row(report.reconstruction))
        }
        if report.retrievalCandidates > 0 {
            print(String(format: "CLIP retrieval among %d held-out pairs: image->text %.1f%%, text->image %.1f%%",
                         report.retrievalCandidates, report.retrievalImageToText * 100, report.retrievalTextToImage * 100) + verdict(.clip))
            print("CLIP one-attribute captions told apart: " + ["color", "shape", "position"].map {
                $0 + String(format: " %.1f%%", (report.clipAttributes[$0] ?? 0) * 100) }.joined(separator: ", "))
            print("CLIP text cosine to the caption with that attribute changed (1: not told apart): " + ["color", "shape", "position"].map {
                $0 + String(format: " %.2f", report.clipTextSimilarity[$0] ?? 0) }.joined(separator: ", ")
                + String(format: "; between two wordings of one caption %.2f", report.clipRewordedSimilarity))
            print("CLIP text embedding names the attribute of a reworded one-object caption (nearest class mean): " + ["color", "shape", "position", "size"].map {
                $0 + String(format: " %.1f%%", (report.clipTextProbe[$0] ?? 0) * 100) }.joined(separator: ", "))
        }
    }
}
