import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO

extension RenoiseMode: ExpressibleByArgument {}
extension InterpolationMethod: ExpressibleByArgument {}
extension ComposeRequest.Axis: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--precision`: the arithmetic of the weight matrices, for the generation commands and the benchmarks.
struct PrecisionOption: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Arithmetic of the weight matrices: fp32 (default), or bf16.",
        discussion: "bf16 rounds the weights to bfloat16 and packs them once at load, rounds activations as they are multiplied and " +
            "sums in float32: half the weight memory, and about twice the multiply speed on CPUs with AVX512-BF16. Results differ " +
            "slightly from fp32's (bench/README.md gives the measured agreement)."))
    var precision: Precision = .fp32

    /// Random benchmark weights (`WeightLoader(synthetic: .random)`) that load at this precision.
    func randomWeights(seed: UInt64, scale: Float, origin: String = "synthetic weights") -> WeightLoader {
        WeightLoader.random(seed: seed, scale: scale, origin: origin, precision: precision)
    }
}

extension WeightLoader {
    /// Seeded random weights that load at `precision`.
    static func random(seed: UInt64, scale: Float, origin: String, precision: Precision) -> WeightLoader {
        let weights = WeightLoader(synthetic: .random(seed: seed, scale: scale), origin: origin)
        weights.precision = precision
        return weights
    }
}

/// Which model folder to run.
struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Model folder (see docs/model-folder.md).",
        discussion: "Default: $PAELLA_MODEL, else the first of \(ModelOptions.defaultNames.joined(separator: ", ")) found in models/ " +
            "under the working directory, next to the executable, or in this source checkout."))
    var model: String?

    @Option(help: ArgumentHelp(
        "Working memory one request may use, in GB (default: 2).",
        discussion: "Larger images are refused with an estimate of what they need; more images than fit together are made in batches."))
    var maxMemory: Double?

    @OptionGroup var precisionOption: PrecisionOption
    var precision: Precision { precisionOption.precision }

    func validate() throws { _ = try limits() }

    /// The request limits: the library's, with --max-memory.
    func limits() throws -> RequestLimits {
        var limits = RequestLimits.default
        guard let maxMemory else { return limits }
        guard maxMemory.isFinite, maxMemory > 0, maxMemory < 1e9 else {
            throw ValidationError("--max-memory \(maxMemory) is out of range; give more than 0 and less than 1e9 GB.")
        }
        limits.memoryBytes = Int(maxMemory * 1e9)
        return limits
    }

    /// The model folders looked for when none is named, best first: the bundled small model, then the released v1.
    static let defaultNames = ["paella-small", "paella-v1"]

    /// Where `models/` is looked for: the working directory, the executable's folder and the one above it (an
    /// installed layout), and the root of this source checkout (development builds).
    static var modelRoots: [String] {
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        // This file is Sources/paella/GenerationOptions.swift; the checkout's models/ is at the root.
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return [".", executable.path, executable.deletingLastPathComponent().path, checkout.path]
    }

    func folderPath() throws -> String {
        if let model { return model }
        if let env = ProcessInfo.processInfo.environment["PAELLA_MODEL"], !env.isEmpty { return env }
        let candidates = Self.defaultNames.flatMap { name in Self.modelRoots.map { ($0 as NSString).appendingPathComponent("models/" + name) } }
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/model.json") }) { return found }
        throw ValidationError("No model folder given and none of \(Self.defaultNames.joined(separator: ", ")) found in models/; " +
                              "pass --model DIR, or run `paella download v1` to fetch and convert the released weights.")
    }

    /// Loads the pipeline (the CLIP vision tower only when `vision`).
    func pipeline(compute: Compute, vision: Bool = false) throws -> Pipeline {
        try Pipeline(folder: ModelFolder(path: folderPath()), compute: compute, loadVision: vision, limits: limits(), precision: precision)
    }
}

/// The seed, the batch and changes to the mode's sampling defaults.
struct SamplingCLIOptions: ParsableArguments {
    @Option(help: "Seed of the sampler (default: a random one, printed and recorded in the image).")
    var seed: UInt64?

    @Option(name: [.customShort("n"), .long], help: "Images to generate together.")
    var count = 1

    @Option(help: "Sampling steps (default: the mode's, e.g. 12 for generate; 8 is the paper's fast setting).")
    var steps: Int?

    @Option(name: [.customLong("cfg"), .customLong("guidance")], help: "Classifier-free guidance scale; negative turns guidance off.")
    var cfg: Float?

    @Option(help: "Temperature, or the first and last step's temperatures as a:b.")
    var temperature: String?

    @Option(help: "Probability mass kept by typical filtering (turns it on where the model's default has it off).")
    var typicalMass: Float?

    @Flag(help: "Sample from the full distribution (no typical filtering).")
    var noTypical = false

    @Option(help: "What renoising draws from: start, prev or rand.")
    var renoise: RenoiseMode?

    @Option(help: "Renoise after the steps below this one (default: all but the last).")
    var renoiseSteps: Int?

    func validate() throws { _ = try temperatures() }

    func temperatures() throws -> [Float]? {
        guard let temperature else { return nil }
        let parts = temperature.split(separator: ":", omittingEmptySubsequences: false).map { Float(String($0)) }
        guard (1...2).contains(parts.count), let first = parts[0], let last = parts.last ?? nil else {
            throw ValidationError("--temperature takes a number or two as a:b, got '\(temperature)'.")
        }
        return [first, last]
    }

    /// The request's settings; a missing seed is drawn (and recorded) where the pipeline resolves them.
    func settings() throws -> CommonSettings {
        CommonSettings(seed: seed, count: count, sampling: SamplingOverrides(
            steps: steps, guidanceScale: cfg, temperatureRange: try temperatures(), typicalFiltering: noTypical ? false : typicalMass.map { _ in true },
            typicalMass: typicalMass, renoiseSteps: renoiseSteps, renoiseMode: renoise))
    }
}

/// Where and how results are written.
struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Output file (.png or .jpg); several images get -1, -2, ... before the extension.",
        discussion: "Default: paella-<mode>-<seed>.png in the working directory."))
    var output: String?

    @Option(help: "JPEG quality (1-100) when writing .jpg files.")
    var quality = 92

    @Flag(help: "Also write all images side by side as one grid (<output>-grid).")
    var grid = false

    @Flag(help: "Print what was written and with which parameters as JSON on stdout.")
    var json = false

    @Flag(help: "No progress display and no list of written files.")
    var quiet = false

    func validate() throws {
        if !(1...100).contains(quality) { throw ValidationError("--quality must be between 1 and 100, got \(quality).") }
        if let output, !["png", "jpg", "jpeg"].contains((output as NSString).pathExtension.lowercased()) {
            throw ValidationError("--output must end in .png, .jpg or .jpeg, got '\(output)'.")
        }
    }

    /// The file of image `index` (from 0) of `total`: the output itself for one image, else -1, -2, ... before
    /// the extension.
    func file(_ index: Int, of total: Int, mode: String, seed: UInt64) -> String {
        let base = output ?? "paella-\(mode)-\(seed).png"
        return total == 1 ? base : path(base, "-\(index + 1)")
    }

    private func path(_ base: String, _ suffix: String) -> String {
        ((base as NSString).deletingPathExtension) + suffix + "." + (base as NSString).pathExtension
    }

    /// Writes one image (PNG with the parameters as text, or JPEG), the file complete or absent.
    func save(_ image: PixelImage, _ file: String, parameters: GenerationParameters) throws {
        if (file as NSString).pathExtension.lowercased() != "png" {
            try AtomicFile.write(image.encodeJPEG(quality: quality), to: file)
        } else {
            try image.write(to: file, text: parameters.pngText)
        }
    }

    /// Writes the grid of all images when asked (named after the first file), then reports the files: as JSON
    /// with the parameters of each batch, or as a list.
    func finish(files: [String], images: [PixelImage], batches: [GenerationParameters], seconds: Double) throws {
        var gridFile: String?
        if grid, let first = files.first, let parameters = batches.first {
            let base = output ?? first
            let file = path(base, "-grid")
            try save(try PixelImage.grid(images, padding: 2), file, parameters: parameters)
            gridFile = file
        }
        if json {
            var object = "{\"files\": [" + files.map(jsonStringLiteral).joined(separator: ", ") + "]"
            if let gridFile { object += ", \"grid\": " + jsonStringLiteral(gridFile) }
            object += String(format: ", \"seconds\": %.3f", seconds) + ", \"parameters\": " + (batches.first?.json ?? "{}")
            if batches.count > 1 { object += ", \"batches\": [" + batches.map(\.json).joined(separator: ", ") + "]" }
            print(object + "}")
        } else if !quiet {
            if let gridFile { print("wrote \(gridFile)") }
            let seeds = batches.map { "\($0.seed)" }.joined(separator: ", ")
            FileHandle.standardError.write(Data(String(format: "seed %@, %.1f s\n", seeds, seconds).utf8))
        }
    }
}

/// Reads an input image, or fails with one sentence. The pipeline resizes it to the model's size, so a large
/// file is decoded reduced (`ImageLimits.resizedAfterReading`) instead of in full.
func readImage(_ path: String) throws -> PixelImage {
    try readDecodedImage(path).image
}

/// `readImage` with the size the file declares, for pixel coordinates given in it (`inpaint --rect`).
func readDecodedImage(_ path: String) throws -> DecodedImage {
    try PixelImage.decodeFile(path, limits: .resizedAfterReading)
}

extension InpaintMask {
    /// A rectangle given in the pixels of the file, moved to the pixels of the image as decoded (reduced or not):
    /// corners scaled and rounded outwards, so the area to repaint never shrinks.
    func scaled(to decoded: DecodedImage) -> InpaintMask {
        guard case let .rectangle(x, y, width, height) = self,
              decoded.sourceWidth != decoded.image.width || decoded.sourceHeight != decoded.image.height else { return self }
        // In Double, so no value given on the command line can overflow; clamped far outside any image (the
        // pipeline clips the rectangle to the image).
        func scale(_ v: Double, _ from: Int, _ to: Int, roundingUp: Bool) -> Int {
            Int(max(-1e15, min(1e15, (v * Double(to) / Double(from)).rounded(roundingUp ? .up : .down))))
        }
        let (w, h) = ((decoded.sourceWidth, decoded.image.width), (decoded.sourceHeight, decoded.image.height))
        let left = scale(Double(x), w.0, w.1, roundingUp: false), top = scale(Double(y), h.0, h.1, roundingUp: false)
        let right = scale(Double(x) + Double(width), w.0, w.1, roundingUp: true)
        let bottom = scale(Double(y) + Double(height), h.0, h.1, roundingUp: true)
        return .rectangle(x: left, y: top, width: max(1, right - left), height: max(1, bottom - top))
    }
}

/// Runs one pipeline request with a progress bar and writes its images; every failure is one sentence and exit 1.
/// The request is checked before anything is computed; more images than fit the memory limit together are
/// sampled in batches (`Pipeline.batches`), each image written as soon as its batch is done.
func runRequest(_ request: PipelineRequest, model: ModelOptions, compute: ComputeOptions, output: OutputOptions,
                vision: Bool = false) async throws {
    let pipeline = try reportingErrors { try model.pipeline(compute: try compute.makeCompute(), vision: vision) }
    let batches = try reportingErrors { () throws -> [PipelineRequest] in
        let batches = try pipeline.batches(request)
        if output.grid, let first = batches.first {  // the grid holds every image at once, next to the images
            let size = try pipeline.validate(first)
            let (cell, o1) = (size.width + 2).multipliedReportingOverflow(by: size.height + 2)
            let (bytes, o2) = cell.multipliedReportingOverflow(by: 6 * request.imageCount)
            guard !o1 && !o2 && bytes <= pipeline.limits.memoryBytes else {
                throw ValidationError("--grid of \(request.imageCount) images of \(size.width)x\(size.height) would need more than the " +
                                      "\(formattedBytes(pipeline.limits.memoryBytes)) a request may use; leave out --grid or ask for fewer images.")
            }
        }
        return batches
    }
    let bar = ProgressBar(quiet: output.quiet || output.json)  // started after loading, so the ETA counts sampling only
    do {
        let start = Date()
        var files: [String] = [], images: [PixelImage] = [], parameters: [GenerationParameters] = []
        let total = request.imageCount
        for batch in batches {
            let result = try await pipeline.run(batch) { p in
                switch p.stage {
                case .encoding: bar.update("encoding", done: 0, total: nil, force: true)
                case .sampling:
                    let perStep = p.step > 0 ? String(format: "  %.2f s/step", p.elapsed / Double(p.step)) : ""
                    bar.update("step \(p.step)/\(p.totalSteps)\(perStep)", done: p.step, total: p.totalSteps, force: true)
                case .decoding: bar.update("decoding", done: p.totalSteps, total: p.totalSteps, force: true)
                }
            }
            bar.finish()
            for warning in result.warnings where parameters.isEmpty { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            let first = parameters.first ?? result.parameters
            for image in result.images {
                let file = output.file(files.count, of: total, mode: first.mode, seed: first.seed)
                try output.save(image, file, parameters: result.parameters)
                if !output.quiet && !output.json { print("wrote \(file)") }
                files.append(file)
                if output.grid { images.append(image) }
            }
            parameters.append(result.parameters)
        }
        try output.finish(files: files, images: images, batches: parameters, seconds: Date().timeIntervalSince(start))
    } catch {
        bar.finish()
        _ = try reportingErrors { throw error }
    }
}
