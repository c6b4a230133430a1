#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import PaellaCore

/// The cache of large tensor buffers: its policy on a private instance (the process-wide one is shared by tests
/// running in parallel), and that tensors made over reused blocks start as they promise.
@Suite struct BlockCacheTests {
    static func map(_ length: Int) -> UnsafeMutableRawPointer {
        mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
    }

    @Test func keepsBlocksBySizeAndGivesTheNewestBack() {
        let page = BlockCache.pageBytes
        var cache = BlockCache.Contents(limit: 10 * page)
        let (a, b, c) = (Self.map(2 * page), Self.map(2 * page), Self.map(3 * page))
        let kept = [cache.keep(a, 2 * page), cache.keep(b, 2 * page), cache.keep(c, 3 * page)]
        #expect(kept == [true, true, true])
        #expect(cache.bytes == 7 * page)
        let taken = [cache.take(4 * page), cache.take(2 * page), cache.take(2 * page), cache.take(2 * page)]
        #expect(taken == [nil, b, a, nil], "none of a size not kept, then the newest of the right size first")
        #expect(cache.bytes == 3 * page)
        cache.evict(keeping: 0)
        #expect(cache.blocks.isEmpty && cache.bytes == 0)
        munmap(a, 2 * page)
        munmap(b, 2 * page)
    }

    @Test func staysUnderItsLimitByDroppingTheOldest() {
        let page = BlockCache.pageBytes
        var cache = BlockCache.Contents(limit: 5 * page)
        let blocks = (0..<3).map { _ in Self.map(2 * page) }
        for block in blocks {
            let kept = cache.keep(block, 2 * page)
            #expect(kept)
        }
        // The third block pushed the first out: 4 pages kept, the two newest.
        #expect(cache.bytes == 4 * page)
        #expect(cache.blocks.map(\.pointer) == Array(blocks[1...]))
        let large = Self.map(6 * page)
        let keptLarge = cache.keep(large, 6 * page)
        #expect(!keptLarge, "a block over the whole limit is never kept")
        #expect(cache.bytes == 4 * page, "and evicts nothing")
        munmap(large, 6 * page)
        cache.evict(keeping: 0)
    }

    @Test func roundsToWholePages() {
        let page = BlockCache.pageBytes
        #expect(BlockCache.pageRounded(1) == page)
        #expect(BlockCache.pageRounded(page) == page)
        #expect(BlockCache.pageRounded(page + 1) == 2 * page)
    }

    /// A zero tensor over a block that held other values reads zeros; freed and taken again, sizes that share
    /// their pages are interchangeable.
    @Test func reusedBlocksStartAsPromised() {
        let count = (BlockCache.minimumBytes / 4) + 12_345  // past the threshold, not a whole number of pages
        for _ in 0..<3 {
            var dirty = Tensor(uninitialized: [count])
            dirty.withMutableFloats { for i in $0.indices { $0[i] = 7 } }
            let zeros = Tensor(zeros: [count])
            #expect(zeros.withFloats { $0.allSatisfy { $0 == 0 } })
            _ = dirty
        }
        #expect(BlockCache.cachedBytes <= BlockCache.limitBytes)
    }
}
