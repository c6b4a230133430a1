import Foundation
import PaellaTestSupport
import Testing
@testable import PaellaIO

#if canImport(Glibc)
import Glibc
#endif

/// A fresh folder under the system temporary directory, removed when the test is done with it.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("paella-io-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Names in the folder, hidden ones (the temporary files) included.
    var contents: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path).sorted()) ?? [] }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

private struct InjectedFailure: Error, Equatable {}

@Suite("AtomicFile")
struct AtomicFileTests {
    @Test func writesAndReplaces() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("out.bin")
        try AtomicFile.write([1, 2, 3], to: path)
        #expect(FileManager.default.contents(atPath: path) == Data([1, 2, 3]))
        try AtomicFile.write(Data([9, 8]), to: path)
        #expect(FileManager.default.contents(atPath: path) == Data([9, 8]))
        #expect(dir.contents == ["out.bin"])
    }

    @Test func streamsChunksLargerAndSmallerThanItsBuffer() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("big.bin")
        // 3 MB in uneven chunks crosses the 1 MB internal buffer in every way: small appends, a flush, and a
        // chunk larger than the buffer written directly.
        var rng = TestRandom(seed: 7)
        let expected = (0..<(3 << 20) + 12345).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let cuts = [0, 10, 1000, (1 << 20) - 5, (1 << 20) + 100, (2 << 20) + 200_000, expected.count]
        var reported = 0
        try AtomicFile.write(to: path) { sink in
            for i in 0..<(cuts.count - 1) { try sink.write(Array(expected[cuts[i]..<cuts[i + 1]])) }
            try sink.write("")
            reported = sink.bytesWritten
        }
        #expect(reported == expected.count)
        #expect(FileManager.default.contents(atPath: path) == Data(expected))
    }

    @Test func failureInBodyLeavesNothingBehind() throws {
        let dir = try TemporaryDirectory()
        let fresh = dir.file("fresh.bin")
        #expect(throws: InjectedFailure()) {
            try AtomicFile.write(to: fresh) { sink in
                try sink.write([UInt8](repeating: 7, count: 3 << 20))  // some bytes already reached the file
                throw InjectedFailure()
            }
        }
        #expect(dir.contents.isEmpty)

        let existing = dir.file("existing.bin")
        try AtomicFile.write([42], to: existing)
        #expect(throws: InjectedFailure()) {
            try AtomicFile.write(to: existing) { sink in
                try sink.write([1, 2, 3])
                throw InjectedFailure()
            }
        }
        #expect(FileManager.default.contents(atPath: existing) == Data([42]))
        #expect(dir.contents == ["existing.bin"])
    }

    /// A write system call that behaves like /dev/full (or a failing disk) after `allowed` bytes.
    private func failingWrite(after allowed: Int, errno code: Int32) -> AtomicFile.WriteSyscall {
        nonisolated(unsafe) var remaining = allowed
        return { fd, p, n in
            if remaining <= 0 { errno = code; return -1 }
            let chunk = min(n, remaining)
            remaining -= chunk
            return Glibc.write(fd, p, chunk)
        }
    }

    @Test func abandonedTemporariesAreRemovedAndNothingElse() throws {
        let dir = try TemporaryDirectory()
        let kept = [".hidden", "a.tmp-ABCDEF", ".a.tmp-ABC", ".tmp-ABCDEF", "weights.safetensors"]
        let abandoned = [".weights.safetensors.tmp-Zq81xA", ".trainer.json.tmp-000000"]
        for name in kept + abandoned { try Data("x".utf8).write(to: URL(fileURLWithPath: dir.file(name))) }
        #expect(AtomicFile.removeAbandonedTemporaries(in: dir.path).sorted() == abandoned.sorted())
        #expect(dir.contents == kept.sorted())
    }

    @Test func fullDiskIsReportedAndCleanedUp() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("weights.safetensors")
        try AtomicFile.write([5, 5, 5], to: path)
        do {
            try AtomicFile.write(to: path, writeSyscall: failingWrite(after: 1000, errno: ENOSPC)) { sink in
                try sink.write([UInt8](repeating: 1, count: 5 << 20))
            }
            Issue.record("expected a full-disk error")
        } catch let error as AtomicFileError {
            #expect(error == .diskFull(path: path))
            #expect(error.description.hasPrefix("The disk is full"))
            #expect(error.description.contains("free space on \(dir.path)"))
        }
        #expect(FileManager.default.contents(atPath: path) == Data([5, 5, 5]))
        #expect(dir.contents == ["weights.safetensors"])
    }

    @Test func ioErrorIsReportedAndCleanedUp() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("x.bin")
        #expect(throws: AtomicFileError.writeFailed(path: path, reason: String(cString: strerror(EIO)))) {
            try AtomicFile.write(to: path, writeSyscall: failingWrite(after: 0, errno: EIO)) { try $0.write([1]) }
        }
        #expect(dir.contents.isEmpty)
    }

    @Test func missingFolderAndFolderDestination() throws {
        let dir = try TemporaryDirectory()
        let inMissing = dir.file("no/such/folder/x.bin")
        #expect(throws: AtomicFileError.cannotCreate(path: inMissing, reason: String(cString: strerror(ENOENT)))) {
            try AtomicFile.write([1], to: inMissing)
        }
        try FileManager.default.createDirectory(atPath: dir.file("sub"), withIntermediateDirectories: false)
        do {
            try AtomicFile.write([1], to: dir.file("sub"))
            Issue.record("expected a rename error")
        } catch let error as AtomicFileError {
            guard case .renameFailed = error else { Issue.record("got \(error)"); return }
        }
        #expect(dir.contents == ["sub"])
    }

    /// New files are rw-r--r-- less the umask, whatever the path held: not the mode of a replaced file, and never
    /// the setuid bit of an executable that the path was a symbolic link to (the link itself is replaced).
    @Test func newFilesGetAFixedModeWhateverThePathHeld() throws {
        let dir = try TemporaryDirectory()
        let expected = 0o644 & ~AtomicFile.processUmask
        let path = dir.file("image.png")
        try AtomicFile.write([1], to: path)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 == expected)
        #expect(chmod(path, 0o770) == 0)
        try AtomicFile.write([2], to: path)
        #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 == expected)
        let program = dir.file("program")
        try AtomicFile.write([0x7F, 0x45], to: program)
        #expect(chmod(program, 0o4755) == 0)
        let link = dir.file("out.png")
        #expect(symlink(program, link) == 0)
        try AtomicFile.write([3], to: link)
        #expect(lstat(link, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o7777 == expected)
        #expect(stat(program, &info) == 0 && info.st_mode & 0o7777 == 0o4755, "the link's old target is left alone")
    }

    /// A real ENOSPC: a 64 KiB tmpfs, mounted only when the tests run as root with `mount` installed; where the
    /// kernel still refuses the mount (a container without CAP_SYS_ADMIN), the test is cancelled with the reason.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"),
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/bin/mount"), "/bin/mount is not installed"))
    func realFullDiskOnTinyTmpfs() throws {
        let dir = try TemporaryDirectory()
        let mountPoint = dir.file("tiny")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        if !run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]) {
            try Test.cancel("mounting a tmpfs is not allowed here (mount failed)")
        }
        defer { _ = run("/bin/umount", [mountPoint]) }
        let path = mountPoint + "/big.bin"
        try AtomicFile.write([3], to: path)
        #expect(throws: AtomicFileError.diskFull(path: path)) {
            try AtomicFile.write([UInt8](repeating: 9, count: 1 << 20), to: path)
        }
        #expect(FileManager.default.contents(atPath: path) == Data([3]))
        #expect((try FileManager.default.contentsOfDirectory(atPath: mountPoint)) == ["big.bin"])
    }

    private func run(_ tool: String, _ arguments: [String]) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: tool) else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}
