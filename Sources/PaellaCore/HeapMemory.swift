// Giving freed heap memory back to the system. A long-lived process that runs one request after another (the
// server, a library user) frees every activation when a request ends, but glibc keeps freed memory inside its
// malloc arenas for reuse, and each request runs on a new thread, which glibc spreads over up to eight arenas per
// core. Measured on `paella serve` with the bundled model (scripts/load-server.py): resident memory rose from
// 118 MiB after 20 requests to 133 MiB after 200 and stayed there, although nothing leaked.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum HeapMemory {
    /// glibc's `malloc_trim`, looked up at run time: it is declared in <malloc.h>, which Swift's Glibc module does
    /// not bring in, and other C libraries (musl, Darwin's) do not have it.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }  // RTLD_DEFAULT
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    /// Returns the large blocks kept for reuse (`BlockCache`) and the free pages of every malloc arena to the
    /// system (`malloc_trim(0)`, which also releases whole free pages inside an arena, not only at its top). The
    /// trim takes about a millisecond on a heap of 100 MB and does nothing where the C library has no such call.
    public static func releaseFreedMemory() {
        BlockCache.releaseAll()
        _ = mallocTrim?(0)
    }

    /// Whether this C library can give freed memory back on request.
    public static var canRelease: Bool { mallocTrim != nil }

    /// glibc's `mallopt`, looked up like `malloc_trim`.
    private static let mallopt: (@convention(c) (Int32, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    /// Lets malloc keep at most `count` arenas (glibc's `M_ARENA_MAX`, whose default is eight per core), for a
    /// process whose threads come and go with its requests: fewer arenas hold less freed memory between them.
    /// Measured on the server's load run (600 requests, 8 clients, bundled model): resident memory 92 MiB after 20
    /// requests and 97 MiB at the end with two arenas, against 101 and 113 MiB with the default. Call it before the
    /// process starts its threads; it does nothing where the C library has no such setting. The environment
    /// variable MALLOC_ARENA_MAX, when set, has been applied by glibc already and is left alone.
    public static func limitArenas(to count: Int) {
        guard count > 0, ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil else { return }
        _ = mallopt?(-8, Int32(clamping: count))  // M_ARENA_MAX
    }
}
