import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaTestSupport
import Testing

/// `paella train` under Open MPI's `mpirun`: two ranks sharing a global batch end with the weights of one process
/// training on the whole batch, and a rank killed mid-run ends the job with a message naming it while the last
/// checkpoint stays usable.
@Suite("Data-parallel training (mpirun)", .serialized,
       .enabled(if: PaellaCLI.mpirun != nil, "mpirun is not installed (Debian: openmpi-bin libopenmpi-dev); the data-parallel tests run the real binary under it"))
struct DataParallelCLITests {
    let work: String
    let data: String

    init() throws {
        (work, data) = try Fixtures.squarePicturesWorkspace()
    }

    /// How two safetensors files of the same weights differ: the share of elements that differ by more than
    /// `tolerance` of their tensor's largest magnitude, the worst tensor with its relative difference, and the
    /// share of elements that are bitwise equal.
    static func compare(_ a: String, _ b: String, tolerance: Double) throws -> (share: Double, worst: Double, name: String, identical: Double) {
        let (x, y) = (try SafeTensors(path: a), try SafeTensors(path: b))
        #expect(x.names.sorted() == y.names.sorted())
        var (over, total, worst, worstName, identical) = (0, 0, 0.0, "", 0)
        for name in x.names {
            let (u, v) = (try x.tensor(name).floats, try y.tensor(name).floats)
            let scale = Double(u.map(abs).max() ?? 0)
            let relative = zip(u, v).map { Double(abs($0 - $1)) / (scale > 0 ? scale : 1) }
            over += relative.filter { $0 > tolerance }.count
            identical += zip(u, v).filter { $0.bitPattern == $1.bitPattern }.count
            total += u.count
            if let m = relative.max(), m > worst { (worst, worstName) = (m, name) }
        }
        return (Double(over) / Double(max(total, 1)), worst, worstName, Double(identical) / Double(max(total, 1)))
    }

    func records(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// The ranks' gradients are the same sums added in another order (each rank sums its half of the batch, then
    /// the halves are added), so they differ from one process's in the last bits: the losses and gradient norms of
    /// every step agree to 1e-5 (relative). AdamW then moves an element by about `lr * sign(g)` whatever the size
    /// of its gradient, so an element whose gradient is round-off noise (a bias just before a GroupNorm of
    /// one-channel groups has a gradient that is zero in exact arithmetic) moves by up to `lr` differently in each
    /// run: measured after 5 steps, 0.09% of the tiny VQGAN's elements and 0.001% of a 4.4M-parameter denoiser's
    /// differ by more than 1e-5 of their tensor's largest value (up to 2e-3 of it for the VQGAN at lr 1e-3). With the
    /// convolutions on Paella's implicit GEMM and OpenBLAS (whose sums depend on its thread count) doing the rest, as
    /// in release builds, the VQGAN's share was 0.54% (under 0.5% with either GEMM alone), its worst element 9e-3 of
    /// its tensor's largest value. A wrong split of the batch, its noise or the gradient's scale changes the
    /// losses and most elements.
    static let tolerance = 1e-5
    static let allowedShare = 0.01

    /// Compares the per-step records (loss and gradient norm) of a one-process run and a two-rank run.
    func expectSameSteps(_ one: [[String: Any]], _ two: [[String: Any]], normKey: String) {
        #expect(one.count == two.count)
        for (a, b) in zip(one, two) {
            for key in ["loss", normKey] {
                let (x, y) = (a[key] as? Double ?? 0, b[key] as? Double ?? .nan)
                #expect(abs(x - y) <= Self.tolerance * abs(x), "step \(a["step"] ?? "?"): \(key) \(x) in one process, \(y) in two ranks")
            }
        }
    }

    /// Runs `paella` with `arguments` once as one process (output `work/one`) and once as two ranks (`work/two`;
    /// or as `ranks` ranks), expects both to succeed, and returns the two runs' records of `log` (a JSONL file in
    /// each output folder).
    func oneProcessAndTwoRanks(_ arguments: [String], log: String, ranks: Int = 2) throws -> (single: [[String: Any]], parallel: [[String: Any]]) {
        let one = try PaellaCLI.run(arguments + ["--output", work + "/one"], in: work)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try PaellaCLI.run(arguments + ["--output", work + "/two"], in: work, ranks: ranks)
        #expect(two.status == 0, "\(two.stdout)\n\(two.stderr)")
        #expect(two.stdout.contains("Data-parallel over \(ranks) processes"), "\(two.stdout)")
        return (try records(work + "/one/" + log), try records(work + "/two/" + log))
    }

    func expectSameWeights(_ a: String, _ b: String) throws {
        let result = try Self.compare(a, b, tolerance: Self.tolerance)
        #expect(result.share <= Self.allowedShare,
                "\(result.share * 100)% of the elements differ by more than \(Self.tolerance) of their tensor's largest value (worst: \(result.name), \(result.worst))")
    }

