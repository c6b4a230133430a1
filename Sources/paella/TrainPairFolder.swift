import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaTraining

/// Training pairs held in memory for `train vqgan` and `train clip`: every image of a data source (a folder of
/// images with `.txt` captions, or WebDataset shards; see `openTrainingSamples`), decoded once, all of one size
/// (8-bit pixels: a 64x64 image takes 12 KB).
struct TrainPairFolder {
    /// Both trainers train at the data's own size and keep every image: a side is at most 1024 pixels (checked
    /// on the file's header, before decoding) and all images together at most 4 GiB decoded.
    static let imageLimits = ImageLimits(maxSide: 1024, maxPixels: 1 << 20)
    static let maxHeldBytes = 4 << 30

    let images: [PixelImage]
    /// One caption per image ("" where there is none and captions were not required).
    let captions: [String]
    /// Each sample's name without folder or extension ("000123"), or its shard key.
    let keys: [String]
    var width: Int { images.first?.width ?? 0 }
    var height: Int { images.first?.height ?? 0 }
    var count: Int { images.count }

    /// Reads every sample of `path`, with its caption when `captions` is true (then a missing caption is an
    /// error). Throws when there are no images or they differ in size.
    init(path: String, captions needCaptions: Bool) throws {
        let samples = try openTrainingSamples(path: path)
        guard samples.count > 0 else { throw ValidationError("The training data \(path) holds no images.") }
        var images: [PixelImage] = [], captions: [String] = [], keys: [String] = []
        var held = 0
        for i in 0..<samples.count {
            let image = try samples.image(i, limits: Self.imageLimits)
            held += image.pixels.count
            guard held <= Self.maxHeldBytes else {
                throw ValidationError("The training data \(path) decodes to more than \(Self.maxHeldBytes >> 30) GiB by its image \(i + 1) of \(samples.count), "
                                      + "and train vqgan and train clip hold every image in memory: use smaller images or fewer of them.")
            }
            if let first = images.first, first.width != image.width || first.height != image.height {
                throw ValidationError("\(samples.sampleName(i)) is \(image.width)x\(image.height), but \(samples.sampleName(0)) is " +
                                      "\(first.width)x\(first.height): training images must share one size.")
            }
            let caption = try samples.caption(i).trimmingCharacters(in: .whitespacesAndNewlines)
            if needCaptions && caption.isEmpty {
                throw ValidationError("\(samples.sampleName(i)) has no caption; CLIP trains on image and caption pairs.")
            }
            images.append(image)
            captions.append(caption)
            let name = samples.sampleName(i)
            keys.append(name.hasPrefix("sample ") ? String(name.dropFirst("sample ".count))
                                                   : ((name as NSString).lastPathComponent as NSString).deletingPathExtension)
        }
        self.images = images
        self.captions = captions
        self.keys = keys
    }

    /// Images `indices` as a `[B, H, W, 3]` tensor in [0, 1].
    func batch(_ indices: [Int]) throws -> Tensor {
        try PixelImage.batchTensor(indices.map { images[$0] })
    }
}

/// Options `train vqgan` and `train clip` share (named as `train denoiser` names them).
struct TrainRunOptions: ParsableArguments {
    @Option(help: "Training data: a folder of NNNNNN.png images (with NNNNNN.txt captions for CLIP), all one size.")
    var data: String

    @Option(name: .shortAndLong, help: "Output folder: checkpoint, the JSONL log, the model file and its JSON config.")
    var output: String

    @Flag(help: "Continue the run saved in --output.")
    var resume = false

    @Option(help: "Total steps of the learning-rate schedule, fixed when the run starts (default 1000).")
    var steps: Int?

    @Option(help: "Stop after this many steps in total (default: the end of the schedule); resume later.")
    var stopAt: Int?

    @Option(help: "Images per step.")
    var batchSize = 16

    @Option(help: "Peak learning rate (warm-up over 5% of the steps, then cosine).")
    var lr: Double?

    @Option(help: "Print a log line every N steps.")
    var logEvery = 10

    @Option(help: "Save a checkpoint and the model file every N steps (and at the end).")
    var checkpointEvery = 200

