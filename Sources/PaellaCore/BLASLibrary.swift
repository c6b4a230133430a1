#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(Accelerate)
import Accelerate
#endif
import CPaellaKernels

/// A CBLAS library loaded at run time with `dlopen` (OpenBLAS, MKL, BLIS or any library exporting
/// `cblas_sgemm`), so the package builds without one and gets fast when one is installed.
///
/// The library runs its own threads: it is told the Compute's thread count when loaded and ignores the
/// `ThreadPool` passed to `sgemm`. That setting lives inside the library, so it is process-wide: the last
/// backend loaded for a library decides its thread count.
///
/// Two OpenBLAS settings are read from the environment when the library loads, and Paella sets them first
/// when they are unset (set them yourself to choose otherwise):
/// - `OPENBLAS_CORETYPE=SkylakeX` on a CPU with AVX-512: releases older than the CPU misdetect it (0.3.21 takes
///   a Sapphire/Emerald Rapids Xeon for a "Prescott" and runs SSE3 kernels, 5x slower); every AVX-512 OpenBLAS
///   target uses the SkylakeX sgemm kernels.
/// - `OPENBLAS_THREAD_TIMEOUT=18`: after a call, OpenBLAS's idle threads busy-wait for 2^N cycles (default
///   2^28, about 0.1 s) before sleeping, competing for the cores with the thread pool that runs the next
///   layer's ops (on a busy 2-core machine the built-in GEMM run right after OpenBLAS calls sometimes ran at
///   half speed; with a short timeout it did not). 2^18 cycles, about 0.1 ms, still keeps them awake between
///   back-to-back GEMMs.
public struct BLASLibrary: GEMMBackend {
    /// The library runs its own threads (set to the Compute's thread count at load).
    public var threadsItself: Bool { true }
    /// The family found from the library's own symbols: "openblas", "mkl", "blis", or "cblas" when unknown.
    public let name: String
    public let details: String
    /// Set when the library runs slower kernels than this CPU allows, saying what to change (`paella info`
    /// prints it): OpenBLAS told (by OPENBLAS_CORETYPE, which some machine images preset) to use a core type
    /// without AVX-512 on a CPU that has it. Measured on a 2-core AMD EPYC with AVX-512: sgemm on the v1
    /// denoiser's shapes 1.3-1.8x faster with SkylakeX than with Haswell kernels.
    public let warning: String?
    /// The file the library was loaded from.
    public let path: String
    /// Threads the library was asked to use.
    public let threads: Int
    private let sgemmFunction: CBLASSgemm

    // void cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) with the LP64
    // interface: enums and integer arguments are 32-bit ints.
    typealias CBLASSgemm = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                           UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
                                           Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private static let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112

    /// File names and paths tried, in order, for each family. Bare names go through the dynamic linker's
    /// search path; the full paths cover Debian/Ubuntu's alternatives layout and common install prefixes.
    public static func candidates(family: String) -> [String] {
        #if arch(x86_64)
        let multiarch = "/usr/lib/x86_64-linux-gnu"
        let mklArch = "intel64"
        #else
        let multiarch = "/usr/lib/aarch64-linux-gnu"
        let mklArch = "aarch64"
        #endif
        switch family {
        case "openblas":
            return ["libopenblas.so.0", "libopenblas.so",
                    "\(multiarch)/openblas-pthread/libopenblas.so.0", "\(multiarch)/openblas-openmp/libopenblas.so.0",
                    "\(multiarch)/openblas-serial/libopenblas.so.0",
                    "libopenblasp.so.0", "libopenblaso.so.0",  // Fedora's pthread and OpenMP builds
                    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib", "/usr/local/opt/openblas/lib/libopenblas.dylib"]
        case "mkl":
            return ["libmkl_rt.so.2", "libmkl_rt.so", "libmkl_rt.so.1",
                    "/opt/intel/oneapi/mkl/latest/lib/\(mklArch)/libmkl_rt.so.2", "/opt/intel/oneapi/mkl/latest/lib/libmkl_rt.so.2"]
        case "blis":
            return ["libblis.so.4", "libblis.so.3", "libblis.so",
                    "\(multiarch)/blis-pthread/libblis.so.4", "\(multiarch)/blis-openmp/libblis.so.4",
                    "\(multiarch)/blis-serial/libblis.so.4", "libblis-mt.so.4"]
        default:
            return []
        }
    }

    /// Loads the first library of `family` ("openblas", "mkl", "blis") that opens and exports `cblas_sgemm`.
    public static func load(family: String, threads: Int) throws -> BLASLibrary {
        let tried = candidates(family: family)
        precondition(!tried.isEmpty, "BLASLibrary.load: unknown family \(family)")
        for candidate in tried {
            if let library = try? load(path: candidate, threads: threads) { return library }
        }
        throw ComputeSetupError.libraryNotFound(family: family, tried: tried)
    }

    /// Loads the library at `path` (a bare file name goes through the dynamic linker's search path).
    public static func load(path: String, threads: Int) throws -> BLASLibrary {
        precondition(threads >= 1, "BLASLibrary.load: need at least one thread, got \(threads)")
        preferOpenBLASSettings()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            throw ComputeSetupError.cannotLoad(path: path, reason: reason)
        }
        // The handle is never closed: the backend's function pointers stay valid for the life of the process.
        guard let symbol = dlsym(handle, "cblas_sgemm") else {
            dlclose(handle)
            throw ComputeSetupError.missingSymbol(path: path, symbol: "cblas_sgemm")
        }
        return BLASLibrary(handle: handle, sgemm: unsafeBitCast(symbol, to: CBLASSgemm.self),
                           requestedPath: path, threads: threads)
    }

