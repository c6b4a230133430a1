import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaShapes
import PaellaIO
import PaellaModels
import PaellaTraining

/// `paella train clip`: trains OpenCLIP text and vision towers with the contrastive loss on captioned images.
struct TrainCLIPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clip",
        abstract: "Train CLIP's text and vision towers with the symmetric contrastive loss.",
        discussion: """
            Reads NNNNNN.png images with NNNNNN.txt captions from --data; captions use the CLIP BPE tokenizer. Writes \
            checkpoints to --output, with clip.safetensors (logit_scale included) and clip.json (an OpenCLIP model \
            config) for a model folder. Progress lines report the loss, in-batch retrieval accuracy (image->text, \
            text->image), the logit scale and the learning rate; every step is logged to OUTPUT/train-clip.jsonl.
            """)

    @OptionGroup var options: TrainRunOptions

    @Option(help: "Width of the shared embedding.")
    var embedDim = 256

    @Option(help: "Text tower width.")
    var textWidth = 256

    @Option(help: "Text tower blocks.")
    var textLayers = 4

    @Option(help: "Text tower attention heads.")
    var textHeads = 4

    @Option(help: "Text context length (tokens, start and end included).")
    var context = 32

    @Option(help: "Vision tower width.")
    var visionWidth = 256

    @Option(help: "Vision tower blocks.")
    var visionLayers = 4

    @Option(help: "Vision tower channels per head.")
    var headWidth = 64

    @Option(help: "Patch size (the image side must be a multiple of it).")
    var patch = 8

    @Option(help: "Image side the vision tower sees (default: the data's; images are resized when different).")
    var imageSize: Int?

    @Option(help: ArgumentHelp("Shapes data only (a folder with metadata.jsonl): this share of each batch becomes pairs of a scene and its twin with one attribute changed (see --twin-changes), captioned alike (hard negatives).",
                               valueName: "fraction"))
    var twins = 0.0

    @Option(help: ArgumentHelp("The attributes a twin may change, comma-separated, each pair one of them at random.",
                               discussion: "Weight one by naming it more than once (shape,shape,color,position).",
                               valueName: "attributes"))
    var twinChanges = "color,shape,position"

    @Option(help: ArgumentHelp("Shapes data only: weight of an auxiliary loss that asks both embeddings to name what the scene holds (which shapes, colours, cells, sizes and background, and which shape and colour sit in each cell), through a linear head that the model file leaves out. 0: off.",
                               valueName: "weight"))
    var labelWeight = 0.0

    @Flag(help: "With --label-weight: the label head reads the caption embeddings alone, so that the text tower names every attribute a caption states even where the vision tower cannot see it.")
    var labelTextOnly = false

    @Option(help: ArgumentHelp("Start from the towers of an earlier run: a `paella train clip` output folder (its clip.json and clip.safetensors); the tower options are then read from there.",
                               valueName: "folder"))
    var from: String?

    @Flag(help: "With --from: keep the text tower as it is; only the vision tower and the logit scale train, against the fixed caption embeddings (so that a denoiser trained on those stays valid).")
    var freezeText = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard labelWeight >= 0, labelWeight.isFinite else { throw ValidationError("--label-weight must be 0 or more, got \(labelWeight).") }
        if labelTextOnly && labelWeight == 0 { throw ValidationError("--label-text-only needs --label-weight above 0.") }
        // A resumed run keeps the recipe it started with (frozen or not).
        if freezeText && from == nil && !options.resume { throw ValidationError("--freeze-text needs --from: a new text tower would stay random.") }
        if freezeText && labelTextOnly {
            throw ValidationError("--label-text-only with --freeze-text would train the label head alone; leave one of them out.")
        }
    }

    /// The config and weights of the run in `folder` (`--from`).
    static func startingPoint(_ folder: String) throws -> (config: CLIPConfig, parameters: TrainableParameters) {
        let configPath = folder + "/clip.json"
        let config: CLIPConfig
        do {
            config = try JSONDecoder().decode(CLIPConfig.self, from: try Data(contentsOf: URL(fileURLWithPath: configPath)))
        } catch {
            throw ValidationError("Cannot read the CLIP config \(configPath) (\(error.localizedDescription)); --from takes the output folder of `paella train clip`.")
        }
        return (config, try TrainableParameters(path: folder + "/clip.safetensors", keys: try CLIPTrainer.parameterShapes(config)))
    }

    mutating func run() async throws {
        try await trainingRanks { parallel in
            try checkBatchSize(options.batchSize, covers: parallel)
            let compute = try compute.makeCompute()
            let folder = try TrainPairFolder(path: options.data, captions: true)
            let tokenizer = try CLIPTokenizer(openCLIPVocabulary: try CLIPTokenizer.locateVocabulary())
            var trainer: CLIPTrainer
            if options.resume {
                trainer = try CLIPTrainer(resumingFrom: options.output, compute: compute)
            } else {
                var recipe = CLIPTrainingRecipe(totalSteps: options.steps ?? 1000, maxLR: options.lr ?? 5e-4)
                recipe.frozenText = freezeText ? true : nil
                if let from {
                    let start = try Self.startingPoint(from)
                    trainer = try CLIPTrainer(config: start.config, parameters: start.parameters, recipe: recipe, compute: compute,
                                              seed: options.seed)
                } else {
                    let side = imageSize ?? folder.width
                    guard side % patch == 0 else { throw ValidationError("The image side \(side) is not a multiple of the patch size \(patch).") }
                    let config = CLIPConfig(
                        embedDim: embedDim,
                        text: CLIPTextConfig(contextLength: context, vocabSize: tokenizer.vocabularySize, width: textWidth,
                                             heads: textHeads, layers: textLayers),
                        vision: CLIPVisionConfig(imageSize: side, layers: visionLayers, width: visionWidth, headWidth: headWidth,
                                                 patchSize: patch))
                    trainer = try CLIPTrainer(config: config, recipe: recipe, compute: compute, seed: options.seed)
                }
                if labelWeight > 0 { trainer.addLabelHead(count: ShapeLabels.count, lossWeight: labelWeight, textOnly: labelTextOnly) }
            }
            let config = trainer.config
            let total = try options.stopStep(scheduled: trainer.recipe.schedule.totalSteps)
            trainer.join(parallel)
            let share = parallel.share(of: options.batchSize)
            if parallel.isMain { printFlushed("CLIP, \(trainer.parameters.scalarCount) parameters (text \(config.text.width)x\(config.text.layers), vision "
                + "\(config.vision.width)x\(config.vision.layers), patch \(config.vision.patchSize)); \(folder.count) pairs; "
                + "steps \(trainer.step)..<\(total), batch \(options.batchSize)"
                + (trainer.recipe.frozenText == true ? "; text tower frozen" : "")) }
            let side = config.vision.imageSize
            guard (0...1).contains(twins) else { throw ValidationError("--twins must be between 0 and 1, got \(twins).") }
            let labelled = trainer.labelHead != nil
            let scenes = twins > 0 || labelled ? try Self.scenes(of: folder, data: options.data, option: twins > 0 ? "--twins" : "--label-weight") : []
            let changes = try Self.twinChanges(twinChanges)
            let renderer = ShapeRenderer(side: folder.width)
            try await options.trainLoop(logFile: "train-clip.jsonl", total: total, parallel: parallel, currentStep: { trainer.step }, step: {
                let indices = trainer.random.randint(folder.count, [options.batchSize]).integers()
                var images = indices.map { folder.images[$0] }, captions = indices.map { folder.captions[$0] }
                var batchScenes = labelled ? indices.map { scenes[$0] } : []
                if twins > 0 {
                    // Pairs (2k, 2k + 1): sample 2k's scene and its twin, both captioned with one template and words.
                    var random = SplitMix64(seed: options.seed ^ (UInt64(trainer.step) &* 0x9E37_79B9_7F4A_7C15))
                    for k in 0..<Int(Double(options.batchSize) * twins / 2) {
                        let scene = scenes[indices[2 * k]]
                        let change = changes[Int(random.next() % UInt64(changes.count))]
                        guard let twin = ShapeTwins.twin(of: scene, changing: change, random: &random) else { continue }
                        (captions[2 * k], captions[2 * k + 1]) = ShapeTwins.captions(scene, twin, seed: random.next())
                        images[2 * k + 1] = renderer.render(twin)
                        if labelled { batchScenes[2 * k + 1] = twin }
                    }
                }
                // Every rank draws the same global batch (same seed and step) and computes its own pairs.
                let own = Array(images[share.range]).map { $0.width == side && $0.height == side ? $0 : $0.resized(width: side, height: side) }
                let pixels = CLIPImagePreprocessing.normalized(try PixelImage.batchTensor(own))
                let tokens = tokenizer.contextTokens(Array(captions[share.range]), contextLength: config.text.contextLength)
                let labels = labelled ? Tensor(batchScenes.flatMap(ShapeLabels.labels), shape: [batchScenes.count, ShapeLabels.count]) : nil
                return try trainer.train(images: pixels, tokens: tokens, labels: labels, share: share)
            }, line: { (result: CLIPStepResult, perStep: Double) in
                String(format: "step %d/%d  loss %.4f  acc i->t %.3f t->i %.3f  scale %.1f  |g| %.3f  lr %.2e  %.2f s/step",
                       trainer.step, total, result.loss, result.imageToTextAccuracy, result.textToImageAccuracy,
                       result.logitScale, result.gradientNorm, result.learningRate, perStep)
                    + (result.labelLoss.map { String(format: "  labels %.4f (%.3f all right)", $0, result.labelAccuracy ?? 0) } ?? "")
            }, weights: { trainer.parameters }, save: { try trainer.saveCheckpoint(to: options.output) })
        }
    }

    /// The attributes of `--twin-changes` (repeats kept: they weight the draw).
    static func twinChanges(_ list: String) throws -> [ShapeAttribute] {
        let names = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let allowed = ShapeTwins.attributes.map(\.rawValue)
        guard !names.isEmpty, names.allSatisfy(allowed.contains) else {
            throw ValidationError("--twin-changes takes a comma-separated list of \(allowed.joined(separator: ", ")), got \"\(list)\".")
        }
        return names.compactMap(ShapeAttribute.init(rawValue:))
    }

    /// The scene of each training sample, from the shapes dataset's metadata.jsonl, in the folder's order.
    static func scenes(of folder: TrainPairFolder, data: String, option: String) throws -> [ShapeScene] {
        let path = (data as NSString).appendingPathComponent("metadata.jsonl")
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("\(option) needs the shapes dataset's metadata.jsonl in \(data) (made by `paella dataset shapes`).")
        }
        let records = Dictionary(try ShapeDatasetWriter.readMetadata(path).map { ($0.key, $0.scene) }) { first, _ in first }
        return try folder.keys.map { key in
            guard let scene = records[key] else { throw ValidationError("\(path) has no scene for sample \(key).") }
            return scene
        }
    }
}
