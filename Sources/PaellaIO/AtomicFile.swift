#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Failures of `AtomicFile`. Each description is one sentence: what failed, and what to do about it.
/// Whatever the failure, the temporary file is gone and the destination is as it was before the write.
public enum AtomicFileError: Error, CustomStringConvertible, Equatable {
    /// The temporary file next to the destination could not be created (missing folder, no permission, ...).
    case cannotCreate(path: String, reason: String)
    /// The file system ran out of space (ENOSPC) or quota (EDQUOT) while writing or syncing.
    case diskFull(path: String)
    /// Writing the bytes failed for another reason (I/O error, file too large, ...).
    case writeFailed(path: String, reason: String)
    /// `fsync` or `close` of the temporary file failed, so its contents cannot be trusted to be on disk.
    case syncFailed(path: String, reason: String)
    /// Moving the finished file onto the destination failed (destination is a folder, no permission, ...).
    case renameFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotCreate(let path, let reason):
            return "Cannot create \(path): \(reason); check that the folder exists and is writable."
        case .diskFull(let path):
            return "The disk is full while writing \(path): free space on \(AtomicFile.directory(of: path)) and try again."
        case .writeFailed(let path, let reason):
            return "Writing \(path) failed: \(reason); check the disk and try again."
        case .syncFailed(let path, let reason):
            return "Flushing \(path) to disk failed: \(reason); check the disk and try again."
        case .renameFailed(let path, let reason):
            return "Cannot replace \(path) with the newly written file: \(reason); check that it is not a folder and that its folder is writable."
        }
    }
}

/// Writes a file so that readers see either the old contents or the complete new contents, never a mix,
/// even when the process dies or the disk fills up half way.
///
/// The bytes go to a uniquely named temporary file in the destination's folder (`.name.tmp-XXXXXX`), which is
/// flushed with `fsync`, renamed over the destination (atomic within one file system) and made durable with an
/// `fsync` of the folder. On any error, including one thrown by the caller's body, the temporary file is removed
/// and the error is thrown; the destination is untouched. Everything in Paella that writes files (weights,
/// images, training checkpoints) goes through here.
///
/// The new file gets the permission bits of the file it replaces, or `0644` for a new file.
public enum AtomicFile {
    /// Where the bytes of one atomic write go. Small writes are buffered; large ones go straight to the file.
    public struct Sink {
        /// The destination path (not the temporary file).
        public let path: String
        /// Bytes accepted so far.
        public private(set) var bytesWritten: Int = 0

        fileprivate let fd: Int32
        fileprivate var buffer: [UInt8] = []
        fileprivate let writeSyscall: WriteSyscall
        fileprivate static let bufferCapacity = 1 << 20

        fileprivate init(path: String, fd: Int32, writeSyscall: @escaping WriteSyscall) {
            self.path = path
            self.fd = fd
            self.writeSyscall = writeSyscall
            buffer.reserveCapacity(Sink.bufferCapacity)
        }

        /// Appends raw bytes.
        public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard bytes.count > 0 else { return }
            bytesWritten += bytes.count
            if buffer.count + bytes.count <= Sink.bufferCapacity {
                buffer.append(contentsOf: bytes)
                return
            }
            try flush()
            if bytes.count < Sink.bufferCapacity {
                buffer.append(contentsOf: bytes)
            } else {
                try writeAll(bytes)
            }
        }