    @Test func denoiserTwoRanksMatchOneProcess() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        func train(_ output: String, ranks: Int?) throws -> PaellaCLI.Output {
            try PaellaCLI.run(["train", "denoiser", "--model", model, "--data", data, "--output", work + "/" + output,
                               "--steps", "5", "--batch-size", "4", "--checkpoint-every", "5", "--log-every", "1",
                               "--threads", "1", "--seed", "7", "--samples", "0", "--image-size", "\(side)"],
                              in: work, ranks: ranks)
        }
        let one = try train("one", ranks: nil)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try train("two", ranks: 2)
        #expect(two.status == 0, "\(two.stdout)\n\(two.stderr)")
        #expect(two.stdout.contains("Data-parallel over 2 processes"), "\(two.stdout)")
        // Rank 0 alone logs: five records, each with the time its all-reduces took.
        let log = try records(work + "/two/train.jsonl")
        #expect(log.map { $0["step"] as? Int } == [0, 1, 2, 3, 4])
        #expect(log.allSatisfy { $0["allreduce_seconds"] is Double })
        let single = try records(work + "/one/train.jsonl")
        expectSameSteps(single, log, normKey: "grad_norm")
        #expect(single.map { $0["unconditional"] as? Bool } == log.map { $0["unconditional"] as? Bool })
        try expectSameWeights(work + "/one/denoiser.safetensors", work + "/two/denoiser.safetensors")
    }

    /// Gradient accumulation under two ranks: each batch is split over the ranks, the windows close together, and
    /// the run ends where one process's does.
    @Test func accumulationUnderTwoRanksMatchesOneProcess() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        let (single, parallel) = try oneProcessAndTwoRanks(
            ["train", "denoiser", "--model", model, "--data", data, "--steps", "3", "--accumulate", "2", "--batch-size", "4",
             "--checkpoint-every", "3", "--log-every", "1", "--threads", "1", "--seed", "7", "--samples", "0",
             "--image-size", "\(side)"], log: "train.jsonl")
        #expect(single.count == 6, "one record per batch: \(single.count)")
        #expect(single.map { $0["updated"] as? Bool } == [false, true, false, true, false, true])
        #expect(parallel.map { $0["updated"] as? Bool } == single.map { $0["updated"] as? Bool })
        expectSameSteps(single, parallel, normKey: "grad_norm")
        try expectSameWeights(work + "/one/denoiser.safetensors", work + "/two/denoiser.safetensors")
    }

    @Test func vqganTwoRanksMatchOneProcess() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        // Restarts every 2 steps: the dead codes are re-initialised from the whole batch's encoder outputs, which
        // the ranks gather.
        let (single, parallel) = try oneProcessAndTwoRanks(
            ["train", "vqgan", "--data", data, "--steps", "5", "--batch-size", "4", "--threads", "1", "--log-every", "1",
             "--checkpoint-every", "5", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4", "--codebook", "16",
             "--restart-window", "2", "--seed", "3"], log: "train-vqgan.jsonl")
        #expect(parallel.count == 5)
        expectSameSteps(single, parallel, normKey: "gradientNorm")
        for key in ["codesInBatch", "codesInWindow", "restarted"] {
            #expect(single.map { $0[key] as? Int } == parallel.map { $0[key] as? Int }, "\(key)")
        }
        try expectSameWeights(work + "/one/vqgan.safetensors", work + "/two/vqgan.safetensors")
    }

    /// CLIP's contrastive loss compares every image with every caption of the global batch: the ranks gather their
    /// embeddings, each backpropagates its own pairs, and the run ends where one process's does (shapes data with
    /// twins and the label head, so every part of the batch assembly is split too).
    @Test func clipTwoRanksMatchOneProcess() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let shapes = work + "/shapes"
        let made = try PaellaCLI.run(["dataset", "shapes", "--output", shapes, "--count", "16", "--seed", "2"], in: work)
        #expect(made.status == 0, "\(made.stderr)")
        let (single, parallel) = try oneProcessAndTwoRanks(
            ["train", "clip", "--data", shapes, "--steps", "5", "--batch-size", "8", "--embed-dim", "8", "--text-width", "16",
             "--text-layers", "1", "--text-heads", "2", "--vision-width", "16", "--vision-layers", "1", "--head-width", "8",
             "--patch", "16", "--threads", "1", "--log-every", "1", "--checkpoint-every", "5", "--twins", "0.5",
             "--label-weight", "0.1"], log: "train-clip.jsonl")
        #expect(parallel.count == 5)
        expectSameSteps(single, parallel, normKey: "gradientNorm")
        for key in ["imageToTextAccuracy", "textToImageAccuracy"] {
            #expect(single.map { $0[key] as? Double } == parallel.map { $0[key] as? Double }, "\(key)")
        }
        try expectSameWeights(work + "/one/clip.safetensors", work + "/two/clip.safetensors")
    }

    /// With `--exact-sums` both runs add every gradient in the same tree over the batch's images, so two ranks end
    /// with one process's weights bit for bit, and log the same losses and gradient norms to the last bit. (The
    /// issue asks for every element within 1e-5 of its tensor's largest value; the tree gives equality.)
    func expectExactlyEqualRuns(_ single: [[String: Any]], _ parallel: [[String: Any]], keys: [String], weights file: String) throws {
        #expect(single.count == parallel.count && single.count == 5)
        for (a, b) in zip(single, parallel) {
            for key in keys {
                let (x, y) = (a[key] as? Double, b[key] as? Double)
                #expect(x != nil && x == y, "step \(a["step"] ?? "?"): \(key) \(x ?? .nan) in one process, \(y ?? .nan) in two ranks")
            }
        }
        let result = try Self.compare(work + "/one/" + file, work + "/two/" + file, tolerance: Self.tolerance)
        #expect(result.share == 0 && result.worst <= Self.tolerance,
                "\(result.share * 100)% of the elements differ by more than \(Self.tolerance) of their tensor's largest value (worst: \(result.name), \(result.worst))")
        #expect(result.identical == 1, "\(result.identical * 100)% of the elements are bitwise equal (worst: \(result.name), \(result.worst))")
    }

    @Test func exactSumsDenoiserTwoRanksEqualOneProcess() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        let (single, parallel) = try oneProcessAndTwoRanks(
            ["train", "denoiser", "--model", model, "--data", data, "--steps", "5", "--batch-size", "4", "--checkpoint-every", "5",
             "--log-every", "1", "--threads", "1", "--seed", "7", "--samples", "0", "--image-size", "\(side)", "--exact-sums"],
            log: "train.jsonl")
        #expect(single.map { $0["unconditional"] as? Bool } == parallel.map { $0["unconditional"] as? Bool })
        try expectExactlyEqualRuns(single, parallel, keys: ["loss", "accuracy", "grad_norm"], weights: "denoiser.safetensors")
    }

    /// 32 channels in GroupNorm's 32 groups: the convolution biases before them have gradients that are zero in
    /// exact arithmetic, which AdamW turned into moves of about lr without the flag. Restarts every 2 steps. Two
    /// ranks add their sums with one all-reduce; four (one image each) gather them and add them in the tree.
    @Test(arguments: [2, 4]) func exactSumsVQGANRanksEqualOneProcess(ranks: Int) throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let (single, parallel) = try oneProcessAndTwoRanks(
            ["train", "vqgan", "--data", data, "--steps", "5", "--batch-size", "4", "--threads", "1", "--log-every", "1",
             "--checkpoint-every", "5", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4", "--codebook", "16",
             "--restart-window", "2", "--seed", "3", "--exact-sums"], log: "train-vqgan.jsonl", ranks: ranks)
        for key in ["codesInBatch", "codesInWindow", "restarted"] {
            #expect(single.map { $0[key] as? Int } == parallel.map { $0[key] as? Int }, "\(key)")
        }
        try expectExactlyEqualRuns(single, parallel, keys: ["loss", "reconstructionLoss", "quantizerLoss", "psnr", "gradientNorm"],
                                   weights: "vqgan.safetensors")
    }

    /// Three ranks cannot each hold a whole subtree of the batch's sum: --exact-sums refuses with one sentence.
    @Test func exactSumsRefusesRanksThatAreNotAPowerOfTwo() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let job = try PaellaCLI.run(["train", "vqgan", "--data", data, "--output", work + "/three", "--steps", "2", "--batch-size", "6",
                                     "--threads", "1", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4", "--codebook", "16",
                                     "--exact-sums"], in: work, ranks: 3)
        #expect(job.status != 0)
        #expect(job.stderr.contains("--exact-sums needs the number of processes to be a power of two that divides the batch"), "\(job.stderr)")
        #expect(job.stderr.contains("got 3 processes for a batch of 6"), "\(job.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work + "/three/trainer.json"))
    }

    /// Ranks started with different settings (here another learning rate) no longer hold the same weights: the
    /// weights' checksums, compared at the end of the run (and every 100 batches), stop the job before its last
    /// checkpoint with a message naming the rank.
    @Test func divergedRanksStopTheJob() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let common = ["train", "vqgan", "--data", data, "--output", work + "/diverged", "--steps", "3", "--batch-size", "2",
                      "--threads", "1", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4", "--codebook", "16"]
        let job = try PaellaCLI.run(eachRank: [common + ["--lr", "1e-3"], common + ["--lr", "2e-3"]], in: work)
        #expect(job.status != 0)
        #expect(job.stderr.contains("The weights of rank 1 differ from rank 0's after batch 3"), "\(job.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work + "/diverged/trainer.json"))
    }

    /// The processes whose parent is `parent`, with their environment.
    static func children(of parent: Int32) -> [(pid: Int32, environment: [String])] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> (pid: Int32, environment: [String])? in
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // Fields after the command name: state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == parent,
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { return nil }
            return (pid, environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/self/stat"), "needs /proc to find the ranks"))
    func killedRankEndsTheJobAndTheRunResumes() async throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let output = work + "/killed"
        let common = ["train", "vqgan", "--data", data, "--output", output, "--batch-size", "4", "--threads", "1",
                      "--log-every", "1", "--checkpoint-every", "2", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4",
                      "--codebook", "16"]
        let (job, _, stderr) = try PaellaCLI.start(common + ["--steps", "10000"], in: work, ranks: 2)
        // Wait for a checkpoint and a few more steps, then SIGKILL rank 1.
        let log = output + "/train-vqgan.jsonl"
        var waited = 0
        while ((try? records(log).count) ?? 0) < 5 && waited < 600 && job.isRunning {
            try await Task.sleep(nanoseconds: 200_000_000)
            waited += 1
        }
        try #require(job.isRunning && (try records(log).count) >= 5, "the job did not get to step 5")
        let rank1 = try #require(Self.children(of: job.processIdentifier).first { $0.environment.contains("OMPI_COMM_WORLD_RANK=1") })
        let killed = Date()
        kill(rank1.pid, SIGKILL)
        while job.isRunning && Date().timeIntervalSince(killed) < 60 { try await Task.sleep(nanoseconds: 100_000_000) }
        let seconds = Date().timeIntervalSince(killed)
        if job.isRunning { job.terminate() }
        #expect(seconds < 60, "the job still ran \(seconds) s after rank 1 was killed")
        job.waitUntilExit()
        #expect(job.terminationStatus != 0)
        let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("rank 1") && message.contains("signal 9"), "\(message)")
        // The last checkpoint is whole: one process resumes it (another rank count) and trains two more steps.
        let state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output + "/trainer.json"))) as? [String: Any])
        let step = try #require(state["step"] as? Int)
        #expect(step >= 2 && step % 2 == 0)
        let resumed = try PaellaCLI.run(common + ["--resume", "--stop-at", "\(step + 2)"], in: work)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try records(log).map { $0["step"] as? Int }.suffix(3) == [step - 1, step, step + 1])
    }
}
