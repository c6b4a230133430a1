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
            do {
                return try CheckpointInspector.inspect(path: file)
            } catch let error as PickleError {
                // Pickle errors describe the stream, not the file; name the file for the user.
                throw InspectFailure(description: "\(file): \(error)")
            }
        }
        print(json ? report.json(limit: limit) : report.table(limit: limit))
    }
}

private struct InspectFailure: Error, CustomStringConvertible {
    let description: String
}
