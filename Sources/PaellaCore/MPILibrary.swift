#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How this process was started: on its own, or as one of several processes of an MPI job (`mpirun`, Slurm's
/// `srun`), read from the variables the launcher sets.
public struct MPILaunch: Sendable, Equatable {
    /// The number of processes the launcher started.
    public var size: Int
    /// The variable that said so (`OMPI_COMM_WORLD_SIZE`, `PMI_SIZE` or `SLURM_STEP_NUM_TASKS`).
    public var variable: String

    /// The launcher's variables, in the order they are trusted: Open MPI's `mpirun`, the PMI of MPICH's Hydra
    /// and Slurm's, then Slurm's `srun` step (set for each task it starts, not in the batch script itself).
    public static let variables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]

    /// The launch described by `environment`, or nil when no launcher started more than one process (a plain
    /// run, or `-np 1`, which trains as one process without MPI).
    public static func detect(_ environment: [String: String]) -> MPILaunch? {
        for name in variables {
            if let value = environment[name], let size = Int(value), size > 1 { return MPILaunch(size: size, variable: name) }
        }
        return nil
    }
}

/// Why MPI could not be used.
public enum MPISetupError: Error, CustomStringConvertible, Equatable {
    case notFound(tried: [String])
    case notOpenMPI(path: String)
    case missingSymbol(path: String, symbol: String)
    case failed(call: String, code: Int32)
    case threadSupport(provided: Int32)

    public var description: String {
        switch self {
        case .notFound(let tried):
            return "This process was started by an MPI launcher but no Open MPI library could be loaded (tried \(tried.joined(separator: ", "))); install Open MPI (Debian: openmpi-bin libopenmpi-dev) or set PAELLA_MPI to its libmpi.so.40."
        case .notOpenMPI(let path):
            return "\(path) is an MPI library but not Open MPI's (MPICH and its derivatives use other handles); Paella's MPI binding needs Open MPI 4 or later (libmpi.so.40)."
        case .missingSymbol(let path, let symbol):
            return "\(path) does not export \(symbol), which Paella's Open MPI binding needs."
        case .failed(let call, let code):
            return "\(call) failed with MPI error \(code)."
        case .threadSupport(let provided):
            return "The MPI library gives thread level \(provided), below MPI_THREAD_SERIALIZED (2), which Paella needs because its training loop may call MPI from different threads, one at a time."
        }
    }
}

/// Open MPI's C library, loaded at run time with `dlopen` (as `BLASLibrary` loads a BLAS), so the package builds
/// and runs without MPI and uses it when a job is started by `mpirun` or `srun`.
///
/// This ties the binding to Open MPI's ABI: its handles (`MPI_COMM_WORLD`, `MPI_FLOAT`, `MPI_SUM`, ...) are the
/// addresses of exported globals (`ompi_mpi_comm_world`, `ompi_mpi_float`, `ompi_mpi_op_sum`) and `MPI_IN_PLACE`
/// is `(void *) 1`. MPICH and its derivatives (Intel MPI, MVAPICH, Cray MPICH) use integer handles instead; their
/// library is recognised and refused with a clear error rather than called with the wrong handles.
///
/// Immutable after loading; MPI itself must be called by one thread at a time (`MPI_THREAD_SERIALIZED`).
public final class MPILibrary: @unchecked Sendable {
    /// The file the library was loaded from.
    public let path: String
    /// `MPI_Get_library_version`'s text up to its first comma, e.g. "Open MPI v4.1.4".
    public let version: String

