#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPaellaKernels

/// Which GEMM backend to use.
public enum GEMMBackendChoice: Sendable, Equatable, CustomStringConvertible {
    /// `PAELLA_BLAS` from the environment, else `.automatic`.
    case fromEnvironment
    /// The best available: Accelerate, else a BLAS library found at run time, else the built-in GEMM.
    case automatic
    /// The built-in GEMM.
    case builtin
    /// A BLAS library by family name ("openblas", "mkl", "blis", "accelerate") or by path to the shared library.
    case library(String)

    /// The library families that can be named instead of a path.
    public static let libraryFamilies = ["openblas", "mkl", "blis", "accelerate"]

    /// Parses the spelling used by `PAELLA_BLAS` and `--backend`: `auto`, `builtin`, `openblas`, `mkl`, `blis`,
    /// `accelerate`, or a path to a shared library (anything containing "/" or ending in .so, .so.N or .dylib).
    public init(parsing text: String) throws {
        let word = text.trimmingWhitespace()
        let lower = word.lowercased()
        if lower.isEmpty || lower == "auto" || lower == "automatic" {
            self = .automatic
        } else if lower == "builtin" || lower == "built-in" {
            self = .builtin
        } else if Self.libraryFamilies.contains(lower) {
            self = .library(lower)
        } else if word.contains("/") || lower.hasSuffix(".so") || lower.contains(".so.") || lower.hasSuffix(".dylib") {
            self = .library(word)
        } else {
            throw ComputeSetupError.unknownBackend(text)
        }
    }

    /// The choice `PAELLA_BLAS` asks for (`.automatic` when unset or empty).
    public static func environmentChoice() throws -> GEMMBackendChoice {
        guard let value = environmentValue("PAELLA_BLAS") else { return .automatic }
        return try GEMMBackendChoice(parsing: value)
    }

    public var description: String {
        switch self {
        case .fromEnvironment: return "from environment"
        case .automatic: return "auto"
        case .builtin: return "builtin"
        case .library(let name): return name
        }
    }
}

/// A problem with how computation was configured (environment variables, flags): the backend or instruction
/// set asked for does not exist or cannot be loaded on this machine.
public enum ComputeSetupError: Error, CustomStringConvertible, Equatable {
    case unknownBackend(String)
    case libraryNotFound(family: String, tried: [String])
    case cannotLoad(path: String, reason: String)
    case missingSymbol(path: String, symbol: String)
    case notOnThisPlatform(String)
    case unknownISA(String)
    case isaNotSupported(requested: String, detected: String)

    public var description: String {
        switch self {
        case .unknownBackend(let text):
            return "Unknown GEMM backend '\(text)'; use auto, builtin, openblas, mkl, blis, accelerate or a path to a BLAS shared library."
        case .libraryNotFound(let family, let tried):
            return "No \(family) library could be loaded (tried \(tried.joined(separator: ", "))); install it, pass its path, or use builtin."
        case .cannotLoad(let path, let reason):
            return "Cannot load the BLAS library \(path) (\(reason)); check the path or use builtin."
        case .missingSymbol(let path, let symbol):
            return "The library \(path) has no \(symbol) function, so it is not a CBLAS library; pass another one or use builtin."
        case .notOnThisPlatform(let family):
            return "\(family) is only available on Apple platforms; use openblas, mkl, blis or builtin here."
        case .unknownISA(let text):
            return "Unknown instruction set '\(text)' in PAELLA_ISA; use avx512, avx2, neon or portable."
        case .isaNotSupported(let requested, let detected):
            return "This CPU cannot run \(requested) kernels (best available: \(detected)); set PAELLA_ISA to a lower level or unset it."
        }
    }
}

