// Large tensor buffers kept for reuse between the steps of a loop.
//
// A sampling loop runs the same network on the same shapes step after step, and a training loop does the same
// batch after batch, so every step frees and then allocates again the same large activations. Each of those is an
// anonymous memory map, and fresh anonymous memory costs a page fault per 4 KiB page (the kernel zeroes the page
// and charges it to the memory cgroup) and its unmap a TLB flush on every thread of the process: perf counted about
// 17,000 page faults per forward of the v1 denoiser at batch 1, and the kernel's page clearing at the top of the
// profile. Blocks freed here are kept, keyed by their size in pages, up to a byte limit (the oldest go back to the
// system first), and the next allocation of the same size takes one: its pages are resident already.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum BlockCache {
    /// Blocks at least this large are memory maps that go through the cache; smaller ones come from malloc.
    public static let minimumBytes = 1 << 20

    /// The most bytes the cache holds (default 512 MiB, or `PAELLA_BLOCK_CACHE_MB` MiB; 0 turns it off). The kept
    /// blocks count in the process's resident size, so this bounds what reuse may add to the peak.
    public static var limitBytes: Int {
        get { state.withLock { $0.limit } }
        set { state.withLock { $0.limit = max(0, newValue); $0.evict(keeping: $0.limit) } }
    }

    /// Bytes held now.
    public static var cachedBytes: Int { state.withLock { $0.bytes } }

    /// Gives every kept block back to the system (what a server does when a request ends).
    public static func releaseAll() {
        state.withLock { $0.evict(keeping: 0) }
    }

    /// A block of `byteCount` bytes (rounded up to whole pages): a kept one when there is one of that size,
    /// else a fresh map, populated (the kernel zero-fills every page at once) when `populate` is set. Kept blocks
    /// hold what was last written to them; `zeroed` tells the caller whether the block is known to be zero.
    /// nil when the system refuses the map.
    static func allocate(byteCount: Int, populate: Bool) -> (pointer: UnsafeMutableRawPointer, zeroed: Bool)? {
        let length = pageRounded(byteCount)
        if let kept = state.withLock({ $0.take(length) }) { return (kept, false) }
        let flags = populate ? MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE : MAP_PRIVATE | MAP_ANONYMOUS
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0), p != MAP_FAILED else { return nil }
        return (p, true)
    }

    /// Takes back a block from `allocate` (of the same `byteCount`): kept for reuse, or unmapped when the limit
    /// would be passed even after the oldest kept blocks went.
    static func free(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let length = pageRounded(byteCount)
        let kept = state.withLock { $0.keep(pointer, length) }
        if !kept { munmap(pointer, length) }
    }

    static let pageBytes = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)

    static func pageRounded(_ byteCount: Int) -> Int { (max(byteCount, 1) + pageBytes - 1) / pageBytes * pageBytes }

    /// The kept blocks, oldest first, and their total size.
    struct Contents {
        var blocks: [(pointer: UnsafeMutableRawPointer, length: Int)] = []
        var bytes = 0
        var limit: Int

        /// The newest kept block of `length` bytes, removed from the cache.
        mutating func take(_ length: Int) -> UnsafeMutableRawPointer? {
            guard let index = blocks.lastIndex(where: { $0.length == length }) else { return nil }
            bytes -= length
            return blocks.remove(at: index).pointer
        }

        mutating func keep(_ pointer: UnsafeMutableRawPointer, _ length: Int) -> Bool {
            guard length <= limit else { return false }
            evict(keeping: limit - length)
            blocks.append((pointer, length))
            bytes += length
            return true
        }

        /// Unmaps the oldest blocks until at most `maximum` bytes are kept.
        mutating func evict(keeping maximum: Int) {
            var dropped = 0
            while dropped < blocks.count && bytes > maximum {
                munmap(blocks[dropped].pointer, blocks[dropped].length)
                bytes -= blocks[dropped].length
                dropped += 1
            }
            blocks.removeFirst(dropped)
        }
    }

    private static let state = LockedState(Contents(limit: defaultLimit))

    static let defaultLimit: Int = {
        if let text = getenv("PAELLA_BLOCK_CACHE_MB").map({ String(cString: $0) }), let megabytes = Int(text), megabytes >= 0 {
            return megabytes << 20
        }
        return 512 << 20
    }()
}

/// A value behind a pthread mutex.
final class LockedState<Value>: @unchecked Sendable {
    private var value: Value
    private var mutex = pthread_mutex_t()

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&value)
    }
}