    typealias Handle = UnsafeMutableRawPointer
    typealias InitThread = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?,
                                           Int32, UnsafeMutablePointer<Int32>?) -> Int32
    typealias CommQuery = @convention(c) (Handle, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Allreduce = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32
    typealias Bcast = @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32
    typealias CommOnly = @convention(c) (Handle) -> Int32
    typealias Abort = @convention(c) (Handle, Int32) -> Int32
    typealias Finalize = @convention(c) () -> Int32
    typealias LibraryVersion = @convention(c) (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Int32

    let initThread: InitThread
    let commRank: CommQuery
    let commSize: CommQuery
    let allreduceFunction: Allreduce
    let bcastFunction: Bcast
    let barrierFunction: CommOnly
    let abortFunction: Abort
    let finalizeFunction: Finalize
    // Open MPI's predefined handles: addresses of its exported globals.
    let commWorld: Handle
    let float: Handle
    let double: Handle
    let byte: Handle
    let sum: Handle
    /// Open MPI's `MPI_IN_PLACE`.
    static var inPlace: UnsafeRawPointer? { UnsafeRawPointer(bitPattern: 1) }
    static let threadSerialized: Int32 = 2

    /// Paths tried, in order: `PAELLA_MPI` when set, then Open MPI's soname through the linker's search path and
    /// Debian's multiarch folder.
    public static func candidates(_ environment: [String: String]) -> [String] {
        #if arch(x86_64)
        let multiarch = "/usr/lib/x86_64-linux-gnu"
        #else
        let multiarch = "/usr/lib/aarch64-linux-gnu"
        #endif
        return (environment["PAELLA_MPI"].map { [$0] } ?? [])
            + ["libmpi.so.40", "\(multiarch)/libmpi.so.40", "\(multiarch)/openmpi/lib/libmpi.so.40", "libmpi.so"]
    }

    /// MPICH's sonames, opened only to say that the MPI found is not Open MPI.
    static let mpichNames = ["libmpi.so.12", "libmpich.so.12"]

    /// The first candidate that opens as Open MPI; throws `notOpenMPI` when only an MPICH-family library opens.
    public static func load(_ environment: [String: String]) throws -> MPILibrary {
        let tried = candidates(environment)
        for candidate in tried {
            // RTLD_GLOBAL: Open MPI's own plug-ins (dlopened by libmpi) resolve libmpi's symbols globally.
            guard let handle = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL) else { continue }
            return try MPILibrary(handle: handle, path: candidate)
        }
        for name in mpichNames {
            if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                dlclose(handle)
                throw MPISetupError.notOpenMPI(path: name)
            }
        }
        throw MPISetupError.notFound(tried: tried)
    }

    private init(handle: UnsafeMutableRawPointer, path: String) throws {
        // The handle is never closed: the function pointers stay valid for the life of the process.
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let s = dlsym(handle, name) else { throw MPISetupError.missingSymbol(path: path, symbol: name) }
            return s
        }
        guard dlsym(handle, "ompi_mpi_comm_world") != nil else {
            if dlsym(handle, "MPI_Init") != nil { throw MPISetupError.notOpenMPI(path: path) }
            throw MPISetupError.missingSymbol(path: path, symbol: "MPI_Init")
        }
        self.path = path
        initThread = unsafeBitCast(try symbol("MPI_Init_thread"), to: InitThread.self)
        commRank = unsafeBitCast(try symbol("MPI_Comm_rank"), to: CommQuery.self)
        commSize = unsafeBitCast(try symbol("MPI_Comm_size"), to: CommQuery.self)
        allreduceFunction = unsafeBitCast(try symbol("MPI_Allreduce"), to: Allreduce.self)
        bcastFunction = unsafeBitCast(try symbol("MPI_Bcast"), to: Bcast.self)
        barrierFunction = unsafeBitCast(try symbol("MPI_Barrier"), to: CommOnly.self)
        abortFunction = unsafeBitCast(try symbol("MPI_Abort"), to: Abort.self)
        finalizeFunction = unsafeBitCast(try symbol("MPI_Finalize"), to: Finalize.self)
        commWorld = try symbol("ompi_mpi_comm_world")
        float = try symbol("ompi_mpi_float")
        double = try symbol("ompi_mpi_double")
        byte = try symbol("ompi_mpi_byte")
        sum = try symbol("ompi_mpi_op_sum")
        // MPI-3 allows this call before MPI_Init.
        let getVersion = unsafeBitCast(try symbol("MPI_Get_library_version"), to: LibraryVersion.self)
        var text = [CChar](repeating: 0, count: 512)  // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI
        var length: Int32 = 0
        _ = getVersion(&text, &length)
        version = String(cString: text).split(separator: ",").first.map(String.init) ?? "Open MPI"
    }

    /// `MPI_Init_thread` with `MPI_THREAD_SERIALIZED`, then this process's rank and the job's size in
    /// `MPI_COMM_WORLD`. Call once per process.
    public func initialize() throws -> MPICommunicator {
        var provided: Int32 = 0
        try check("MPI_Init_thread", initThread(nil, nil, Self.threadSerialized, &provided))
        guard provided >= Self.threadSerialized else { throw MPISetupError.threadSupport(provided: provided) }
        var rank: Int32 = 0, size: Int32 = 0
        try check("MPI_Comm_rank", commRank(commWorld, &rank))
        try check("MPI_Comm_size", commSize(commWorld, &size))
        return MPICommunicator(library: self, rank: Int(rank), size: Int(size))
    }

    func check(_ call: String, _ code: Int32) throws {
        if code != 0 { throw MPISetupError.failed(call: call, code: code) }  // MPI_SUCCESS is 0
    }
}

/// `MPI_COMM_WORLD` of an initialised Open MPI: this process's rank, the job's size, and the collectives
/// training needs. Every rank must make the same calls in the same order. MPI's default error handler
/// (`MPI_ERRORS_ARE_FATAL`) ends the whole job when a call fails, so the calls return nothing.
public final class MPICommunicator: @unchecked Sendable {
    public let library: MPILibrary
    public let rank: Int
    public let size: Int
    /// Counts in one MPI call are 32-bit: larger buffers go in pieces of this many elements.
    static let maxCount = 1 << 30

    init(library: MPILibrary, rank: Int, size: Int) {
        self.library = library
        self.rank = rank
        self.size = size
    }

    /// Sums `buffer` over all ranks, in place (every rank gets the sum).
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        pieces(buffer.count) { start, count in
            _ = library.allreduceFunction(MPILibrary.inPlace, buffer.baseAddress! + start, count, library.float, library.sum, library.commWorld)
        }
    }

    /// Sums `buffer` over all ranks, in place.
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
        pieces(buffer.count) { start, count in
            _ = library.allreduceFunction(MPILibrary.inPlace, buffer.baseAddress! + start, count, library.double, library.sum, library.commWorld)
        }
    }

    /// Replaces `buffer` on every rank by rank `root`'s.
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int = 0) {
        pieces(buffer.count) { start, count in
            _ = library.bcastFunction(buffer.baseAddress! + start, count, library.byte, Int32(root), library.commWorld)
        }
    }

    /// Waits until every rank has called it.
    public func barrier() { _ = library.barrierFunction(library.commWorld) }

    /// Ends every process of the job with `code` (`MPI_Abort`); does not return.
    public func abort(code: Int32) -> Never {
        _ = library.abortFunction(library.commWorld, code)
        exit(code)
    }

    /// `MPI_Finalize`: call once, after the last collective, on every rank.
    public func finalize() { _ = library.finalizeFunction() }

    private func pieces(_ count: Int, _ body: (Int, Int32) -> Void) {
        var start = 0
        while start < count {
            let n = min(Self.maxCount, count - start)
            body(start, Int32(n))
            start += n
        }
    }
}