public enum GEMMBackends {
    /// Creates the backend for `choice`. `threads` is the Compute's thread count: the built-in GEMM takes its
    /// threads from the pool passed to each call, a BLAS library is told to use this many of its own.
    ///
    /// `.fromEnvironment` reads `PAELLA_BLAS` (see `GEMMBackendChoice(parsing:)`) and also applies
    /// `PAELLA_ISA` (see `CPUInfo.applyEnvironment()`). `.automatic` never fails: without a usable BLAS library
    /// it returns the built-in GEMM. A library asked for by name or path that cannot be loaded throws a
    /// `ComputeSetupError`.
    public static func make(_ choice: GEMMBackendChoice, threads: Int) throws -> GEMMBackend {
        precondition(threads >= 1, "GEMMBackends.make: need at least one thread, got \(threads)")
        switch choice {
        case .fromEnvironment:
            try CPUInfo.applyEnvironment()
            return try make(GEMMBackendChoice.environmentChoice(), threads: threads)
        case .builtin:
            return BuiltinGEMM()
        case .automatic:
            #if canImport(Accelerate)
            return AccelerateGEMM()
            #else
            for family in ["openblas", "mkl", "blis"] {
                if let library = try? BLASLibrary.load(family: family, threads: threads) { return library }
            }
            return BuiltinGEMM()
            #endif
        case .library(let name):
            if name == "accelerate" {
                #if canImport(Accelerate)
                return AccelerateGEMM()
                #else
                throw ComputeSetupError.notOnThisPlatform("Accelerate")
                #endif
            }
            if GEMMBackendChoice.libraryFamilies.contains(name) {
                return try BLASLibrary.load(family: name, threads: threads)
            }
            return try BLASLibrary.load(path: name, threads: threads)
        }
    }
}

/// The GEMM in this package (C target, `paella_gemm.h`): packed and cache-blocked with SIMD micro-kernels for
/// the active instruction set, parallel over the `ThreadPool` passed to each call. Always available.
public struct BuiltinGEMM: GEMMBackend {
    public init() {}
    public var name: String { "builtin" }

    public var details: String {
        var mr: Int32 = 0, nr: Int32 = 0
        pk_sgemm_micro_tile(&mr, &nr)
        return "cache-blocked GEMM in C, \(CPUInfo.activeISA) \(mr)x\(nr) micro-kernel, threads from the Compute pool"
    }

    public func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                      pool: ThreadPool) {
        checkGEMMArguments(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        if m == 0 || n == 0 { return }
        let parts = GEMMPartition(m: m, n: n, k: k, threads: pool.threadCount)
        let tA: Int32 = transA == .none ? 0 : 1, tB: Int32 = transB == .none ? 0 : 1
        if parts.count == 1 {
            pk_sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
            return
        }
        // One workspace per part, allocated once per call; every part packs its own slices of A and B.
        let stride = (parts.workspaceFloats + 15) / 16 * 16
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: stride * parts.count)
        defer { workspace.deallocate() }
        pool.parallelFor(parts.count) { index in
            let (rows, cols) = parts.part(index)
            // Rows r of op(A) start at a + r*lda (A as stored) or a + r (A transposed); likewise columns of op(B).
            let aPart = transA == .none ? a + rows.lowerBound * lda : a + rows.lowerBound
            let bPart = transB == .none ? b + cols.lowerBound : b + cols.lowerBound * ldb
            pk_sgemm(tA, tB, rows.count, cols.count, k, alpha, aPart, lda, bPart, ldb,
                     beta, c + rows.lowerBound * ldc + cols.lowerBound, ldc, workspace + index * stride)
        }
    }

    /// Batched form of `sgemm` for the built-in GEMM: with at least as many matrices as threads, each thread
    /// multiplies whole matrices (no splitting, one workspace per thread); otherwise each product is split.
    func sgemmBatched(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int, strideA: Int,
                      b: UnsafePointer<Float>, ldb: Int, strideB: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int,
                      batchCount: Int, pool: ThreadPool) {
        if batchCount < pool.threadCount || m == 0 || n == 0 {
            for i in 0..<batchCount {
                sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a + i * strideA, lda: lda,
                      b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc, pool: pool)
            }
            return
        }
        checkGEMMArguments(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        let tA: Int32 = transA == .none ? 0 : 1, tB: Int32 = transB == .none ? 0 : 1
        pool.parallelChunks(batchCount) { range in
            let workspace = UnsafeMutablePointer<Float>.allocate(capacity: max(1, pk_sgemm_workspace_floats(m, n, k)))
            defer { workspace.deallocate() }
            for i in range {
                pk_sgemm(tA, tB, m, n, k, alpha, a + i * strideA, lda, b + i * strideB, ldb,
                         beta, c + i * strideC, ldc, workspace)
            }
        }
    }
}

