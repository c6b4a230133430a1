import ArgumentParser
import Foundation
import Paella
import PaellaModels

/// `paella eval`: evaluations of trained models.
struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate a model.", subcommands: [EvalShapesCommand.self])
}

/// `paella eval shapes`: how well a model trained on the shapes dataset follows held-out prompts.
struct EvalShapesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shapes", abstract: "Score a shapes model on attribute combinations it never saw in training.",
        discussion: """
            Generates images for held-out prompts (every purple triangle, green at the bottom right, ...) at each \
            --steps value, reads them back with the shape analyser and reports accuracy per attribute; then the \
            VQGAN's reconstruction PSNR and codebook use, and CLIP's top-1 retrieval among 32 held-out images.
            """)

    @Option(help: "Held-out prompts per step count.") var prompts = 50
    @Option(help: "Images per prompt.") var batch = 2
    @Option(parsing: .upToNextOption, help: "Step counts to compare.") var steps: [Int] = [8, 24]
    @Option(help: "Seed of the prompts and of the sampler.") var seed: UInt64 = 1
    @Option(name: [.customLong("cfg"), .customLong("guidance")], help: "Guidance scale (default: the model's).") var cfg: Float?
    @Option(help: "Temperature, or first:last (default: the model's).") var temperature: String?
    @Option(help: "Typical mass (default: the model's).") var typicalMass: Float?
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var model: ModelOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if prompts < 1 || batch < 1 || steps.isEmpty || steps.contains(where: { $0 < 1 }) {
            throw ValidationError("--prompts, --batch and every --steps value must be at least 1.")
        }
    }

    func run() async throws {
        var overrides = SamplingOverrides(guidanceScale: cfg, typicalMass: typicalMass)
        if let temperature {
            var sampling = SamplingCLIOptions()
            sampling.temperature = temperature
            overrides.temperatureRange = try sampling.temperatures()
        }
        let evaluation = ShapeEvaluation(prompts: prompts, steps: steps, seed: seed, batch: batch, sampling: overrides)
        let quiet = json
        let report = try await reportingErrorsAsync {
            let folder = try ModelFolder(path: model.folderPath())
            let pipeline = try Pipeline(folder: folder, compute: try compute.makeCompute(), loadVision: folder.hasVisionTower)
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
        print("held-out prompts: \(report.prompts) x \(batch) images per step count")
        print("steps  " + attributes.map { $0.padding(toLength: 11, withPad: " ", startingAt: 0) }.joined())
        for s in steps {
            let row = report.generation["\(s)"] ?? [:]
            print(String(s).padding(toLength: 7, withPad: " ", startingAt: 0)
                  + attributes.map { String(format: "%5.1f%%     ", (row[$0] ?? 0) * 100) }.joined())
        }
        print(String(format: "VQGAN reconstruction: %.2f dB PSNR, %.0f%% of the codebook used", report.reconstructionPSNR, report.codebookUsage * 100))
        if report.retrievalCandidates > 0 {
            print(String(format: "CLIP retrieval among %d held-out pairs: image->text %.1f%%, text->image %.1f%%",
                         report.retrievalCandidates, report.retrievalImageToText * 100, report.retrievalTextToImage * 100))
        }
    }
}
