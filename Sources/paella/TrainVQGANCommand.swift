import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaModels
import PaellaTraining

/// `paella train vqgan`: trains a VQGAN tokenizer on a folder of images.
struct TrainVQGANCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vqgan",
        abstract: "Train a VQGAN tokenizer (L1 reconstruction, nearest-neighbour or Gumbel quantizer, dead-code restarts).",
        discussion: """
            Reads NNNNNN.png files (one size, sides multiples of 2^(levels-1)) from --data. Writes checkpoints to \
            --output, with vqgan.safetensors and vqgan.json for a model folder. Progress lines report the loss, \
            PSNR, codebook usage and learning rate; every step is also logged to OUTPUT/train-vqgan.jsonl.
            """)

    @OptionGroup var options: TrainRunOptions

    @Option(help: "Base channel count (a multiple of 32).")
    var ch = 64

    @Option(help: "Channel multipliers per level, comma-separated; levels - 1 halvings (1,2,2: f4).")
    var chMult = "1,2,2"

    @Option(help: "Residual blocks per encoder level.")
    var resBlocks = 1

    @Option(help: "Feature-map sides with attention in the levels, comma-separated (empty: only the middle).")
    var attnResolutions = ""

    @Flag(help: "No self-attention in the middle of the encoder and decoder (not upstream: tokens then depend only on nearby pixels).")
    var noMidAttention = false

    @Option(help: "Normalisation: group (taming's GroupNorm), or, not upstream, pixel (LayerNorm over each pixel's channels) or none; pixel and none keep image-wide statistics away from the tokens.")
    var normalization = "group"

    @Option(help: "Width of a codebook entry (z_channels and embed_dim).")
    var embedDim = 64

    @Option(help: "Codebook size.")
    var codebook = 256

    @Option(help: "Quantizer: nearest (straight-through nearest neighbour) or gumbel (taming's GumbelQuantize).")
    var quantizer = "nearest"

    @Option(help: "Steps per dead-code window (0: no restarts).")
    var restartWindow = 50

    @Option(help: "Weight of the L1 term of the reconstruction loss.")
    var l1 = 1.0

    @Option(help: "Weight of the L2 term of the reconstruction loss.")
    var l2 = 0.0

    @Option(help: "Extra loss weight of pixels that differ from the image's background (border) colour: they count 1 + this.")
    var objectWeight = 0.0

    @Flag(help: exactSumsHelp) var exactSums = false

    @OptionGroup var compute: ComputeOptions

    mutating func run() async throws {
        try await trainingRanks { parallel in
            try checkBatchSize(options.batchSize, covers: parallel, exactSums: exactSums)
            let compute = try compute.makeCompute()
            let folder = try TrainPairFolder(path: options.data, captions: false)
            var trainer: VQGANTrainer
            if options.resume {
                trainer = try VQGANTrainer(resumingFrom: options.output, compute: compute)
            } else {
                guard let kind = VQGANTrainingRecipe.Quantizer(rawValue: quantizer) else {
                    throw ValidationError("--quantizer must be nearest or gumbel, got \(quantizer).")
                }
                guard let normalizationKind = VQGANNormalization(rawValue: normalization) else {
                    throw ValidationError("--normalization must be group, pixel or none, got \(normalization).")
                }
                let config = VQGANConfig(ch: ch, chMult: try Self.integers(chMult), numResBlocks: resBlocks,
                                         attnResolutions: try Self.integers(attnResolutions), zChannels: embedDim,
                                         embedDim: embedDim, nEmbed: codebook, resolution: folder.width,
                                         midAttention: !noMidAttention, normalization: normalizationKind)
                try config.validate()
                let f = config.downsamplingFactor
                guard folder.width % f == 0 && folder.height % f == 0 else {
                    throw ValidationError("The images are \(folder.width)x\(folder.height); this VQGAN needs sides that are multiples of \(f).")
                }
                guard l1 >= 0, l2 >= 0, l1 + l2 > 0, objectWeight >= 0 else {
                    throw ValidationError("--l1, --l2 and --object-weight must not be negative, and --l1 or --l2 must be above 0.")
                }
                var recipe = VQGANTrainingRecipe(totalSteps: options.steps ?? 1000, maxLR: options.lr ?? 1e-3, quantizer: kind)
                recipe.restartWindow = restartWindow
                recipe.l1Weight = l1
                recipe.l2Weight = l2
                recipe.objectWeight = objectWeight
                trainer = try VQGANTrainer(config: config, recipe: recipe, compute: compute, seed: options.seed)
            }
            trainer.join(parallel)
            trainer.exactSums = exactSums
            let share = parallel.share(of: options.batchSize)
            let total = try options.stopStep(scheduled: trainer.recipe.schedule.totalSteps)
            if parallel.isMain { printFlushed("VQGAN f\(trainer.config.downsamplingFactor), \(trainer.parameters.scalarCount) parameters, \(trainer.config.nEmbed) codes, "
                + "\(trainer.recipe.quantizer.rawValue) quantizer; \(folder.count) images of \(folder.width)x\(folder.height); "
                + "steps \(trainer.step)..<\(total), batch \(options.batchSize)") }
            try await options.trainLoop(logFile: "train-vqgan.jsonl", total: total, parallel: parallel, currentStep: { trainer.step }, step: {
                // The whole batch's images are drawn on every rank; each trains on its part.
                let indices = trainer.random.randint(folder.count, [options.batchSize]).integers()
                return try trainer.train(images: try folder.batch(Array(indices[share.range])), share: share)
            }, line: { (result: VQGANStepResult, perStep: Double) in
                String(format: "step %d/%d  loss %.4f  rec %.4f  q %.4f  psnr %.2f dB  codes %d/%d (window %d)  ppl %.1f  restarted %d  lr %.2e  %.2f s/step",
                       trainer.step, total, result.loss, result.reconstructionLoss, result.quantizerLoss, result.psnr,
                       result.codesInBatch, trainer.config.nEmbed, result.codesInWindow, result.perplexity,
                       result.restarted, result.learningRate, perStep)
            }, weights: { trainer.parameters }, save: { try trainer.saveCheckpoint(to: options.output) })
        }
    }

    /// "1,2,2" -> [1, 2, 2]; "" -> [].
    static func integers(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { part in
            guard let v = Int(part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("\(text) is not a comma-separated list of integers.") }
            return v
        }
    }
}
