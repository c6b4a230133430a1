#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Tensors that view it keep it alive; the map is released when the last
/// of them goes away. The file can be larger than memory: pages are read on first touch.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let byteCount: Int

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case cannotOpen(path: String, reason: String)
        case cannotMap(path: String, reason: String)
        /// The path is a FIFO, socket, device or directory (`kind` says which, as a phrase).
        case notARegularFile(path: String, kind: String)
        public var description: String {
            switch self {
            case .cannotOpen(let path, let reason): return "Cannot open \(path): \(reason)."
            case .cannotMap(let path, let reason): return "Cannot memory-map \(path): \(reason)."
            case .notARegularFile(let path, let kind): return "\(path) is \(kind), not a regular file; give the path of the file itself."
            }
        }
    }

    /// What kind of non-regular file `mode` describes, as a phrase; nil for a regular file.
    static func nonRegularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFIFO: return "a named pipe (FIFO)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFDIR: return "a directory"
        case S_IFSOCK: return "a socket"
        default: return "not a file"
        }
    }

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer, forever; it changes nothing for a regular
        // file, and anything else is refused below.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        if let kind = Self.nonRegularKind(info.st_mode) { throw Failure.notARegularFile(path: path, kind: kind) }
        byteCount = Int(info.st_size)
        if byteCount == 0 {
            // mmap refuses length 0; an empty file is a valid (if useless) input for the parsers to reject.
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
            ownsAllocation = true
            return
        }
        guard let p = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw Failure.cannotMap(path: path, reason: String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(p)
        ownsAllocation = false
    }

    /// A copy of bytes held in memory, read through the same code as a mapped file (`name` stands for the path in
    /// errors): how the fuzz targets and other in-memory callers reach the parsers that take a `MappedFile`.
    public init(copying bytes: UnsafeRawBufferPointer, name: String) {
        path = name
        byteCount = bytes.count
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        if let source = bytes.baseAddress { copy.copyMemory(from: source, byteCount: bytes.count) }
        base = UnsafeRawPointer(copy)
        ownsAllocation = true
    }

    /// Whether `base` is memory this object allocated (an empty file or an in-memory copy) rather than a map.
    private var ownsAllocation = false

    /// The mapped bytes as a buffer.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: byteCount) }

    deinit {
        if ownsAllocation {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), byteCount)
        }
    }
}

/// The bytes behind a tensor: either memory this process owns (64-byte aligned for SIMD) or a region of a
/// memory-mapped file (read-only; writing to such a tensor copies it first).
public final class TensorStorage: @unchecked Sendable {
    public enum Backing: Sendable {
        case owned
        case mapped(MappedFile)
    }

    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    public let backing: Backing

    /// Fresh zero-filled memory. Large blocks (`BlockCache.minimumBytes` and up) are anonymous memory maps, kept
    /// for reuse by the next tensor of their size when this one is freed (`BlockCache`), up to a limit, and returned
    /// to the system beyond it. A new map is populated (the kernel zero-fills every page up front): zero tensors
    /// are mostly accumulated into (`+=`), and a page first read and then written takes two faults, the second a
    /// copy-on-write that interrupts every other thread of the process to flush its TLB. Left to first touch,
    /// that cost 6% of a denoiser training step in the backward depthwise convolution alone.
    public init(byteCount: Int) {
        precondition(byteCount >= 0, "TensorStorage: negative byte count \(byteCount)")
        self.byteCount = byteCount
        backing = .owned
        if byteCount >= BlockCache.minimumBytes, let block = BlockCache.allocate(byteCount: byteCount, populate: true) {
            pointer = block.pointer
            isCachedBlock = true
            if !block.zeroed { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        }
    }

    /// Whether `pointer` came from `BlockCache` (and goes back there).
    private var isCachedBlock = false
    /// Whether `pointer` is a read-only anonymous map of its own (`readOnlyZeros`).
    private var isZeroPageMap = false

    /// Fresh memory that the caller promises to fill completely before reading it (large blocks from
    /// `BlockCache`, like zeroed ones, but not cleared).
    ///
    /// Debug builds (the tests) fill it with 0xFF bytes, a float NaN and an integer -1, so that a kernel that reads
    /// what it never wrote shows up as NaNs in its results instead of as rare run-to-run differences.
    public init(uninitializedByteCount byteCount: Int) {
        precondition(byteCount >= 0, "TensorStorage: negative byte count \(byteCount)")
        self.byteCount = byteCount
        backing = .owned
        if byteCount >= BlockCache.minimumBytes, let block = BlockCache.allocate(byteCount: byteCount, populate: false) {
            pointer = block.pointer
            isCachedBlock = true
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        }
        #if DEBUG
        pointer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: max(byteCount, 1))
        #endif
    }

    /// A view of `byteCount` bytes at `offset` inside a mapped file; no copy.
    public init(mapping file: MappedFile, offset: Int, byteCount: Int) {
        precondition(offset >= 0 && byteCount >= 0 && offset + byteCount <= file.byteCount,
                     "TensorStorage: region \(offset)+\(byteCount) outside the \(file.byteCount)-byte file \(file.path)")
        self.byteCount = byteCount
        pointer = UnsafeMutableRawPointer(mutating: file.base + offset)
        backing = .mapped(file)
    }

    public var isMapped: Bool {
        if case .mapped = backing { return true }
        return false
    }

    public var isWritable: Bool {
        if case .owned = backing { return !isReadOnlyZeros }
        return false
    }

    /// Zeros that cost no memory and can never change: a read-only anonymous map (every page is the kernel's
    /// shared zero page). Writing to a tensor over it copies it first, like a mapped file, so a tensor that
    /// views it is known to hold zeros; layout conversions of such tensors are free (see `Tensor(readOnlyZeros:)`).
    public static func readOnlyZeros(byteCount: Int) -> TensorStorage {
        TensorStorage(readOnlyZeroBytes: byteCount)
    }

    /// Whether this storage is a `readOnlyZeros` map (all bytes zero, forever).
    public private(set) var isReadOnlyZeros = false

    private init(readOnlyZeroBytes byteCount: Int) {
        precondition(byteCount >= 0, "TensorStorage: negative byte count \(byteCount)")
        self.byteCount = byteCount
        backing = .owned
        if byteCount > 0, let p = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            pointer = p
            isZeroPageMap = true
        } else {  // empty, or the map failed: ordinary zeroed memory, still never written
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        }
        isReadOnlyZeros = true
    }

    deinit {
        guard case .owned = backing else { return }
        if isCachedBlock {
            BlockCache.free(pointer, byteCount: byteCount)
        } else if isZeroPageMap {
            munmap(pointer, byteCount)
        } else {
            pointer.deallocate()
        }
    }
}
