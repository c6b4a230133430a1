import ArgumentParser
import Paella

/// `paella bench`: speed measurements. Each subcommand prints a table, or with `--json` one JSON object per
/// line (`BenchmarkReport`), so scripts can compare runs.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the speed of Paella's building blocks.",
        subcommands: [BenchGEMMCommand.self, BenchDenoiserCommand.self, BenchVQGANCommand.self, BenchCLIPCommand.self,
                      BenchTrainCommand.self])
}

/// `paella bench gemm`: GFLOP/s of each GEMM backend on the v1 denoiser's shapes.
struct BenchGEMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time matrix multiplies on the v1 denoiser's shapes for each GEMM backend.",
        discussion: """
            Backends: builtin, auto (the BLAS library PAELLA_BLAS or the search finds), openblas, mkl, blis, \
            accelerate, or a path to a CBLAS shared library. Without --backend, the built-in GEMM and the best \
            BLAS library found are both timed. Compare with a plain C cblas_sgemm call: bench/cblas-baseline.sh.
            """)

    @Option(name: .long, help: "GEMM backend to time (repeatable).")
    var backend: [String] = []

    @Option(name: .long, help: "Thread count (repeatable; default: the cores this process may use).")
    var threads: [Int] = []

    @Option(name: .long, help: "Timed repetitions per shape; the median is reported.")
    var repeats: Int = 10

    @Option(name: .long, help: "Untimed repetitions before timing.")
    var warmup: Int = 2

    @Flag(name: .customLong("all-layouts"), help: "Also time the NT, TN and TT transpose layouts.")
    var allLayouts = false

    @Flag(name: .long, help: "Print one JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1.") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative.") }
        guard threads.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads must be at least 1.") }
    }

    func run() throws {
        try reportingErrors { try runBenchmark() }
    }

    private func runBenchmark() throws {
        let shapes = allLayouts ? GEMMBenchmark.denoiserV1Shapes.flatMap(\.allLayouts) : GEMMBenchmark.denoiserV1Shapes
        let choices = try backend.map { try GEMMBackendChoice(parsing: $0) }
        try CPUInfo.applyEnvironment()  // PAELLA_ISA, also when --backend bypasses the environment
        if !json { print(CPUInfo.summary) }
        for threadCount in threads.isEmpty ? [ThreadPool.coreCount] : threads {
            let pool = ThreadPool(threads: threadCount)
            var backends: [GEMMBackend] = []
            if choices.isEmpty {
                backends.append(BuiltinGEMM())
                let best = try GEMMBackends.make(.fromEnvironment, threads: threadCount)
                if best.name != "builtin" { backends.append(best) }
            } else {
                backends = try choices.map { try GEMMBackends.make($0, threads: threadCount) }
            }
            if !json {
                for b in backends { print("\(b.name): \(b.details)") }
            }
            let rows = GEMMBenchmark.run(shapes: shapes, backends: backends, pool: pool, warmup: warmup, repeats: repeats)
            BenchmarkReport.print(rows, json: json)
            if !json { print("") }
        }
    }
}