    @Option(help: "Seed of the initial weights and of the batch order.")
    var seed: UInt64 = 0

    func validate() throws {
        guard (steps ?? 1) > 0, (stopAt ?? 1) > 0, batchSize > 0, logEvery > 0, checkpointEvery > 0 else {
            throw ValidationError("--steps, --stop-at, --batch-size, --log-every and --checkpoint-every must be positive.")
        }
    }
}

extension TrainRunOptions {
    /// The step this invocation stops at: --stop-at, else the end of the schedule (`scheduled` steps). A resumed
    /// run keeps the schedule it started with, so a different --steps is refused rather than ignored.
    func stopStep(scheduled: Int) throws -> Int {
        if resume, let steps, steps != scheduled {
            throw ValidationError("--steps is fixed when a run starts (this run's schedule has \(scheduled) steps); to stop earlier, pass --stop-at.")
        }
        return min(stopAt ?? scheduled, scheduled)
    }

    /// The shared training loop over `step()`, with a progress line every `logEvery` steps, the log in
    /// `output/logFile` and `save()` every `checkpointEvery` steps and at the end (data-parallel: on rank 0).
    func trainLoop<Result: Encodable>(logFile: String, total: Int, parallel: DataParallel, currentStep: () -> Int,
                                      step: () throws -> Result, line: (Result, Double) -> String,
                                      weights: () -> TrainableParameters, save: () throws -> Void) async throws {
        let loop = TrainingLoop(output: output, logFile: logFile, end: total, logEvery: logEvery, checkpointEvery: checkpointEvery,
                                parallel: parallel)
        try await loop.run(currentStep: currentStep, step: step, line: line,
                           progress: { text, printed in if printed { printFlushed(text) } }, weights: weights, save: save)
    }
}

/// Runs a training command's `body` as one rank of an MPI job when `mpirun` or `srun` started several processes
/// (else as one process). An error is printed as one sentence, and on any rank it ends the whole job with
/// `MPI_Abort` rather than leaving the other ranks waiting in their next all-reduce.
func trainingRanks(_ body: (DataParallel) async throws -> Void) async throws {
    let parallel = try reportingErrors { try DataParallel.start() }
    if parallel.size > 1 && parallel.isMain, let library = parallel.library {
        printFlushed("Data-parallel over \(parallel.size) processes (\(library.version))")
    }
    do {
        try await reportingErrorsAsync { try await body(parallel) }
    } catch {
        if parallel.size > 1 {
            FileHandle.standardError.write(Data("error: rank \(parallel.rank) of \(parallel.size) stopped the job.\n".utf8))
            parallel.abort(code: 1)
        }
        throw error
    }
    parallel.finish()
}

/// Each rank trains on its part of every batch, so a batch needs at least one item per rank; with --exact-sums
/// each rank's part must be a whole subtree of the batch's sum (`SampleTree.sharesAreSubtrees`).
func checkBatchSize(_ batchSize: Int, covers parallel: DataParallel, exactSums: Bool = false) throws {
    guard batchSize >= parallel.size else {
        throw ValidationError("--batch-size \(batchSize) is below the \(parallel.size) processes: each trains on part of every batch.")
    }
    if exactSums && !SampleTree.sharesAreSubtrees(total: batchSize, ranks: parallel.size) {
        throw ExactSumsError.sharesAreNotSubtrees(batch: batchSize, ranks: parallel.size)
    }
}

/// The help of `--exact-sums` (train denoiser and train vqgan).
let exactSumsHelp = ArgumentHelp(
    "Add each batch's gradient up image by image in one fixed order, so that 1, 2, 4, ... processes end with the same weights, bit for bit.",
    discussion: "Needs the number of processes to be a power of two that divides --batch-size. Compare runs at the same --threads and BLAS: OpenBLAS's results change with its thread count (with PAELLA_BLAS=builtin, one process at --threads 2 matched 2 processes at 1 in our runs). Each image goes through the network alone: the bundled denoiser's steps took 1.6-1.8x as long, a small VQGAN's 0.7-0.8x (docs/distributed-training.md).")

/// Writes a line to stdout unbuffered, so progress lines reach a log file or pipe as they happen.
func printFlushed(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
