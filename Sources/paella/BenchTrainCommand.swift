import ArgumentParser
import Foundation
import Paella
import PaellaTraining

/// `paella bench train`: one training step of a medium denoiser (random weights, random batch).
struct BenchTrainCommand: ParsableCommand {
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
    @Option(help: "Channels of the deepest level (v1: 1280).") var cHidden = 320
    @Option(help: "Token grid side.") var size = 16
    @Option(help: "Batch size.") var batch = 8
    @Option(help: "Timed repetitions; the median is reported.") var repeats = 3
    @Option(help: "Untimed repetitions before timing.") var warmup = 1
    @Flag(help: "Print one JSON object per line instead of a table.") var json = false

    func validate() throws {
        guard repeats >= 1, warmup >= 0, batch >= 1, cHidden >= 4, cHidden % 4 == 0, size >= 8, size % 4 == 0 else {
            throw ValidationError("Need --repeats >= 1, --warmup >= 0, --batch >= 1, --c-hidden a multiple of 4 and --size a multiple of 4 (at least 8).")
        }
    }

    func run() throws {
        try reportingErrors {
            let compute = try self.compute.makeCompute()
            let config = DenoiserConfig(numLabels: 8192, cHidden: cHidden, cClip: 1024, cR: 64)
            var trainer = try DenoiserTrainer(config: config, parameters: .newDenoiser(config, seed: 1),
                                              recipe: .paellaV1(totalSteps: 1000), compute: compute, seed: 2)
            var generator = TorchCompatibleGenerator(seed: 3)
            let tokens = generator.randint(config.numLabels, [batch, size, size])
            let c = generator.uniform([batch, config.cClip])
            let prepared = trainer.prepareBatch(tokens: tokens, conditioning: c)
            let model = try trainer.model()
            let step = try time { _ = try trainer.train(prepared) }
            let forward = try time { _ = model.forwardForTraining(prepared.noised, conditioning: prepared.conditioning, r: prepared.r) }
            let extra = [("batch", String(batch)), ("parameters", String(trainer.parameters.scalarCount))]
            let name = "denoiser c\(cHidden) \(size)x\(size)"
            let flops = config.forwardFLOPs(height: size, width: size, batch: batch)
            BenchmarkReport.print([
                // A training step costs about three forwards (the backward computes two products per forward one).
                BenchmarkRow(name: "train step " + name, medianMs: step, gflops: 3 * flops / step / 1e6,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
                BenchmarkRow(name: "train forward " + name, medianMs: forward, gflops: flops / forward / 1e6,
                             backend: compute.gemm.name, threads: compute.pool.threadCount, extra: extra),
            ], json: json)
        }
    }

    /// Median milliseconds of `repeats` runs after `warmup` untimed ones.
    private func time(_ body: () throws -> Void) throws -> Double {
        let clock = ContinuousClock()
        for _ in 0..<warmup { try body() }
        let times = try (0..<repeats).map { _ -> Double in
            let start = clock.now
            try body()
            let d = clock.now - start
            return Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) * 1e-15
        }.sorted()
        return times[times.count / 2]
    }
}
