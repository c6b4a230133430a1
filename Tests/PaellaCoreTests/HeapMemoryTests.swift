import Foundation
import PaellaCore
import Testing

/// glibc's calls are found at run time; after a burst of allocations freed on other threads, asking for the
/// memory back lowers the resident size (what the server does after each request).
@Suite struct HeapMemoryTests {
    /// Resident kilobytes of this process (Linux).
    static func residentKiB() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/self/status") && HeapMemory.canRelease,
                   "needs Linux with glibc"))
    func freedMemoryGoesBackToTheSystem() throws {
        // Many small blocks (below glibc's mmap threshold, so they live in an arena), written so they are resident,
        // freed on their own thread: glibc keeps them for reuse.
        final class Kept: @unchecked Sendable { var block: UnsafeMutableRawPointer? }
        let kept = Kept()
        let thread = Thread {
            var blocks: [UnsafeMutableRawPointer] = []
            for _ in 0..<4096 {
                let p = malloc(64 << 10)!
                memset(p, 1, 64 << 10)
                blocks.append(p)
            }
            // Free all but the last, so the arena's top stays in use and only an inner trim can give pages back.
            for p in blocks.dropLast() { free(p) }
            kept.block = blocks.last
        }
        thread.start()
        while !thread.isFinished { usleep(1000) }
        let before = try #require(Self.residentKiB())
        HeapMemory.releaseFreedMemory()
        let after = try #require(Self.residentKiB())
        free(kept.block)
        print("resident: \(before / 1024) MiB before, \(after / 1024) MiB after releasing")
        #expect(before - after > 128 << 10, "only \((before - after) / 1024) MiB of the 256 MiB freed came back")
    }
}
