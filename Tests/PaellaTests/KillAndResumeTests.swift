import Foundation
import PaellaCore
import PaellaTestSupport
import Testing

/// Crash safety of training: a run killed with SIGKILL at 20 moments, half of them at random times and half in
/// the middle of a file write (a torn temporary file, through `PAELLA_FAULT_KILL_IN_WRITE`), resumes every time
/// from its last complete checkpoint, never loses more than one checkpoint interval, never loads a torn file,
/// leaves no temporary files behind, and ends with the same weights, byte for byte, as a run never stopped.
@Suite("Kill and resume", .serialized)
struct KillAndResumeTests {
    static let steps = 60, checkpointEvery = 3, kills = 20

    let work: String
    let data: String

    init() throws {
        (work, data) = try Fixtures.squarePicturesWorkspace()
    }

    func arguments(_ output: String, resume: Bool) -> [String] {
        ["train", "vqgan", "--data", data, "--output", output, "--steps", "\(Self.steps)", "--batch-size", "2",
         "--threads", "2", "--log-every", "1", "--checkpoint-every", "\(Self.checkpointEvery)", "--ch", "32",
         "--ch-mult", "1,2", "--embed-dim", "4", "--codebook", "8", "--restart-window", "2", "--seed", "3"]
            + (resume ? ["--resume"] : [])
    }

    /// The step of the run's last complete checkpoint (nil before the first), from `trainer.json`.
    func checkpointStep(_ output: String) throws -> Int? {
        guard let data = FileManager.default.contents(atPath: output + "/trainer.json") else { return nil }
        let state = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(state["step"] as? Int)
    }

    /// Batches the log records as trained (each record's `step` counts from 0; a torn last line is not counted).
    func loggedSteps(_ output: String) -> Int {
        guard let text = try? String(contentsOfFile: output + "/train-vqgan.jsonl", encoding: .utf8) else { return 0 }
        return text.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["step"] as? Int
        }.map { $0 + 1 }.max() ?? 0
    }

    func temporaries(_ output: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).filter { $0.contains(".tmp-") }
    }

    @Test func killedTwentyTimesResumesToTheSameWeights() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let reference = work + "/reference", output = work + "/killed"
        let whole = try PaellaCLI.run(arguments(reference, resume: false), in: work)
        try #require(whole.status == 0, "\(whole.stderr)")

        var random = SplitMix64(seed: 2026)
        var previousCheckpoint = 0, killedInWrite = 0, killedAtRandom = 0
        for round in 0..<Self.kills {
            let resume = try checkpointStep(output) != nil
            let before = loggedSteps(output)
            let started: (process: Process, stdout: Pipe, stderr: Pipe)
            if round % 2 == 0 {
                // Dies in its n-th atomic write: on resuming, n = 1 is the log's rewrite, then five per checkpoint
                // (weights, optimizer, trainer.json, the model file and its config).
                let write = 1 + Int(random.next() % 7)
                started = try PaellaCLI.start(arguments(output, resume: resume), in: work,
                                              environment: ["PAELLA_FAULT_KILL_IN_WRITE": "\(write)"])
            } else {
                started = try PaellaCLI.start(arguments(output, resume: resume), in: work)
                // Up to three more batches logged, then a random part of a batch's time.
                let target = before + Int(random.next() % 4)
                let deadline = Date().addingTimeInterval(60)
                while started.process.isRunning && loggedSteps(output) < target && Date() < deadline { usleep(2_000) }
                usleep(useconds_t(random.next() % 150_000))
                kill(started.process.processIdentifier, SIGKILL)
            }
            started.process.waitUntilExit()
            let stderr = String(decoding: started.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            _ = started.stdout.fileHandleForReading.readDataToEndOfFile()
            let killed = started.process.terminationReason == .uncaughtSignal && started.process.terminationStatus == SIGKILL
            try #require(killed, "run \(round) was not killed: status \(started.process.terminationStatus), \(stderr)")
            if round % 2 == 0 { killedInWrite += 1 } else { killedAtRandom += 1 }

            // The last complete checkpoint never goes back, and the batches lost are at most one interval.
            let checkpoint = try checkpointStep(output) ?? 0
            #expect(checkpoint >= previousCheckpoint, "kill \(round): checkpoint went back from \(previousCheckpoint) to \(checkpoint)")
            #expect(loggedSteps(output) - checkpoint <= Self.checkpointEvery,
                    "kill \(round): \(loggedSteps(output)) batches logged but the last checkpoint is at \(checkpoint)")
            previousCheckpoint = checkpoint
        }
        #expect(killedInWrite == Self.kills / 2 && killedAtRandom == Self.kills / 2)
        #expect(previousCheckpoint < Self.steps, "the run finished before the last kill; the kills did not interrupt it")

        let rest = try PaellaCLI.run(arguments(output, resume: try checkpointStep(output) != nil), in: work)
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(temporaries(output).isEmpty, "left behind: \(temporaries(output))")
        #expect(loggedSteps(output) == Self.steps)
        let a = FileManager.default.contents(atPath: reference + "/vqgan.safetensors")
        let b = FileManager.default.contents(atPath: output + "/vqgan.safetensors")
        #expect(a != nil && a == b, "the weights after 20 kills differ from the uninterrupted run's")
    }
}
