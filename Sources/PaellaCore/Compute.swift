/// Where and how tensor operations run: the thread pool and the matrix-multiply backend. Passed explicitly
/// (layers keep a reference) so that nothing in the library depends on global state.
public final class Compute: Sendable {
    public let pool: ThreadPool
    public let gemm: GEMMBackend

    /// - Parameters:
    ///   - threads: worker threads, the caller included (default: the cores this process may use).
    ///   - backend: which matrix-multiply implementation to use (default: `PAELLA_BLAS` from the environment,
    ///     else the best one found).
    public init(threads: Int = ThreadPool.coreCount, backend: GEMMBackendChoice = .fromEnvironment) throws {
        pool = ThreadPool(threads: threads)
        gemm = try GEMMBackends.make(backend, threads: threads)
    }

    public init(pool: ThreadPool, gemm: GEMMBackend) {
        self.pool = pool
        self.gemm = gemm
    }
}

extension GEMMBackend {
    public var threadsItself: Bool { false }
}

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed
}

/// Row-major single-precision matrix multiply: `C = alpha * op(A) * op(B) + beta * C`, where op(A) is [m, k],
/// op(B) is [k, n] and C is [m, n]; `lda`, `ldb`, `ldc` are the row strides of the matrices as stored.
public protocol GEMMBackend: Sendable {
    /// Short name for logs and `paella info` ("openblas", "builtin", ...).
    var name: String { get }
    /// Longer description: library path, version, threading.
    var details: String { get }
    /// True when the backend runs its own threads and ignores the `pool` argument (a BLAS library). Callers
    /// should then not call it from several pool threads at once: OpenBLAS serialises concurrent callers, and its
    /// threads plus the pool's would oversubscribe the cores.
    var threadsItself: Bool { get }
    func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
               alpha: Float, a: UnsafePointer<Float>, lda: Int,
               b: UnsafePointer<Float>, ldb: Int,
               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
               pool: ThreadPool)
}