extension GEMMBackend {
    /// `batchCount` independent products `C_i = alpha * op(A_i) * op(B_i) + beta * C_i`, where matrix i of each
    /// operand starts `i * stride` floats after the first (attention multiplies one pair per head this way).
    public func sgemmBatched(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int, strideA: Int,
                             b: UnsafePointer<Float>, ldb: Int, strideB: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int,
                             batchCount: Int, pool: ThreadPool) {
        precondition(batchCount >= 0, "sgemmBatched: negative batch count \(batchCount)")
        if let builtin = self as? BuiltinGEMM {
            builtin.sgemmBatched(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, strideA: strideA,
                                 b: b, ldb: ldb, strideB: strideB, beta: beta, c: c, ldc: ldc, strideC: strideC,
                                 batchCount: batchCount, pool: pool)
            return
        }
        for i in 0..<batchCount {
            sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a + i * strideA, lda: lda,
                  b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc, pool: pool)
        }
    }
}

/// Checks the sizes and strides of a GEMM call (programmer errors, so preconditions).
func checkGEMMArguments(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                        lda: Int, ldb: Int, ldc: Int) {
    precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transA == .none ? k : m), "sgemm: lda \(lda) too small for op(A) [\(m), \(k)]")
    precondition(ldb >= max(1, transB == .none ? n : k), "sgemm: ldb \(ldb) too small for op(B) [\(k), \(n)]")
    precondition(ldc >= max(1, n), "sgemm: ldc \(ldc) too small for C [\(m), \(n)]")
}

/// How the built-in GEMM splits C between threads: a grid of `rowParts x columnParts` rectangles that the pool
/// hands out dynamically. Every rectangle packs its own rows of A and columns of B, so among the grids with a
/// given number of parts the one with the smallest half-perimeter (rows + columns per part, which is what gets
/// packed) wins: M = 64, N = 5120 splits the columns, M = 1024, N = 320 splits the rows.
///
/// Up to `partsPerThread` (2) parts per thread are made while parts stay large (`minimumRowsPerPart` rows or
/// `minimumColumnsPerPart` columns), so that on a shared machine a thread that loses its core for a while
/// leaves its remaining parts to the others instead of holding up the whole product; the extra packing this
/// costs is a few percent. Cuts fall on multiples of the micro-tile so few edge tiles arise.
struct GEMMPartition {
    let rowParts: Int, columnParts: Int
    let rowsPerPart: Int, columnsPerPart: Int
    let m: Int, n: Int
    let workspaceFloats: Int

    /// Products below this many multiply-adds run on one thread: waking the pool costs more than it saves.
    static let minimumParallelWork = 1 << 18
    static let partsPerThread = 2
    static let minimumRowsPerPart = 96
    static let minimumColumnsPerPart = 256

    var count: Int { rowParts * columnParts }

    init(m: Int, n: Int, k: Int, threads: Int) {
        self.m = m
        self.n = n
        var mr: Int32 = 0, nr: Int32 = 0
        pk_sgemm_micro_tile(&mr, &nr)
        var best = (rows: 1, cols: 1)
        if threads > 1 && m * n * k >= Self.minimumParallelWork {
            // Grids with exactly `threads * perThread` parts, so that every thread gets the same share when
            // none is disturbed; the finest split allowed is one micro-tile per part when one part per thread.
            search: for perThread in stride(from: Self.partsPerThread, through: 1, by: -1) {
                let target = threads * perThread
                let rowLimit = perThread == 1 ? (m + Int(mr) - 1) / Int(mr) : max(1, m / Self.minimumRowsPerPart)
                let columnLimit = perThread == 1 ? (n + Int(nr) - 1) / Int(nr) : max(1, n / Self.minimumColumnsPerPart)
                var bestPerimeter = Double.infinity
                for rows in 1...target where target % rows == 0 && rows <= rowLimit && target / rows <= columnLimit {
                    let perimeter = Double(m) / Double(rows) + Double(n) * Double(rows) / Double(target)
                    if perimeter < bestPerimeter {
                        bestPerimeter = perimeter
                        best = (rows, target / rows)
                    }
                }
                if bestPerimeter < .infinity { break search }
            }
            if best == (1, 1) {
                // Too small to give every thread a part of equal size: as many parts as fit, up to `threads`.
                let rowLimit = max(1, (m + Int(mr) - 1) / Int(mr))
                let columnLimit = max(1, (n + Int(nr) - 1) / Int(nr))
                best = rowLimit >= columnLimit ? (min(threads, rowLimit), 1) : (1, min(threads, columnLimit))
            }
        }
        func roundedChunk(_ total: Int, _ parts: Int, _ unit: Int) -> Int {
            let chunk = (total + parts - 1) / parts
            return min(total, (chunk + unit - 1) / unit * unit)
        }
        rowsPerPart = max(1, roundedChunk(m, best.rows, Int(mr)))
        columnsPerPart = max(1, roundedChunk(n, best.cols, Int(nr)))
        // Rounding up the chunk can leave a part empty; count only parts that start inside C.
        rowParts = max(1, (m + rowsPerPart - 1) / rowsPerPart)
        columnParts = max(1, (n + columnsPerPart - 1) / columnsPerPart)
        workspaceFloats = pk_sgemm_workspace_floats(min(m, rowsPerPart), min(n, columnsPerPart), k)
    }

