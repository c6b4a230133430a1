import Foundation
import Testing
import PaellaTestSupport
@testable import PaellaIO
import PaellaCore

// Crafted checkpoints of each class in issue 23: arithmetic that would trap, walks and copies whose work is a
// product of counts from the file, memory out of proportion to the file, paths that are not regular files, and
// names that carry terminal escapes. Each is built here byte by byte; each must be refused with one sentence (or
// read correctly, where the file is legitimate but awkward) in well under a second.
//
// With PAELLA_HOSTILE_CORPUS_DIR set, every crafted file is also written into that folder (seeds for fuzzing and
// for running the files through the `paella` command line).

/// Raw deflate (RFC 1951) of `count` zero bytes: one fixed-Huffman block holding a literal 0 and then copies of
/// 258 bytes at distance 1, 13 bits each (about 160:1), the shape of a deflate bomb, built without zlib.
func zerosDeflated(_ count: Int) -> [UInt8] {
    var out: [UInt8] = []
    var buffer: UInt64 = 0
    var filled = 0
    func bits(_ value: UInt32, _ n: Int) {  // deflate packs fields least significant bit first
        buffer |= UInt64(value) << UInt64(filled)
        filled += n
        while filled >= 8 { out.append(UInt8(buffer & 0xFF)); buffer >>= 8; filled -= 8 }
    }
    func huffman(_ code: UInt32, _ n: Int) {  // ... but Huffman codes most significant bit first
        var reversed: UInt32 = 0
        for i in 0..<n { reversed |= ((code >> UInt32(i)) & 1) << UInt32(n - 1 - i) }
        bits(reversed, n)
    }
    bits(1, 1); bits(1, 2)  // BFINAL, BTYPE = fixed Huffman
    var left = count
    if left > 0 { huffman(0x30, 8); left -= 1 }  // literal 0
    while left >= 258 { huffman(0xC5, 8); huffman(0, 5); left -= 258 }  // length code 285 (258), distance code 0 (1)
    while left > 0 { huffman(0x30, 8); left -= 1 }
    huffman(0, 7)  // end of block
    if filled > 0 { out.append(UInt8(buffer & 0xFF)) }
    return out
}

