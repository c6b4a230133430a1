import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaModels
import PaellaTraining

/// `paella bench train`: one training step of a medium denoiser (random weights, random batch).
struct BenchTrainCommand: ParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time one denoiser training step (forward, loss, backward, clipping, AdamW).",
        discussion: """
            A DenoiseUNet with --c-hidden channels at the deepest level (v1's levels, 8192 labels, 1024-wide \
            conditioning) and random weights, trained with the Paella recipe on a random batch of --size x --size \
            token grids. Prints the median milliseconds of a whole step and of its forward pass alone. Compare with \
            PyTorch on the same machine: bench/pytorch/train_bench.py (or bench/side_by_side.py train).
            """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 3, warmup = 1  // the default --repeats and --warmup
    @Option(help: "Channels of the deepest level (v1: 1280).") var cHidden = 320
    @Option(help: "Token grid side.") var size = 16
    @Option(help: "Batch size.") var batch = 8
    @Option(help: ArgumentHelp("A denoiser config file (as `paella convert --denoiser-config` reads, e.g. scripts/paella-small/denoiser.json) instead of the medium model; --c-hidden is then ignored.",
                               valueName: "file"))
    var config: String?

    func validate() throws {
        guard batch >= 1, cHidden >= 4, cHidden % 4 == 0, size >= 8, size % 4 == 0 else {
            throw ValidationError("Need --batch >= 1, --c-hidden a multiple of 4 and --size a multiple of 4 (at least 8).")
        }
    }

    func run() throws {
        try reportingErrors {
            let compute = try self.compute.makeCompute()
            let config = try self.config.map(ModelConfigFile.denoiser) ?? DenoiserConfig(numLabels: 8192, cHidden: cHidden, cClip: 1024, cR: 64)
            var trainer = try DenoiserTrainer(config: config, parameters: .newDenoiser(config, seed: 1),
                                              recipe: .paellaV1(totalSteps: 1000), compute: compute, seed: 2)
            var generator = TorchCompatibleGenerator(seed: 3)
            let tokens = generator.randint(config.numLabels, [batch, size, size])
            let c = generator.uniform([batch, config.cClip])
            let prepared = trainer.prepareBatch(tokens: tokens, conditioning: c)
            let model = try trainer.model()
            let step = try bench.time { _ = try trainer.train(prepared) }.median
            let forward = bench.time { _ = model.forwardForTraining(prepared.noised, conditioning: prepared.conditioning, r: prepared.r) }.median
            let extra = [("batch", String(batch)), ("parameters", String(trainer.parameters.scalarCount))]
            let name = "denoiser c\(config.cHidden) \(size)x\(size)"
            let flops = config.forwardFLOPs(height: size, width: size, batch: batch)
            BenchmarkReport.print([
                // A training step costs about three forwards (the backward computes two products per forward one).
                BenchmarkRow(name: "train step " + name, medianMs: step, gflops: 3 * flops / step / 1e6,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
                BenchmarkRow(name: "train forward " + name, medianMs: forward, gflops: flops / forward / 1e6,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
            ], json: bench.json)
        }
    }
}
