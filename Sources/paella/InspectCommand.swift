import ArgumentParser
import Foundation
import Paella
import PaellaIO

/// `paella inspect FILE`: what a safetensors file or PyTorch checkpoint holds.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List the tensors of a safetensors file or PyTorch checkpoint (.pt, .pth, .bin, .ckpt).",
        discussion: "Prints name, dtype, shape and parameter count per tensor, then the totals. Refuses legacy or damaged files with one sentence saying why; nothing in the file is ever executed.")

    @Argument(help: "The checkpoint file.")
    var file: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Option(help: "Show only the first N tensors (the totals still count all of them).")
    var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be zero or more.") }
    }

    func run() throws {
        let report = try reportingErrors {
            try describingCheckpointErrors(file: file) { try CheckpointInspector.inspect(path: file) }
        }
        print(json ? report.json(limit: limit) : report.table(limit: limit))
    }
}

/// Runs `body`, which reads checkpoints, and rethrows its errors as one printable sentence: a pickle error
/// (which describes the stream, not the file) is prefixed with `file` when one is given, and characters a
/// terminal would act on are escaped, whatever part of the file they came from.
func describingCheckpointErrors<T>(file: String? = nil, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as PickleError {
        throw CheckpointFailure(description: terminalSafe(file.map { "\($0): \(error)" } ?? "\(error)"))
    } catch {
        throw CheckpointFailure(description: terminalSafe("\(error)"))
    }
}

private struct CheckpointFailure: Error, CustomStringConvertible {
    let description: String
}
