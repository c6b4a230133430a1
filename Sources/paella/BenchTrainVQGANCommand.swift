import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaShapes
import PaellaTraining

/// `paella bench train-vqgan`: one VQGAN training step at the bundled model's tokenizer configuration.
struct BenchTrainVQGANCommand: ParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "train-vqgan",
        abstract: "Time one VQGAN training step (encode, quantize, decode, loss, backward, clipping, AdamW).",
        discussion: """
            The tokenizer of the bundled model's recipe (scripts/train-paella-small.sh: f4, ch 32, ch_mult 1,1,2, \
            no attention, LayerNorm over each pixel's channels, 512 codes of 32 dimensions, nearest-neighbour \
            quantizer, squared error with object pixels weighted 5x) or the one --config describes, with PyTorch's initialisation, on a batch of \
            64x64 scenes of the shapes dataset. Prints the median milliseconds of a whole step and of its forward \
            pass and loss alone. Compare with PyTorch on the same machine: bench/pytorch/train_vqgan_bench.py \
            (or bench/side_by_side.py train-vqgan).
            """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 5, warmup = 1  // the default --repeats and --warmup
    @Option(help: "Batch size.") var batch = 32
    @Option(help: ArgumentHelp("A VQGAN config file (the vqgan.json `paella train vqgan` writes) instead of the bundled recipe's.",
                               valueName: "file"))
    var config: String?

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch).") }
    }

    /// The bundled model's tokenizer (stage 2 of scripts/train-paella-small.sh).
    static let bundledConfig = VQGANConfig(ch: 32, chMult: [1, 1, 2], numResBlocks: 1, attnResolutions: [], zChannels: 32,
                                           embedDim: 32, nEmbed: 512, resolution: 64, midAttention: false, normalization: .pixel)

    func run() throws {
        try reportingErrors {
            let compute = try self.compute.makeCompute()
            let config = try self.config.map(ModelConfigFile.vqgan) ?? Self.bundledConfig
            var recipe = VQGANTrainingRecipe(totalSteps: 1500, maxLR: 2e-3)
            recipe.l1Weight = 0
            recipe.l2Weight = 1
            recipe.objectWeight = 4
            var trainer = try VQGANTrainer(config: config, recipe: recipe, compute: compute, seed: 1)
            let images = Self.scenes(count: batch, side: config.resolution, compute: compute)
            let model = try trainer.model()
            let step = try bench.time { _ = try trainer.train(images: images) }.median
            let forward = try bench.time { _ = try trainer.lossAndGradients(images: images, backward: false, model: model) }.median
            let extra = [("batch", String(batch)), ("parameters", String(trainer.parameters.scalarCount))]
            let name = "vqgan ch\(config.ch) \(config.resolution)x\(config.resolution)"
            BenchmarkReport.print([
                BenchmarkRow(name: "train step " + name, medianMs: step, gflops: nil,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
                BenchmarkRow(name: "train forward " + name, medianMs: forward, gflops: nil,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
            ], json: bench.json)
        }
    }

    /// `count` scenes of the shapes dataset's training split (seed 1), `[count, side, side, 3]` in [0, 1].
    static func scenes(count: Int, side: Int, compute: Compute) -> Tensor {
        let sampler = ShapeSampler(seed: 1), renderer = ShapeRenderer(side: side)
        return compute.concat((0 ..< count).map { renderer.render(sampler.scene(index: $0)).tensor() }, axis: 0)
    }
}
