import ArgumentParser
import Foundation
import Paella

/// Options every computing command shares: how many threads and which GEMM backend.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Worker threads, the calling thread included (default: the cores this process may use).")
    var threads: Int?

    @Option(help: ArgumentHelp(
        "GEMM backend: auto, builtin, openblas, mkl, blis, accelerate, or a path to a BLAS shared library.",
        discussion: "Overrides the PAELLA_BLAS environment variable."))
    var blas: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads).") }
    }

    /// The compute context these options describe.
    func makeCompute() throws -> Compute {
        let choice: GEMMBackendChoice = try blas.map(GEMMBackendChoice.init(parsing:)) ?? .fromEnvironment
        return try Compute(threads: threads ?? ThreadPool.coreCount, backend: choice)
    }
}

/// Runs `body`; an error a user can hit is printed as its one-sentence description on stderr and the command
/// exits with status 1 (no stack trace).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// `reportingErrors` for async work.
func reportingErrorsAsync<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
