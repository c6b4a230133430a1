/// Which GEMM backend to use.
public enum GEMMBackendChoice: Sendable, Equatable {
    /// `PAELLA_BLAS` from the environment, else `.automatic`.
    case fromEnvironment
    /// The best available: Accelerate, else a BLAS library found at run time, else the built-in GEMM.
    case automatic
    /// The built-in GEMM.
    case builtin
    /// A BLAS library by family name ("openblas", "mkl", "blis") or by path to the shared library.
    case library(String)
}

public enum GEMMBackends {
    /// Creates the backend for `choice`.
    public static func make(_ choice: GEMMBackendChoice, threads: Int) throws -> GEMMBackend {
        ReferenceGEMM()
    }
}

/// The textbook triple loop, the twin every faster GEMM is tested against.
public struct ReferenceGEMM: GEMMBackend {
    public init() {}
    public var name: String { "reference" }
    public var details: String { "naive triple loop (for tests)" }
    public func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                      pool: ThreadPool) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k {
                    let av = transA == .none ? a[i * lda + p] : a[p * lda + i]
                    let bv = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                    sum += Double(av) * Double(bv)
                }
                let prior = beta == 0 ? 0 : beta * c[i * ldc + j]  // beta 0 ignores NaN in C, as BLAS does
                c[i * ldc + j] = alpha * Float(sum) + prior
            }
        }
    }
}
