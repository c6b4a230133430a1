// `paella train denoiser`: the Paella v1 training recipe (PaellaTraining) over a folder of images + captions,
// encoded on the fly with a model folder's VQGAN and CLIP text tower.
import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTraining

/// `paella train`: training commands.
struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train or fine-tune models with the Paella recipe.",
        subcommands: [TrainVQGANCommand.self, TrainCLIPCommand.self, TrainDenoiserCommand.self])
}

/// `paella train denoiser`: fine-tunes a model folder's denoiser (or trains a new one) on images with captions.
struct TrainDenoiserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "denoiser", abstract: "Train the denoiser on images with captions (a folder or WebDataset shards).",
        discussion: """
            Each batch: images resized and randomly cropped to --image-size, encoded to tokens by the model \
            folder's VQGAN (once per run for images already square at --image-size, whose crop never changes), captions embedded by its CLIP text tower (10% of batches unconditional), tokens \
            noised, then cross-entropy (label smoothing 0.1), gradient clipping at 5, AdamW and OneCycleLR \
            as upstream paella.py. The output folder holds the checkpoint (resume with --resume), train.jsonl \
            (one record per batch), after every checkpoint a model folder the other commands load, and \
            samples/<batch>.png: a grid of images generated from sample prompts at that point.
            Example: paella train denoiser --model models/paella-v1 --data shapes/ --output runs/shapes --steps 2000
            """)

    @Option(help: "Training data: a folder of .png/.jpg images each with a .txt caption of the same name, a WebDataset .tar shard, or a folder of shards.")
    var data: String
    @Option(name: .shortAndLong, help: "Output folder: checkpoint, train.jsonl and the trained model folder.") var output: String
    @Flag(help: "Continue the run saved in --output (same weights, optimizer, schedule, data order and random state).")
    var resume = false
    @Flag(help: "Start from new random weights (upstream's initialisation) instead of the model folder's denoiser.")
    var fromScratch = false
    @Option(help: "Denoiser configuration JSON (upstream DenoiseUNet arguments) for --from-scratch (default: the model folder's).")
    var config: String?
    @Option(help: "Total optimizer steps of the learning-rate schedule (fixed when the run starts).") var steps = 1000
    @Option(help: "Stop after this many batches in total (default: --steps times --accumulate); resume later.") var stopAt: Int?
    @Option(help: "Images per batch.") var batchSize = 8
    @Option(help: "Batches whose gradients add up before one optimizer step.") var accumulate = 1
    @Option(help: "Peak learning rate (upstream: 3e-4).") var lr = 3e-4
    @Option(help: ArgumentHelp("Learning rate at the last step, as a fraction of --lr, reached linearly after the warm-up.",
                               discussion: "Upstream's schedule keeps the peak rate to the end (1, the default); a short run that anneals (e.g. 0.02) ends in a lower loss.",
                               valueName: "fraction")) var finalLR = 1.0
    @Option(help: ArgumentHelp("Keep an exponential moving average of the weights with this decay (e.g. 0.995); samples and the model file use it.",
                               valueName: "decay")) var ema: Double?
    @Option(help: ArgumentHelp("Train this fraction of batches on the model's own draws, renoised (e.g. 0.5; not upstream).",
                               discussion: "Each such batch costs one more forward pass. The network then learns to correct plausible but wrong tokens, which it otherwise keeps while sampling.",
                               valueName: "fraction")) var selfCorrection: Double?
    @Option(help: "Image side in pixels (default: the model folder's default image size).") var imageSize: Int?
    @Option(help: "Save a checkpoint and the model folder every N batches (and at the end).") var checkpointEvery = 500
    @Option(help: "Print a log line every N batches.") var logEvery = 10
    @Option(help: "Prompt of a sample image generated at every checkpoint (repeatable; default: the first captions of the data).")
    var samplePrompt: [String] = []
    @Option(help: "Sample images per checkpoint when no --sample-prompt is given (0: none).") var samples = 4
    @Option(help: "Seed of the data order, crops, noising and initial weights.") var seed: UInt64 = 0
    @Flag(help: ArgumentHelp("Compute each caption's CLIP embedding once and keep it (caption-embeddings.safetensors in --output).",
                             discussion: "Worth it when images come round several times; the embeddings are the same."))
    var cacheEmbeddings = false
    @Flag(help: "No progress display or log lines (train.jsonl is still written).") var quiet = false
    @Flag(help: exactSumsHelp) var exactSums = false
    @OptionGroup var model: ModelOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if steps < 1 || batchSize < 1 || accumulate < 1 || checkpointEvery < 1 || logEvery < 1 || samples < 0 {
            throw ValidationError("--steps, --batch-size, --accumulate, --checkpoint-every and --log-every must be at least 1.")
        }
        if config != nil && !fromScratch { throw ValidationError("--config only applies with --from-scratch.") }
        if let ema, !(0..<1).contains(ema) { throw ValidationError("--ema must be at least 0 and below 1, got \(ema).") }
        if let selfCorrection, !(0...1).contains(selfCorrection) {
            throw ValidationError("--self-correction must be between 0 and 1, got \(selfCorrection).")
        }
        if !(finalLR > 0 && finalLR <= 1) { throw ValidationError("--final-lr must be above 0 and at most 1 (a fraction of --lr), got \(finalLR).") }
    }

    func run() async throws {
        try await trainingRanks { try await train($0) }
    }

    func train(_ parallel: DataParallel) async throws {
        try checkBatchSize(batchSize, covers: parallel, exactSums: exactSums)
        let compute = try compute.makeCompute()
        let folder = try ModelFolder(path: model.folderPath())
        let data = try openTrainingSamples(path: data)
        let vqgan = try folder.loadVQGAN(compute: compute)
        guard let text = try folder.loadCLIP(towers: .text).text else {
            throw ValidationError("The model folder \(folder.path) has no CLIP text tower.")
        }
        let tokenizer = try folder.loadTokenizer()
        let size = imageSize ?? folder.manifest.defaults.imageSize
        var trainer = try makeTrainer(folder: folder, compute: compute)
        trainer.join(parallel)
        trainer.exactSums = exactSums
        let share = parallel.share(of: batchSize)
        let side = trainer.config.sideMultiple * vqgan.config.downsamplingFactor
        guard size % side == 0 && size >= 2 * side else {
            throw ValidationError("--image-size \(size) must be a multiple of \(side), at least \(2 * side), for this VQGAN and denoiser.")
        }
        if parallel.isMain { try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true) }
        let cachePath = (output as NSString).appendingPathComponent("caption-embeddings.safetensors")
        let cache = cacheEmbeddings ? try CaptionEmbeddingCache(path: cachePath) : nil
        // Images already square at --image-size always crop to themselves: their tokens are computed once, in
        // chunks of about 260,000 pixels (64 images of 64x64, 4 of 256x256), which bounds the encoder's memory.
        let tokenCache = ImageTokenCache.holds(codebookSize: vqgan.config.nEmbed)
            ? ImageTokenCache(imageCount: data.count, size: size, chunkSize: max(1, 64 * 64 * 64 / (size * size))) : nil
        // The schedule fixes the run's length (a resumed run keeps its own --steps and --accumulate).
        let scheduled = trainer.recipe.schedule.totalSteps * trainer.recipe.accumulationSteps
        let end = min(stopAt ?? scheduled, scheduled)
        let prompts = samplePrompt.isEmpty ? try (0..<min(samples, data.count)).map { try data.caption($0) } : samplePrompt
        let quiet = quiet || !parallel.isMain
        let progress = ProgressBar(quiet: quiet)
        let progressDrawn = !quiet && isatty(STDERR_FILENO) != 0
        var (count, totalLoss, totalAccuracy) = (0, 0.0, 0.0)
        if !quiet {
            print("Training \(formatCount(trainer.parameters.scalarCount)) parameters on \(data.count) images " +
                  "(\(size)x\(size) px, batch \(batchSize)), batches \(trainer.step)..<\(end)")
        }
        let loop = TrainingLoop(output: output, logFile: "train.jsonl", end: end, logEvery: logEvery,
                                checkpointEvery: checkpointEvery, parallel: parallel)
        try await loop.run(currentStep: { trainer.step }, step: {
            // This process's part of the batch (all of it in one process); the crop of the image at position j of
            // the whole batch depends on the step and j only.
            let indices = Array(data.batchIndices(step: trainer.step, size: batchSize, seed: seed)[share.range])
            let crop = { (position: Int, image: PixelImage) -> PixelImage in
                var random = SplitMix64(seed: seed ^ (UInt64(trainer.step) &* 0xD1B5_4A32_D192_ED03)
                                              ^ (UInt64(share.range.lowerBound + position) &* 0x9E37_79B9_7F4A_7C15))
                return image.trainingCrop(size: size, random: &random)
            }
            let tokens = try tokenCache.map { cache in                            // [b, h, w]
                try cache.tokens(for: indices, load: data.image, crop: crop) { try encoded($0) { try vqgan.encode($0) } }
            } ?? encoded(try indices.enumerated().map { crop($0.offset, try data.image($0.element)) }) { try vqgan.encode($0) }
            let captions = try indices.map { try data.caption($0) }
            let embeddings = try cache.map { cache in
                try cache.embeddings(for: captions) { text(tokenizer.contextTokens([$0], contextLength: text.config.text.contextLength), compute: compute) }
            } ?? encoded(captions) { text(tokenizer.contextTokens($0, contextLength: text.config.text.contextLength), compute: compute) }
            let batch = try trainer.selfCorrected(trainer.prepareBatch(tokens: tokens, conditioning: embeddings, share: share))
            let result = try trainer.train(batch)
            count += 1
            totalLoss += result.loss
            totalAccuracy += result.accuracy
            return TrainLogRecord(result, perplexity: exp(result.loss), averageLoss: totalLoss / Double(count),
                                  unconditional: batch.conditioning.floats.allSatisfy { $0 == 0 })
        }, line: { (record: TrainLogRecord, seconds: Double) in
            "batch \(trainer.step)/\(end)  " + String(format: "loss %.4f (avg %.4f)  acc %.3f  ppx %.1f  lr %.2e  grad %.3f  %.2f s/batch",
                   record.loss, totalLoss / Double(count), totalAccuracy / Double(count), exp(totalLoss / Double(count)),
                   record.learningRate, record.gradientNorm, seconds)
        }, progress: { line, printed in
            progress.update(line, done: trainer.step, total: end)
            if !quiet && printed {
                if progressDrawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }  // clear the bar's line
                printFlushed(line)  // as it happens, also into a pipe or file
            }
        }, weights: { trainer.parameters }, save: {
            try save(trainer, source: folder, imageSize: size)
            try cache?.save(to: cachePath)
            if !prompts.isEmpty {
                let models = try PipelineModels(denoiser: try trainer.exportedModel(), vqgan: vqgan, textEncoder: text, tokenizer: tokenizer)
                try await writeSamples(Pipeline(models: models, defaults: folder.manifest.defaults, modelName: "training"),
                                       prompts: prompts, size: size, step: trainer.step)
            }
        })
        progress.finish()
        if !quiet { print("Model folder: \(output)") }
    }

    /// `encode(items)` (`[n, ...]`), or with --exact-sums each item encoded alone and the results stacked: an
    /// item's tokens or embedding then do not depend on which items shared this rank's part of the batch (a
    /// GEMM's rounding may change with its number of rows).
    func encoded<Item>(_ items: [Item], _ encode: ([Item]) throws -> Tensor) rethrows -> Tensor {
        guard exactSums, items.count > 1 else { return try encode(items) }
        let parts = try items.map { try encode([$0]) }
        var shape = parts[0].shape
        shape[0] = items.count
        return parts[0].dtype == .int32 ? Tensor(int32: parts.flatMap { $0.integers().map { Int32($0) } }, shape: shape)
                                        : Tensor(parts.flatMap { $0.toFloat32().floats }, shape: shape)
    }

    /// One image per prompt (the same seed every time, so grids of successive checkpoints compare), as a grid in
    /// `samples/<batch>.png` (upstream paella.py logs such a grid every log period).
    func writeSamples(_ pipeline: Pipeline, prompts: [String], size: Int, step: Int) async throws {
        var images: [PixelImage] = []
        for prompt in prompts {
            let request = GenerateRequest(prompt: prompt, width: size, height: size, settings: CommonSettings(seed: seed))
            images += try await pipeline.generate(request).images
        }
        let folder = (output as NSString).appendingPathComponent("samples")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try PixelImage.grid(images, padding: 2).write(to: (folder as NSString).appendingPathComponent(String(format: "%09d.png", step)))
    }

    /// A new trainer (fine-tuning the folder's denoiser, or from scratch), or the one saved in --output.
    func makeTrainer(folder: ModelFolder, compute: Compute) throws -> DenoiserTrainer {
        let checkpoint = (output as NSString).appendingPathComponent("trainer.json")
        if resume {
            guard FileManager.default.fileExists(atPath: checkpoint) else {
                throw ValidationError("--resume: \(output) holds no checkpoint (trainer.json).")
            }
            return try DenoiserTrainer(resumingFrom: output, compute: compute)
        }
        if FileManager.default.fileExists(atPath: checkpoint) {
            throw ValidationError("\(output) already holds a training run; pass --resume to continue it or choose another --output.")
        }
        var recipe = DenoiserTrainingRecipe.paellaV1(totalSteps: steps, maxLR: lr, finetune: !fromScratch, finalLRFraction: finalLR)
        recipe.accumulationSteps = accumulate
        recipe.emaDecay = ema
        recipe.selfCorrection = selfCorrection
        if fromScratch {
            let config = try config.map(ModelConfigFile.denoiser) ?? folder.manifest.denoiser.config
            return try DenoiserTrainer(config: config, parameters: .newDenoiser(config, seed: seed), recipe: recipe,
                                       compute: compute, seed: seed)
        }
        return try DenoiserTrainer(config: folder.manifest.denoiser.config, weightsPath: folder.file(folder.manifest.denoiser.file),
                                   recipe: recipe, compute: compute, seed: seed)
    }

    /// The checkpoint, then `model.json` beside the trained `denoiser.safetensors`, with the source folder's VQGAN,
    /// CLIP and vocabulary files linked (or copied) in: a model folder.
    func save(_ trainer: DenoiserTrainer, source: ModelFolder, imageSize: Int) throws {
        try trainer.saveCheckpoint(to: output, modelFile: "denoiser.safetensors")
        var manifest = source.manifest
        manifest.denoiser = ModelComponent(file: "denoiser.safetensors", dtype: "float32", config: trainer.config)
        manifest.name = source.manifest.name.hasSuffix("-trained") ? source.manifest.name : source.manifest.name + "-trained"
        manifest.description = "\(source.manifest.name) with its denoiser trained by `paella train denoiser` (\(trainer.step) batches)"
        manifest.defaults.imageSize = imageSize
        let fm = FileManager.default
        for file in [manifest.vqgan.file, manifest.clip.file, manifest.tokenizer] {
            let target = (output as NSString).appendingPathComponent(file)
            if fm.fileExists(atPath: target) { continue }
            do { try fm.linkItem(atPath: source.file(file), toPath: target) } catch { try fm.copyItem(atPath: source.file(file), toPath: target) }
        }
        try manifest.recordChecksums(in: output)
        try AtomicFile.write(try manifest.encoded(), to: (output as NSString).appendingPathComponent(ModelManifest.fileName))
    }
}

/// One line of train.jsonl (the loop adds the step's seconds).
struct TrainLogRecord: Encodable {
    var step: Int, loss: Double, accuracy: Double, perplexity: Double, averageLoss: Double
    var learningRate: Double, gradientNorm: Double, updated: Bool, unconditional: Bool

    init(_ r: DenoiserStepResult, perplexity: Double, averageLoss: Double, unconditional: Bool) {
        (step, loss, accuracy, learningRate, gradientNorm, updated) = (r.step, r.loss, r.accuracy, r.learningRate, r.gradientNorm, r.updated)
        (self.perplexity, self.averageLoss, self.unconditional) = (perplexity, averageLoss, unconditional)
    }

    enum CodingKeys: String, CodingKey {
        case step, loss, accuracy, perplexity, unconditional, updated
        case averageLoss = "average_loss", learningRate = "lr", gradientNorm = "grad_norm"
    }
}