    private init(handle: UnsafeMutableRawPointer, sgemm: CBLASSgemm, requestedPath: String, threads: Int) {
        sgemmFunction = sgemm
        self.threads = threads
        path = Self.loadedPath(of: sgemm) ?? requestedPath
        func function<T>(_ name: String, _ type: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: type) }
        }
        typealias GetString = @convention(c) () -> UnsafePointer<CChar>?
        typealias GetInt = @convention(c) () -> Int32
        typealias SetInt = @convention(c) (Int32) -> Void
        typealias SetInt64 = @convention(c) (Int64) -> Void
        typealias MKLVersion = @convention(c) (UnsafeMutablePointer<CChar>?, Int32) -> Void

        var family = "cblas"
        var about = "CBLAS library"
        var warning: String?
        if let config = function("openblas_get_config", GetString.self) {
            family = "openblas"
            function("openblas_set_num_threads", SetInt.self)?(Int32(clamping: threads))
            about = config().map { String(cString: $0) } ?? "OpenBLAS"
            if let core = function("openblas_get_corename", GetString.self)?().map({ String(cString: $0) }) {
                about += ", core \(core)"
                #if arch(x86_64)
                let avx512Cores = ["skylakex", "cooperlake", "sapphirerapids"]
                if pk_detected_isa() == PK_ISA_AVX512, !avx512Cores.contains(core.lowercased()) {
                    warning = "OpenBLAS runs its \(core) kernels on this AVX-512 CPU"
                        + (environmentValue("OPENBLAS_CORETYPE").map { " because OPENBLAS_CORETYPE=\($0) is set" } ?? "")
                        + "; set OPENBLAS_CORETYPE=SkylakeX (or unset it) for faster matrix multiplies."
                }
                #endif
            }
            if let parallel = function("openblas_get_parallel", GetInt.self)?() {
                about += [", single-threaded build", ", pthreads", ", OpenMP"][Int(min(max(parallel, 0), 2))]
            }
            if let n = function("openblas_get_num_threads", GetInt.self)?() { about += ", \(n) threads" }
            for setting in ["OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT"] {
                if let value = environmentValue(setting) { about += ", \(setting)=\(value)" }
            }
        } else if let version = function("MKL_Get_Version_String", MKLVersion.self) {
            family = "mkl"
            function("MKL_Set_Num_Threads", SetInt.self)?(Int32(clamping: threads))
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: 256)
            defer { buffer.deallocate() }
            buffer.initialize(repeating: 0, count: 256)
            version(buffer, 255)
            about = String(cString: buffer) + ", \(threads) threads"
        } else if let version = function("bli_info_get_version_str", GetString.self) {
            family = "blis"
            // dim_t, BLIS's integer type, is 64-bit in its default configuration.
            function("bli_thread_set_num_threads", SetInt64.self)?(Int64(threads))
            about = "BLIS " + (version().map { String(cString: $0) } ?? "") + ", \(threads) threads"
        }
        name = family
        details = "\(about) (\(path))"
        self.warning = warning
    }

    /// The file that defines `function`, as the dynamic linker reports it, with symbolic links resolved (so
    /// Debian's alternatives show which build, pthread or serial, is in use).
    private static func loadedPath(of function: CBLASSgemm) -> String? {
        guard let name = pk_gemm_library_path(unsafeBitCast(function, to: UnsafeRawPointer.self)) else { return nil }
        guard let resolved = realpath(name, nil) else { return String(cString: name) }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Sets OPENBLAS_CORETYPE and OPENBLAS_THREAD_TIMEOUT when unset (see the type's documentation). They only
    /// take effect for the first OpenBLAS the process loads, and are harmless for other libraries.
    private static func preferOpenBLASSettings() {
        #if arch(x86_64)
        if pk_detected_isa() == PK_ISA_AVX512 { setenv("OPENBLAS_CORETYPE", "SkylakeX", 0) }
        #endif
        setenv("OPENBLAS_THREAD_TIMEOUT", "18", 0)  // overwrite = 0: a value the user set wins
    }

    public func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                      pool: ThreadPool) {
        checkGEMMArguments(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        precondition(max(m, n, k, lda, ldb, ldc) <= Int(Int32.max), "sgemm: sizes beyond the 32-bit CBLAS interface")
        if m == 0 || n == 0 { return }
        sgemmFunction(Self.rowMajor, transA == .none ? Self.noTrans : Self.trans,
                      transB == .none ? Self.noTrans : Self.trans,
                      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

#if canImport(Accelerate)
/// Apple's Accelerate framework (its BLAS runs on the AMX/NEON units and manages its own threads).
public struct AccelerateGEMM: GEMMBackend {
    public var threadsItself: Bool { true }
    public init() {}
    public var name: String { "accelerate" }
    public var details: String { "Apple Accelerate cblas_sgemm, threads managed by Accelerate" }

    public func sgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                      pool: ThreadPool) {
        checkGEMMArguments(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        if m == 0 || n == 0 { return }
        // numericCast fits whichever integer type the SDK's CBLAS interface declares (Int32 or the new LAPACK's).
        cblas_sgemm(CblasRowMajor, transA == .none ? CblasNoTrans : CblasTrans,
                    transB == .none ? CblasNoTrans : CblasTrans,
                    numericCast(m), numericCast(n), numericCast(k), alpha, a, numericCast(lda),
                    b, numericCast(ldb), beta, c, numericCast(ldc))
    }
}
#endif
