import ArgumentParser
import Paella

/// `paella info`: what this machine gives Paella (BLAS backend, CPU features, threads).
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the GEMM backend, the CPU features in use and the thread count.")

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        try reportingErrors {
            let ctx = try compute.makeCompute()
            let rows: [(String, String)] = [
                ("paella", PaellaVersion.string),
                ("threads", "\(ctx.pool.threadCount) (cores available: \(ThreadPool.coreCount))"),
                ("gemm backend", ctx.gemm.name),
                ("gemm details", ctx.gemm.details),
                ("cpu features", CPUInfo.summary),
            ]
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows {
                print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
            }
        }
    }
}