    /// The rows and columns of C that part `index` computes.
    func part(_ index: Int) -> (rows: Range<Int>, columns: Range<Int>) {
        let r = index / columnParts, c = index % columnParts
        let rows = (r * rowsPerPart)..<min(m, (r + 1) * rowsPerPart)
        let cols = (c * columnsPerPart)..<min(n, (c + 1) * columnsPerPart)
        return (rows, cols)
    }
}

/// The CPU features the kernels use, for `paella info` and logs.
///
/// `PAELLA_ISA` (`avx512`, `avx2`, `neon` or `portable`) forces the kernels down to a lower instruction set
/// when a Compute is created from the environment; it is process-wide, like the CPU it describes, and applies to
/// Paella's own kernels (a BLAS library picks its own). A level the CPU lacks is an error, not a silent fallback.
public enum CPUInfo {
    /// The best instruction set this CPU supports ("avx512", "avx2", "neon" or "portable").
    public static var detectedISA: String { String(cString: pk_isa_name(pk_detected_isa())) }
    /// The instruction set the kernels use now.
    public static var activeISA: String { String(cString: pk_isa_name(pk_active_isa())) }
    /// Cores this process may run on.
    public static var coreCount: Int { Int(pk_available_cores()) }

    /// The bfloat16 GEMM's micro-kernel: "avx512-bf16" (the AVX512-BF16 instructions), "avx2" (float32 multiply-adds
    /// on the widened weights) or "portable".
    public static var bfloat16Kernel: String { String(cString: pk_bf16_kernel_name()) }

    /// One line such as "kernels: avx512 (CPU supports avx512), 2 cores, bf16 with avx512-bf16".
    public static var summary: String {
        let forced = pk_active_isa() == pk_detected_isa() ? "" : pk_thread_isa() >= 0 ? ", forced for this thread" : ", forced by PAELLA_ISA"
        return "kernels: \(activeISA) (CPU supports \(detectedISA)\(forced)), \(coreCount) cores, bf16 "
            + (bfloat16Kernel == "portable" ? "with the portable kernel" : "with \(bfloat16Kernel)")
    }

    /// Forces the kernels onto the named instruction set: the whole process's, or with `thisThreadOnly` those
    /// this thread runs (and the pool runs for it). Throws when the name is unknown or the CPU cannot run that level.
    public static func forceISA(_ name: String, thisThreadOnly: Bool = false) throws {
        let levels: [String: pk_isa] = ["avx512": PK_ISA_AVX512, "avx2": PK_ISA_AVX2,
                                        "neon": PK_ISA_NEON, "portable": PK_ISA_PORTABLE]
        guard let isa = levels[name.trimmingWhitespace().lowercased()] else {
            throw ComputeSetupError.unknownISA(name)
        }
        if thisThreadOnly {
            let previous = pk_set_thread_isa(Int32(isa.rawValue))
            if pk_active_isa() != isa {
                pk_set_thread_isa(previous)
                throw ComputeSetupError.isaNotSupported(requested: name, detected: detectedISA)
            }
        } else if pk_force_isa(isa) != isa {
            throw ComputeSetupError.isaNotSupported(requested: name, detected: detectedISA)
        }
    }

    /// Applies `PAELLA_ISA` when it is set and not empty.
    public static func applyEnvironment() throws {
        if let value = environmentValue("PAELLA_ISA") { try forceISA(value) }
    }
}

/// A non-empty environment variable, or nil.
func environmentValue(_ name: String) -> String? {
    guard let raw = getenv(name) else { return nil }
    let value = String(cString: raw)
    return value.isEmpty ? nil : value
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
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
