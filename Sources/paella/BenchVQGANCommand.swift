import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// `paella bench vqgan`: encode and decode time of the full f8/8192 VQGAN (random weights), with peak memory.
struct BenchVQGANCommand: ParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "vqgan",
        abstract: "Time VQGAN encode and decode (full ruDALL-E f8 preset, random weights).",
        discussion: """
            Each size is WIDTHxHEIGHT (multiples of 8). Peak memory is the process's resident-set high-water mark \
            during the timed runs (weights included), reset before each measurement where Linux allows it. \
            Compare with the same network in PyTorch: bench/pytorch/vqgan_bench.py.
            """)

    @Option(name: .long, help: "Thread count (repeatable; default: the cores this process may use).")
    var threads: [Int] = []

    @Option(name: .long, help: "Image size in pixels, N or WIDTHxHEIGHT, multiples of 8 (repeatable).")
    var size: [String] = ["256x256"]

    @OptionGroup var precisionOption: PrecisionOption

    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 5, warmup = 1  // the default --repeats and --warmup

    @Option(help: ArgumentHelp(
        "GEMM backend: auto, builtin, openblas, mkl, blis, accelerate, or a path to a BLAS shared library."))
    var blas: String?

    func validate() throws {
        guard threads.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads must be at least 1.") }
        for s in size {
            guard let (width, height) = try parseSize(s), width % 8 == 0, height % 8 == 0 else {
                throw ValidationError("--size \(s) is not a size in multiples of 8.")
            }
        }
    }

    func run() throws {
        try reportingErrors { try runBenchmark() }
    }

    private func runBenchmark() throws {
        let choice: GEMMBackendChoice = try blas.map(GEMMBackendChoice.init(parsing:)) ?? .fromEnvironment
        var rows: [BenchmarkRow] = []
        for threadCount in threads.isEmpty ? [ThreadPool.coreCount] : threads {
            let compute = try Compute(threads: threadCount, backend: choice)
            let vq = try VQGAN(config: .rudalleF8, weights: precisionOption.randomWeights(seed: 0, scale: 0.05),
                               compute: compute)
            for text in size {
                guard let (width, height) = try parseSize(text) else { continue }
                var random = SplitMix64(seed: 1)
                let image = Tensor((0..<(height * width * 3)).map { _ in random.unitFloat() }, shape: [1, height, width, 3])
                let tokens = try vq.encode(image)
                let encode = try measure { _ = try vq.encode(image) }
                let decode = try measure { _ = try vq.decode(tokens) }
                for (name, m) in [("vqgan encode", encode), ("vqgan decode", decode)] {
                    rows.append(BenchmarkRow(name: name, medianMs: m.wallMs, gflops: nil, backend: compute.gemm.name,
                                             threads: threadCount,
                                             extra: [("size", text), ("cpu_ms", String(format: "%.1f", m.cpuMs)),
                                                     ("peak_rss_mb", String(format: "%.1f", m.peakMB))]))
                }
            }
        }
        BenchmarkReport.print(rows, json: bench.json)
    }

    /// Median wall and process CPU milliseconds of `repeats` runs after `warmup` runs, and the peak resident
    /// memory in MB meanwhile. CPU time (all threads) is steadier than wall time on a loaded machine.
    private func measure(_ body: () throws -> Void) throws -> (wallMs: Double, cpuMs: Double, peakMB: Double) {
        for _ in 0..<bench.warmup { try body() }
        PeakMemory.reset()
        var wall: [Double] = [], cpu: [Double] = []
        for _ in 0..<bench.repeats {
            let (w0, c0) = (Self.milliseconds(CLOCK_MONOTONIC), Self.milliseconds(CLOCK_PROCESS_CPUTIME_ID))
            try body()
            wall.append(Self.milliseconds(CLOCK_MONOTONIC) - w0)
            cpu.append(Self.milliseconds(CLOCK_PROCESS_CPUTIME_ID) - c0)
        }
        func median(_ v: [Double]) -> Double {
            let s = v.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        return (median(wall), median(cpu), PeakMemory.megabytes())
    }

    private static func milliseconds(_ clock: clockid_t) -> Double {
        var t = timespec()
        clock_gettime(clock, &t)
        return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) * 1e-6
    }
}

/// The process's peak resident memory: Linux `VmHWM` (resettable through /proc/self/clear_refs), else getrusage.
enum PeakMemory {
    static func reset() {
        if let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            handle.write(Data("5".utf8))
            try? handle.close()
        }
    }

    static func megabytes() -> Double {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kb = Double(line.split(separator: " ").dropFirst().first ?? "") {
            return kb / 1024
        }
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024  // kilobytes
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Double(usage.ru_maxrss) / 1_048_576  // bytes
        #endif
    }
}
