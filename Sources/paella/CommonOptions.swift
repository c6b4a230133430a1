import ArgumentParser
import Foundation
import Paella
import PaellaCore

/// Options every computing command shares: how many threads and which GEMM backend.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Worker threads, the calling thread included (default: the cores this process may use).")
    var threads: Int?

    @Option(help: ArgumentHelp(
        "GEMM backend: auto, builtin, openblas, mkl, blis, accelerate, or a path to a BLAS shared library.",
        discussion: "Overrides the PAELLA_BLAS environment variable."))
    var blas: String?

    func validate() throws {
        do { _ = try RequestLimits.usableThreads(threads) } catch { throw ValidationError("\(error)") }
    }

    /// The compute context these options describe; more threads than cores are clamped with a note on stderr.
    func makeCompute() throws -> Compute {
        let choice: GEMMBackendChoice = try blas.map(GEMMBackendChoice.init(parsing:)) ?? .fromEnvironment
        let (count, note) = try RequestLimits.usableThreads(threads)
        if let note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        return try Compute(threads: count, backend: choice)
    }
}

/// Parses an image size in pixels, "256" or "384x256" (width x height): the `--size` of the generation and bench
/// commands. Only the form is checked here (positive pixels); the pipeline bounds the values (`Pipeline.validate`).
func parseSize(_ text: String?) throws -> (width: Int, height: Int)? {
    guard let text else { return nil }
    let parts = text.lowercased().split(separator: "x").map { Int(String($0)) }
    guard (1...2).contains(parts.count), parts.allSatisfy({ ($0 ?? 0) > 0 }), let w = parts[0], let h = parts.last ?? nil else {
        throw ValidationError("--size takes pixels as N or WIDTHxHEIGHT, e.g. 256 or 384x256, got '\(text)'.")
    }
    return (w, h)
}

/// Runs `body`; an error a user can hit is printed as its one-sentence description on stderr and the command
/// exits with status 1 (no stack trace).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw reported(error) }
}

/// `reportingErrors` for async work.
func reportingErrorsAsync<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch { throw reported(error) }
}

/// What `reportingErrors` throws for `error`: an `ExitCode` as it is; anything else is printed on stderr as
/// "error: <its description>" and becomes exit status 1.
private func reported(_ error: Error) -> Error {
    if error is ExitCode { return error }
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    return ExitCode.failure
}
