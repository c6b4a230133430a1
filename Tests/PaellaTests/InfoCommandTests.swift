import Foundation
import PaellaTestSupport
import Testing

/// `paella info` run as a user runs it.
@Suite(.enabled(if: PaellaCLI.executable != nil, "the paella executable is not built (run `swift build` first)"))
struct InfoCommandTests {
    /// The value of `key`'s row in `paella info`'s output.
    static func row(_ key: String, _ output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix(key + " ") }
            .map { $0.dropFirst(key.count).trimmingCharacters(in: .whitespaces) }
    }

    /// OpenBLAS told to use a core type without AVX-512 on a CPU that has it is flagged, with what to set; the
    /// AVX-512 core type, another backend or a CPU without AVX-512 get no warning.
    @Test func warnsWhenOpenBLASIsHeldBelowTheCPU() throws {
        for (coretype, slow) in [("Haswell", true), ("SkylakeX", false)] {
            let info = try PaellaCLI.run(["info", "--threads", "1"], environment: ["OPENBLAS_CORETYPE": coretype, "PAELLA_BLAS": nil])
            #expect(info.status == 0, "\(info.stderr)")
            let openBLAS = Self.row("gemm backend", info.stdout) == "openblas"
            let avx512 = Self.row("cpu features", info.stdout)?.hasPrefix("kernels: avx512") == true
            let warning = Self.row("gemm warning", info.stdout)
            if openBLAS && avx512 && slow {
                #expect(warning?.contains("OPENBLAS_CORETYPE=Haswell is set") == true && warning?.contains("SkylakeX") == true,
                        "\(info.stdout)")
            } else {
                #expect(warning == nil, "\(info.stdout)")
            }
        }
    }
}