@Suite("Hostile checkpoints")
struct HostileCheckpointTests {
    /// Saves `bytes` as a seed when PAELLA_HOSTILE_CORPUS_DIR is set.
    func seed(_ name: String, _ bytes: [UInt8]) {
        guard let folder = ProcessInfo.processInfo.environment["PAELLA_HOSTILE_CORPUS_DIR"] else { return }
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: folder + "/" + name, contents: Data(bytes))
    }

    /// Opens `bytes` as a checkpoint within `limits`; returns the error and how long refusing it took.
    func refusal(_ name: String, _ bytes: [UInt8], limits: CheckpointLimits = CheckpointLimits(),
                 suffix: String = ".pt") -> (error: (any Error)?, seconds: Double) {
        seed(name + suffix, bytes)
        let start = ContinuousClock.now
        let error = withTemporaryFile(bytes, suffix: suffix) { path in
            #expect(throws: (any Error).self, "\(name)") { _ = try CheckpointInspector.inspect(path: path, limits: limits) }
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        if let error {
            let text = "\(error)"
            #expect(text.filter { $0 == "." }.count >= 1 && !text.contains("\n") && !text.contains("\u{1B}"), "\(name): \(text)")
        }
        #expect(seconds < TimeGuard.seconds(5), "\(name) took \(seconds) s")
        return (error, seconds)
    }

    /// A one-tensor state dict `{"w": tensor}` over storage "0" with the given layout.
    func oneTensor(numel: Int, offset: Int = 0, size: [Int], stride: [Int]) -> [UInt8] {
        PickleBuilder.stateDict { b in b.string("w"); b.tensor(key: "0", numel: numel, offset: offset, size: size, stride: stride) }
    }

    // MARK: 1. Integer overflow in tensor rebuilding

    @Test func wrappingShapesStridesAndOffsetsAreRefused() throws {
        let storage = [("0", floatBytes([1, 2, 3, 4]))]
        let cases: [(String, [UInt8], String)] = [
            // 2^32 x 2^32 wraps to 0 before the zero dimension is even reached.
            ("overflow-shape-with-zero", oneTensor(numel: 4, size: [1 << 32, 1 << 32, 0], stride: [1, 1, 1]), "overflows a 64-bit count"),
            ("overflow-shape", oneTensor(numel: 4, size: [1 << 40, 1 << 40], stride: [1, 1]), "overflows a 64-bit count"),
            ("overflow-stride-span", oneTensor(numel: 4, size: [2, 2], stride: [Int.max, 1]), "overflow a 64-bit index"),
            ("overflow-offset", oneTensor(numel: 4, offset: Int.max - 1, size: [4], stride: [1]), "overflow a 64-bit index"),
        ]
        for (name, pickle, phrase) in cases {
            let (error, _) = refusal(name, checkpointArchive(pickle, storages: storage))
            guard case .invalidTensor(let what)? = error as? PickleError else {
                Issue.record("\(name): \(String(describing: error))"); continue
            }
            #expect(what.contains(phrase), "\(name): \(what)")
        }
    }

    @Test func aSizeOneDimensionWithAHugeStrideIsIgnoredNotTrapped() throws {
        // Elements 0 and 2 of the storage, through a size-1 dimension whose stride would overflow the running
        // source offset of a naive odometer walk.
        let pickle = oneTensor(numel: 4, size: [2, 1], stride: [2, Int.max])
        let bytes = checkpointArchive(pickle, storages: [("0", floatBytes([1, 2, 3, 4]))])
        seed("huge-stride-size-one.pt", bytes)
        try withTemporaryFile(bytes, suffix: ".pt") { path in
            let tensor = try #require(try PyTorchCheckpoint(path: path)["w"])
            #expect(tensor.shape == [2, 1] && tensor.floats == [1, 3])
        }
    }

    // MARK: 2. Shared pickle structure

    @Test func aDictSharedAlongEveryPathIsWalkedOnce() throws {
        // d0 = {"w": tensor}; d_i = {"a": d_(i-1), "b": d_(i-1)}: 2^60 paths to the tensor in a few hundred bytes.
        var b = PickleBuilder()
        b.op(0x7D); b.string("w"); b.tensor(key: "0", numel: 2, size: [2]); b.op(0x73); b.put(0)
        for i in 1...60 {
            b.op(0x7D); b.mark(); b.shortString("a"); b.get(i - 1); b.shortString("b"); b.get(i - 1); b.op(0x75); b.put(i)
        }
        b.stop()
        let bytes = checkpointArchive(b.bytes, storages: [("0", floatBytes([5, 6]))])
        seed("shared-dict-dag.pt", bytes)
        let start = ContinuousClock.now
        try withTemporaryFile(bytes, suffix: ".pt") { path in
            let checkpoint = try PyTorchCheckpoint(path: path)
            #expect(checkpoint.names == [String(repeating: "a.", count: 60) + "w"])
        }
        #expect(ContinuousClock.now - start < TimeGuard.duration(5))
    }

    @Test func aPersistentIDHoldingAContainerIsRefusedUnconverted() throws {
        // torch.save's ids hold scalars only; one that holds a (possibly huge, shared) list is refused as it is.
        var b = PickleBuilder()
        b.op(0x7D); b.string("w")
        b.global("torch._utils", "_rebuild_tensor_v2")
        b.tuple { t in
            t.tuple { p in p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.op(0x5D); p.int(2) }
            t.op(0x51); t.int(0); t.intTuple([2]); t.intTuple([1]); t.bool(false); t.none()
        }
        b.reduce(); b.op(0x73); b.stop()
        let (error, _) = refusal("persistent-id-with-list", checkpointArchive(b.bytes, storages: [("0", floatBytes([1, 2]))]))
        #expect("\(String(describing: error))".contains("a persistent id is not a flat ('storage', type, key, location, numel) tuple"))
    }

    // MARK: 3. Work that is a product of counts

    @Test func manyTrailingSizeOneDimensionsCopyInLinearTime() throws {
        // A strided (copied) tensor of 2,048 elements with 200,000 trailing size-1 dimensions.
        let ones = 200_000
        let size = [2048] + [Int](repeating: 1, count: ones)
        let stride = [2] + [Int](repeating: 1, count: ones)
        let values = (0..<4096).map(Float.init)
        let bytes = checkpointArchive(oneTensor(numel: 4096, size: size, stride: stride), storages: [("0", floatBytes(values))])
        seed("million-size-one-dims.pt", bytes)
        let start = ContinuousClock.now
        try withTemporaryFile(bytes, suffix: ".pt") { path in
            let tensor = try #require(try PyTorchCheckpoint(path: path)["w"])
            #expect(tensor.shape.count == ones + 1 && tensor.floats == (0..<2048).map { Float($0 * 2) })
        }
        #expect(ContinuousClock.now - start < TimeGuard.duration(10))
    }

    @Test func repeatedAppendsToASharedListAreBounded() throws {
        // Each round snapshots the list with set(L) and appends to it, so a naive reader copies the growing list
        // every round (quadratic time and memory); the object budget stops it.
        var b = PickleBuilder()
        b.op(0x5D); b.put(0)
        for _ in 0..<20_000 {
            b.global("builtins", "set"); b.get(0); b.op(0x85); b.reduce(); b.op(0x30)
            b.mark(); b.int(7); b.op(0x65)
        }
        b.op(0x30); b.op(0x7D); b.stop()
        let (error, _) = refusal("appends-rounds-shared-list", checkpointArchive(b.bytes, storages: []))
        guard case .limitExceeded(let what)? = error as? PickleError else { Issue.record("\(String(describing: error))"); return }
        #expect(what.contains("objects"), "\(what)")
    }

    // MARK: 4. Memory not bounded by the input

    @Test func containersMadeAndDroppedCountAgainstTheObjectCap() throws {
        var b = PickleBuilder()
        for _ in 0..<5_000 { b.op(0x5D, 0x30) }  // EMPTY_LIST, POP
        b.op(0x7D); b.stop()
        var limits = CheckpointLimits()
        limits.pickle.maxObjects = 1_000
        let (error, _) = refusal("tiny-containers", checkpointArchive(b.bytes, storages: []), limits: limits)
        #expect(error as? PickleError == .limitExceeded(what: "its pickle creates more than 1000 objects"))
        // Within the default cap the same file loads.
        try withTemporaryFile(checkpointArchive(b.bytes, storages: []), suffix: ".pt") { path in
            let checkpoint = try PyTorchCheckpoint(path: path)
            #expect(checkpoint.tensors.isEmpty)
        }
    }

    @Test func expandingAMemoisedStringOrListManyTimesIsRefused() throws {
        // _codecs.encode of one 64 KiB memoised string, 2,000 times: 128 MB of bytes from a 70 KB pickle.
        var encode = PickleBuilder()
        encode.string(String(repeating: "x", count: 1 << 16)); encode.put(0); encode.op(0x30)
        encode.op(0x5D); encode.mark()
        for _ in 0..<2_000 {
            encode.global("_codecs", "encode"); encode.tuple { $0.get(0); $0.shortString("latin1") }; encode.reduce()
        }
        encode.op(0x65); encode.stop()
        let (error, _) = refusal("codecs-encode-expansion", checkpointArchive(encode.bytes, storages: []))
        guard case .limitExceeded(let what)? = error as? PickleError else { Issue.record("\(String(describing: error))"); return }
        #expect(what.contains("per byte"), "\(what)")
    }

    @Test func manyStridedViewsOfOneStorageAreRefused() throws {
        // 100 strided (so copied) views of every other element of one 1,024-element storage.
        let pickle = PickleBuilder.stateDict { b in
            for i in 0..<100 { b.string("v\(i)"); b.tensor(key: "0", numel: 1024, size: [512], stride: [2]) }
        }
        let storage = [("0", floatBytes([Float](repeating: 1, count: 1024)))]
        let (error, _) = refusal("strided-views-copied", checkpointArchive(pickle, storages: storage))
        #expect(error as? PickleError == .limitExceeded(what: "its strided or misaligned tensors copy storage 0 more than 4 times over"))
        // Eight such views (four copies of the storage) are fine.
        let eight = PickleBuilder.stateDict { b in
            for i in 0..<8 { b.string("v\(i)"); b.tensor(key: "0", numel: 1024, size: [512], stride: [2]) }
        }
        try withTemporaryFile(checkpointArchive(eight, storages: storage), suffix: ".pt") { path in
            let checkpoint = try PyTorchCheckpoint(path: path)
            #expect(checkpoint.tensors.count == 8)
        }
    }

    /// A torch.save-shaped archive whose data.pkl is deflated and declares `inflated` bytes.
    func deflatedPickleArchive(inflated: Int, payload: [UInt8], crc: UInt32 = 0) -> [UInt8] {
        TestZip(entries: [
            .init(name: "a/data.pkl", payload: payload, method: 8, uncompressedSize: inflated, crc: crc),
            .init(name: "a/byteorder", payload: Array("little".utf8)),
        ]).build().bytes
    }

    @Test func deflateBombsAreRefusedBeforeInflating() throws {
        let size = 64 << 20
        let (error, seconds) = refusal("deflate-bomb-data-pkl", deflatedPickleArchive(inflated: size, payload: zerosDeflated(size)))
        guard case .limitExceeded(_, let what)? = error as? ZipError else { Issue.record("\(String(describing: error))"); return }
        #expect(what.contains("more than 32 times its compressed size"), "\(what)")
        #expect(seconds < TimeGuard.seconds(1))

        // A storage entry, and entries that pass the ratio but not the total.
        let storageBomb = TestZip(entries: [
            .init(name: "a/data.pkl", payload: oneTensor(numel: size / 4, size: [size / 4], stride: [1])),
            .init(name: "a/data/0", payload: zerosDeflated(size), method: 8, uncompressedSize: size, crc: 0),
        ]).build().bytes
        let storageError = refusal("deflate-bomb-storage", storageBomb).error
        #expect("\(String(describing: storageError))".contains("times its compressed size"))

        var limits = CheckpointLimits()
        limits.zip.maxTotalInflatedBytes = 1 << 20
        let chunk = [UInt8](repeating: 0x41, count: 300_000)
        var entries: [TestZip.Entry] = []
        for i in 0..<4 {
            // A stored deflate block holds at most 65,535 bytes: chain five of them per entry.
            var payload: [UInt8] = []
            var left = chunk.count
            while left > 0 {
                let n = min(left, 65_535)
                left -= n
                payload += [left == 0 ? 1 : 0, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
                payload += chunk.prefix(n)
            }
            entries.append(.init(name: "a/data/\(i)", payload: payload, method: 8, uncompressedSize: chunk.count, crc: testCRC32(chunk)))
        }
        let total = refusal("deflate-total", TestZip(entries: entries).build().bytes, limits: limits).error
        #expect("\(String(describing: total))".contains("its deflated entries inflate to more than 1048576 bytes in total"))
    }

    @Test func centralDirectoryEntriesSharingALocalEntryAreRefused() throws {
        // Two central records, the second re-pointed at the first's local header (each would be inflated anew).
        let built = TestZip(entries: [
            .init(name: "a/data.pkl", payload: [0x80, 2, 0x7D, 0x2E]),
            .init(name: "a/data/0", payload: floatBytes([1, 2, 3, 4])),
        ]).build()
        var bytes = built.bytes
        bytes.putLE(UInt64(built.localOffsets[0]), at: built.centralOffsets[1] + 42, width: 4)
        bytes.putLE(4, at: built.centralOffsets[1] + 20, width: 4)  // the sizes of the entry it now points at
        bytes.putLE(4, at: built.centralOffsets[1] + 24, width: 4)
        let (error, _) = refusal("duplicate-central-entries", bytes)
        #expect("\(String(describing: error))".contains("share bytes of the file"), "\(String(describing: error))")
    }

    @Test func byteorderRecordsAreCheckedBeforeTheyAreRead() throws {
        let pickle: [UInt8] = [0x80, 2, 0x7D, 0x2E]
        let huge = checkpointArchive(pickle, storages: [], byteorder: String(repeating: "little", count: 200_000))
        let (error, _) = refusal("byteorder-huge", huge)
        #expect("\(String(describing: error))".contains("its byteorder record should say \"little\" or \"big\" but is 1200000 bytes long."))
        #expect(!"\(String(describing: error))".contains("big-endian"))

        let odd = refusal("byteorder-odd", checkpointArchive(pickle, storages: [], byteorder: "mid\u{1B}[2J")).error
        #expect("\(String(describing: odd))".contains("but says \"mid\\u{1B}[2J\"."), "\(String(describing: odd))")
        let big = refusal("byteorder-big", checkpointArchive(pickle, storages: [], byteorder: "big")).error
        #expect("\(String(describing: big))".contains("big-endian"))

        // A deflated byteorder bomb: refused from its declared size, never inflated.
        let bomb = TestZip(entries: [
            .init(name: "a/data.pkl", payload: pickle),
            .init(name: "a/byteorder", payload: zerosDeflated(1 << 20), method: 8, uncompressedSize: 1 << 20, crc: 0),
        ]).build().bytes
        var limits = CheckpointLimits()
        limits.zip.maxCompressionRatio = 10_000  // let the archive open, so the byteorder check itself is tested
        let bombError = refusal("byteorder-deflate-bomb", bomb, limits: limits).error
        #expect("\(String(describing: bombError))".contains("but is 1048576 bytes long"))
    }

    // MARK: 5. Paths that are not regular files

    @Test func fifosDevicesAndDirectoriesAreRefusedWithoutBlocking() throws {
        let folder = NSTemporaryDirectory() + "paella-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/model.pt"
        #expect(mkfifo(fifo, 0o600) == 0)
        let cases = [(fifo, "a named pipe (FIFO)"), ("/dev/zero", "a character device"), (folder, "a directory")]
        for (path, kind) in cases {
            let inspect = #expect(throws: InputFileError.self) { _ = try CheckpointInspector.inspect(path: path) }
            #expect(inspect == .notARegularFile(path: path, kind: kind))
            #expect(throws: InputFileError.notARegularFile(path: path, kind: kind)) { _ = try PyTorchCheckpoint(path: path) }
            #expect(throws: InputFileError.notARegularFile(path: path, kind: kind)) { _ = try SafeTensors(path: path) }
            #expect(throws: InputFileError.notARegularFile(path: path, kind: kind)) { _ = try ZipArchive(path: path) }
        }
        #expect(InputFileError.notARegularFile(path: fifo, kind: "a named pipe (FIFO)").description
                == "\(fifo) is a named pipe (FIFO), not a regular file; give the path of the file itself.")
    }

    // MARK: 6. Terminal escapes

    @Test func controlCharactersInNamesAreEscapedInTheTable() throws {
        let evil = "w\u{1B}]0;pwned\u{07}\r\u{202E}x"
        let pickle = PickleBuilder.stateDict { b in b.string(evil); b.tensor(key: "0", numel: 2, size: [2]) }
        let bytes = checkpointArchive(pickle, storages: [("0", floatBytes([1, 2]))])
        seed("escape-in-name.pt", bytes)
        try withTemporaryFile(bytes, suffix: ".pt") { path in
            let report = try CheckpointInspector.inspect(path: path)
            let table = report.table()
            #expect(table.contains("w\\u{1B}]0;pwned\\u{7}\\u{D}\\u{202E}x"), "\(table)")
            #expect(!table.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" } && !table.contains("\u{202E}"))
            #expect(report.json().contains("\\u001b]0;pwned"))  // JSON keeps the name, escaped its own way
            #expect(report.json().contains("\\u0007\\r\\u202ex") && !report.json().contains("\u{202E}"))
        }
        // Error messages quoting a name escape it too.
        let forbidden = PickleError.forbiddenGlobal(module: "os\u{1B}[31m", name: "system")
        #expect(forbidden.description.contains("os\\u{1B}[31m.system"))
        #expect(terminalSafe("plain name.weight") == "plain name.weight")
        // JSON escapes every terminal control and the JavaScript line separators, and stays the same string.
        let tricky = "a\u{7F}b\u{9B}c\u{2028}d\u{2066}e\u{1B}"
        let literal = jsonStringLiteral(tricky)
        #expect(literal == #""a\u007fb\u009bc\u2028d\u2066e\u001b""#)
        #expect(try JSONDecoder().decode(String.self, from: Data(literal.utf8)) == tricky)
        #expect(jsonStringLiteral("plain \u{e9}t\u{e9} \u{1F600}") == "\"plain \u{e9}t\u{e9} \u{1F600}\"")
        #expect(terminalSafe(String(repeating: "y", count: 500), maxLength: 10) == "yyyyyyyyyy...")
    }

    // MARK: 7. Messages that say what is wrong

    @Test func aBigIntegerOffsetIsCalledThat() throws {
        var b = PickleBuilder()
        b.op(0x7D); b.string("w")
        b.global("torch._utils", "_rebuild_tensor_v2")
        b.tuple { t in
            t.tuple { p in p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(2) }
            t.op(0x51)
            t.op(0x8A, 9); t.bytes += [UInt8](repeating: 0, count: 8) + [1]  // 2^64
            t.intTuple([2]); t.intTuple([1]); t.bool(false); t.none()
        }
        b.reduce(); b.op(0x73); b.stop()
        let (error, _) = refusal("bigint-offset", checkpointArchive(b.bytes, storages: [("0", floatBytes([1, 2]))]))
        #expect("\(String(describing: error))".contains("a storage offset that is an integer wider than 64 bits"), "\(String(describing: error))")
    }

    // MARK: Limits from issue 19: safetensors header, tensor count; overriding

    @Test func safetensorsHeaderAndTensorCountLimits() throws {
        func safetensors(_ count: Int, shape: String = "[1]") -> [UInt8] {
            let entries = (0..<count).map { "\"t\($0)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\($0 * 4),\($0 * 4 + 4)]}" }
            var header = Array("{\(entries.joined(separator: ","))}".utf8)
            while header.count % 8 != 0 { header.append(0x20) }
            var out: [UInt8] = []
            for i in 0..<8 { out.append(UInt8((UInt64(header.count) >> (8 * UInt64(i))) & 0xFF)) }
            return out + header + [UInt8](repeating: 0, count: count * 4)
        }
        var limits = CheckpointLimits()
        limits.safetensors.maxTensors = 3
        let many = refusal("safetensors-many-tensors", safetensors(4), limits: limits, suffix: ".safetensors").error
        guard case .tooManyTensors(_, 4, 3)? = many as? SafeTensorsError else { Issue.record("\(String(describing: many))"); return }
        limits.safetensors.maxHeaderBytes = 64
        let long = refusal("safetensors-header-limit", safetensors(3), limits: limits, suffix: ".safetensors").error
        #expect("\(String(describing: long))".contains("larger than the limit of 64 bytes"))
        // A zero size does not hide a product that overflows.
        let zero = refusal("safetensors-zero-dim-overflow", safetensors(1, shape: "[0,1099511627776,1099511627776,1]"),
                           suffix: ".safetensors").error
        guard case .shapeTooLarge? = zero as? SafeTensorsError else { Issue.record("\(String(describing: zero))"); return }
        try withTemporaryFile(safetensors(4), suffix: ".safetensors") { path in
            let report = try CheckpointInspector.inspect(path: path)
            #expect(report.entries.count == 4)
        }
    }

    @Test func limitsAreRaisedByName() throws {
        let limits = try CheckpointLimits.parse("max-inflated-bytes=8Gi, max-pickle-objects=20000000,max-safetensors-tensors=2M")
        #expect(limits.zip.maxTotalInflatedBytes == 8 << 30 && limits.pickle.maxObjects == 20_000_000)
        #expect(limits.safetensors.maxTensors == 2 << 20 && limits.pickle.maxStack == Unpickler.Limits().maxStack)
        #expect(throws: CheckpointLimitsError.unknownSetting("max-everything=1")) { _ = try CheckpointLimits.parse("max-everything=1") }
        #expect(throws: CheckpointLimitsError.badValue(name: "max-pickle-objects", value: "-3")) {
            _ = try CheckpointLimits.parse("max-pickle-objects=-3")
        }
        #expect(CheckpointLimits.parseCount("99999999999999999999") == nil && CheckpointLimits.parseCount("64Ki") == 65_536)
    }

    @Test func legitimateCheckpointsStillLoad() throws {
        for fixture in ["denoiser_v1_tiny.pt", "vqgan_tiny.ckpt"] {
            let report = try CheckpointInspector.inspect(path: Fixtures.path(fixture))
            #expect(report.entries.count > 10, "\(fixture)")
        }
    }
}
