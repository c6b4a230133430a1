import ArgumentParser
import PaellaCore

/// `paella bench`: speed measurements. Each subcommand prints a table, or with `--json` one JSON object per
/// line (`BenchmarkReport`), so scripts can compare runs.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the speed of Paella's building blocks.",
        subcommands: [BenchGEMMCommand.self, BenchDenoiserCommand.self, BenchVQGANCommand.self, BenchCLIPCommand.self,
                      BenchTrainCommand.self, BenchTrainVQGANCommand.self, BenchGenerateCommand.self])
}

/// How many runs a bench command times by default: each command knows how long one of its runs takes (a GEMM is
/// short, a training step long), and `BenchOptions` shows its numbers in `--help`.
protocol BenchDefaults {
    static var repeats: Int { get }
    static var warmup: Int { get }
}

/// Options every `paella bench` subcommand shares: timed and untimed runs, table or JSON lines, and the one way
/// they time a piece of work.
struct BenchOptions<Defaults: BenchDefaults>: ParsableArguments {
    @Option(help: "Timed repetitions; the median is reported.")
    var repeats: Int = Defaults.repeats

    @Option(help: "Untimed repetitions before timing.")
    var warmup: Int = Defaults.warmup

    @Flag(help: "Print one JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1.") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative.") }
    }

    /// Median and fastest milliseconds of `repeats` timed runs of `body` after `warmup` untimed ones (on a shared
    /// machine the fastest run shows the speed without interference).
    func time(_ body: () throws -> Void) rethrows -> (median: Double, fastest: Double) {
        let clock = ContinuousClock()
        for _ in 0..<warmup { try body() }
        let times = try (0..<repeats).map { _ in
            let start = clock.now
            try body()
            return milliseconds(clock.now - start)
        }
        return Self.summary(times)
    }

    /// `time` for work that awaits (a whole pipeline request).
    func time(_ body: () async throws -> Void) async rethrows -> (median: Double, fastest: Double) {
        let clock = ContinuousClock()
        for _ in 0..<warmup { try await body() }
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = clock.now
            try await body()
            times.append(milliseconds(clock.now - start))
        }
        return Self.summary(times)
    }

    private static func summary(_ times: [Double]) -> (median: Double, fastest: Double) {
        let sorted = times.sorted()
        return (sorted[sorted.count / 2], sorted[0])
    }
}

/// A duration in milliseconds.
func milliseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) * 1e-15
}

/// `paella bench gemm`: GFLOP/s of each GEMM backend on the v1 denoiser's shapes.
struct BenchGEMMCommand: ParsableCommand, BenchDefaults {
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

    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 10, warmup = 2  // the default --repeats and --warmup, per shape

    @Flag(name: .customLong("all-layouts"), help: "Also time the NT, TN and TT transpose layouts.")
    var allLayouts = false

    func validate() throws {
        guard threads.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads must be at least 1.") }
    }

    func run() throws {
        try reportingErrors { try runBenchmark() }
    }

    private func runBenchmark() throws {
        let shapes = allLayouts ? GEMMBenchmark.denoiserV1Shapes.flatMap(\.allLayouts) : GEMMBenchmark.denoiserV1Shapes
        let choices = try backend.map { try GEMMBackendChoice(parsing: $0) }
        try CPUInfo.applyEnvironment()  // PAELLA_ISA, also when --backend bypasses the environment
        if !bench.json { print(CPUInfo.summary) }
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
            if !bench.json {
                for b in backends { print("\(b.name): \(b.details)") }
            }
            let rows = GEMMBenchmark.run(shapes: shapes, backends: backends, pool: pool, warmup: bench.warmup,
                                        repeats: bench.repeats)
            BenchmarkReport.print(rows, json: bench.json)
            if !bench.json { print("") }
        }
    }
}