        /// Appends bytes.
        public mutating func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try write($0) }
        }

        /// Appends bytes.
        public mutating func write(_ data: Data) throws {
            try data.withUnsafeBytes { try write($0) }
        }

        /// Appends the UTF-8 bytes of a string.
        public mutating func write(_ string: String) throws {
            var s = string
            try s.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
        }

        fileprivate mutating func flush() throws {
            guard !buffer.isEmpty else { return }
            try buffer.withUnsafeBytes { try writeAll($0) }
            buffer.removeAll(keepingCapacity: true)
        }

        /// `write(2)` until everything is out, retrying on EINTR and partial writes.
        private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
            guard var p = bytes.baseAddress else { return }
            var left = bytes.count
            while left > 0 {
                let n = writeSyscall(fd, p, min(left, 1 << 30))
                if n < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw AtomicFile.error(code, path: path, failed: .write)
                }
                if n == 0 { throw AtomicFile.error(EIO, path: path, failed: .write) }
                p += n
                left -= n
            }
        }
    }

    /// The process's file-mode creation mask. POSIX has no call that only reads it, so it is set and put back
    /// once, at the first write (a file another thread creates in that instant gets 022 at worst).
    static let processUmask: mode_t = {
        let mask = umask(0o022)
        umask(mask)
        return mask
    }()

    /// The mode every file Paella writes gets: rw-r--r-- less the umask.
    public static var newFileMode: mode_t { 0o644 & ~processUmask }

    /// The system call used to write bytes; tests replace it to simulate a full disk.
    typealias WriteSyscall = (Int32, UnsafeRawPointer, Int) -> Int

    /// Writes the file at `path` with the bytes `body` hands to the sink, atomically.
    public static func write(to path: String, _ body: (inout Sink) throws -> Void) throws {
        try write(to: path, writeSyscall: { fd, p, n in
            #if canImport(Glibc)
            return Glibc.write(fd, p, n)
            #else
            return Darwin.write(fd, p, n)
            #endif
        }, body)
    }

    /// Writes `bytes` to `path` atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(to: path) { try $0.write(bytes) }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { try $0.write(data) }
    }

    /// The implementation, with the write system call injectable for failure tests.
    static func write(to path: String, writeSyscall: @escaping WriteSyscall, _ body: (inout Sink) throws -> Void) throws {
        let folder = directory(of: path)
        let base = (path as NSString).lastPathComponent
        var template = Array("\(folder)/.\(base)\(temporaryMarker)XXXXXX".utf8CString)
        let fd: Int32 = template.withUnsafeMutableBufferPointer { buffer in
            guard let p = buffer.baseAddress else { return -1 }
            return mkstemp(p)
        }
        guard fd >= 0 else { throw error(errno, path: path, failed: .create) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(fd) }
            if !renamed { unlink(temporary) }
        }

        // Every file gets rw-r--r-- less the umask (mkstemp creates 0600), whatever the path held before: copying
        // the mode of what is replaced would hand a new PNG the setuid bit of an executable that the path was a
        // symbolic link to (stat follows links), or the group-write bit of someone else's file.
        _ = fchmod(fd, newFileMode)

        var sink = Sink(path: path, fd: fd, writeSyscall: writeSyscall)
        try body(&sink)
        if FaultInjection.killsThisWrite() { sink.buffer.removeLast(sink.buffer.count / 2); try? sink.flush(); FaultInjection.die() }
        try sink.flush()

        while fsync(fd) != 0 {
            let code = errno
            if code == EINTR { continue }
            throw error(code, path: path, failed: .sync)
        }
        isOpen = false
        if close(fd) != 0 { throw error(errno, path: path, failed: .sync) }
        if rename(temporary, path) != 0 { throw error(errno, path: path, failed: .rename) }
        renamed = true

        // Make the rename itself durable. Some file systems cannot sync a folder (EINVAL); the data is safe then.
        let dirFD = open(folder, O_RDONLY | O_DIRECTORY)
        if dirFD >= 0 {
            defer { close(dirFD) }
            if fsync(dirFD) != 0, errno != EINVAL, errno != ENOTSUP, errno != EBADF {
                throw error(errno, path: path, failed: .sync)
            }
        }
    }

    /// Removes the temporary files (`.name.tmp-XXXXXX`) that writes into `folder` left when their process was
    /// killed before the rename, and returns their names. Only for a folder that one process owns (a training
    /// run's output): another process's write in progress would lose its temporary file.
    @discardableResult
    public static func removeAbandonedTemporaries(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        let abandoned = names.filter(isTemporaryName)
        for name in abandoned { unlink((folder as NSString).appendingPathComponent(name)) }
        return abandoned
    }

    /// What separates the destination's name from mkstemp's six characters in a temporary file's name.
    static let temporaryMarker = ".tmp-"

    /// Whether `name` is one of this type's temporary file names: a dot, the destination's name, `.tmp-` and
    /// mkstemp's six characters.
    static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), let marker = name.range(of: temporaryMarker, options: .backwards) else { return false }
        return name.distance(from: marker.upperBound, to: name.endIndex) == 6 && marker.lowerBound > name.index(after: name.startIndex)
    }

    enum Step { case create, write, sync, rename }

    /// A testing hook for crash safety: with `PAELLA_FAULT_KILL_IN_WRITE=N` in the environment the process kills
    /// itself with SIGKILL in the middle of its N-th atomic write (counting from 1), after half of the buffered
    /// bytes have reached the temporary file and before the rename: the torn write a power cut or `kill -9`
    /// leaves. The kill-and-resume tests use it to stop training inside a checkpoint write.
    enum FaultInjection {
        nonisolated(unsafe) private static var writes = 0
        private static let lock = NSLock()
        private static let killAt: Int? = ProcessInfo.processInfo.environment["PAELLA_FAULT_KILL_IN_WRITE"].flatMap { Int($0) }

        static func killsThisWrite() -> Bool {
            guard let killAt else { return false }
            lock.lock()
            defer { lock.unlock() }
            writes += 1
            return writes == killAt
        }

        static func die() -> Never {
            kill(getpid(), SIGKILL)
            fatalError("SIGKILL did not stop the process")
        }
    }

    /// Maps an errno to the typed error; a full disk is recognised whatever the step.
    static func error(_ code: Int32, path: String, failed step: Step) -> AtomicFileError {
        if code == ENOSPC || code == EDQUOT { return .diskFull(path: path) }
        let reason = String(cString: strerror(code))
        switch step {
        case .create: return .cannotCreate(path: path, reason: reason)
        case .write: return .writeFailed(path: path, reason: reason)
        case .sync: return .syncFailed(path: path, reason: reason)
        case .rename: return .renameFailed(path: path, reason: reason)
        }
    }

    /// The folder a path lives in ("." for a bare file name).
    static func directory(of path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }
}
