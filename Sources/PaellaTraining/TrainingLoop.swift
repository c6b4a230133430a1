// The loop every trainer runs (denoiser, VQGAN, CLIP): steps until the end, a JSONL record per step, progress
// lines, checkpoints at a period and at the end; a resumed run first drops the records of the steps it repeats.
// Data-parallel, every rank runs the loop and rank 0 alone keeps the log, prints and saves.
import Foundation
import PaellaIO

/// Runs training steps and keeps the log and checkpoints; what a step does and what a checkpoint writes are the
/// caller's.
public struct TrainingLoop: Sendable {
    /// The run's folder: the log goes there.
    public var output: String
    /// The JSONL log's file name inside `output`.
    public var logFile: String
    /// The step to stop after (the schedule's end, or earlier).
    public var end: Int
    /// A progress line every `logEvery` steps and at the end.
    public var logEvery: Int
    /// A checkpoint every `checkpointEvery` steps and at the end.
    public var checkpointEvery: Int
    /// The ranks running this loop together (one process by default).
    public var parallel: DataParallel
    /// Data-parallel: the ranks compare their weights every `agreementEvery` steps and at the end, and stop when
    /// one differs.
    public var agreementEvery: Int

    public init(output: String, logFile: String, end: Int, logEvery: Int, checkpointEvery: Int,
                parallel: DataParallel = .single, agreementEvery: Int = 100) {
        precondition(logEvery > 0 && checkpointEvery > 0 && agreementEvery > 0,
                     "TrainingLoop: logEvery, checkpointEvery and agreementEvery must be positive")
        self.output = output
        self.logFile = logFile
        self.end = end
        self.logEvery = logEvery
        self.checkpointEvery = checkpointEvery
        self.parallel = parallel
        self.agreementEvery = agreementEvery
    }

    /// `step()` until `currentStep()` reaches `end`. Each result is appended to the log with the seconds the step
    /// took; `progress(line, done)` runs after every step with `line(result, mean seconds per step since the
    /// last printed line)` and `printed` true every `logEvery` steps; `save()` runs every `checkpointEvery` steps
    /// and at the end. Data-parallel, only rank 0 logs, calls `progress` and `save`, and the ranks compare
    /// `weights()` every `agreementEvery` steps and at the end.
    public func run<Result: Encodable>(currentStep: () -> Int, step: () async throws -> Result,
                                       line: (Result, Double) -> String,
                                       progress: (_ line: String, _ printed: Bool) -> Void,
                                       weights: () -> TrainableParameters,
                                       save: () async throws -> Void) async throws {
        var log: JSONLines? = nil
        if parallel.isMain {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            AtomicFile.removeAbandonedTemporaries(in: output)  // a killed run's torn writes
            let path = (output as NSString).appendingPathComponent(logFile)
            try JSONLines.keepRecords(before: currentStep(), in: path)  // steps after the checkpoint run again
            log = try JSONLines(path: path)
        }
        var recent: [Double] = []
        while currentStep() < end {
            let start = Date(), reducing = parallel.allreduceSeconds
            let result = try await step()
            let seconds = Date().timeIntervalSince(start)
            let allreduce = parallel.size > 1 ? parallel.allreduceSeconds - reducing : nil
            try log?.append(TimedRecord(result: result, seconds: seconds, allreduceSeconds: allreduce))
            recent.append(seconds)
            let now = currentStep()
            if now % agreementEvery == 0 || now == end { try parallel.checkAgreement(weights(), step: now) }
            let printed = now % logEvery == 0 || now == end
            if parallel.isMain { progress(line(result, recent.reduce(0, +) / Double(recent.count)), printed) }
            if printed { recent.removeAll() }
            if parallel.isMain && (now % checkpointEvery == 0 || now == end) { try await save() }
        }
    }
}

/// A step's result with the wall time it took (and, data-parallel, the part of it spent in all-reduces), as one
/// JSON object.
struct TimedRecord<Result: Encodable>: Encodable {
    var result: Result
    var seconds: Double
    var allreduceSeconds: Double?

    enum CodingKeys: String, CodingKey { case seconds, allreduceSeconds = "allreduce_seconds" }

    func encode(to encoder: Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(seconds, forKey: .seconds)
        try c.encodeIfPresent(allreduceSeconds, forKey: .allreduceSeconds)
    }
}

/// Appends one JSON object per line to a file (created when missing), written through as each record comes.
public final class JSONLines {
    private let handle: FileHandle
    private let path: String
    private let encoder = JSONEncoder()

    public init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TrainingCheckpointError.unwritable(path: path)
        }
        self.handle = handle
        handle.seekToEndOfFile()
        encoder.outputFormatting = [.sortedKeys]
    }

    /// Drops the records of steps at or after `step` (their training is repeated when a run resumes from an
    /// earlier checkpoint than where it stopped), atomically.
    public static func keepRecords(before step: Int, in path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let recorded = record["step"] as? Int else { return false }
            return recorded < step
        }
        try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
    }

    /// Appends one record. A failed write (a full disk) throws one sentence; `FileHandle.write(_:)` would trap.
    public func append<T: Encodable>(_ record: T) throws {
        let line = try encoder.encode(record) + Data("\n".utf8)
        do { try handle.write(contentsOf: line) } catch {
            let code = (error as NSError).domain == NSPOSIXErrorDomain ? Int32((error as NSError).code) : EIO
            throw TrainingCheckpointError.logFailed(path: path, reason: String(cString: strerror(code)))
        }
    }

    deinit { try? handle.close() }
}
