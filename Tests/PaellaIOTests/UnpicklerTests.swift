import Foundation
import Testing
import PaellaTestSupport
@testable import PaellaIO
import PaellaCore

// MARK: - Test support: pickles written opcode by opcode

/// Writes pickle bytes by hand (opcode values from CPython's Lib/pickle.py), the way torch.save's protocol-2
/// pickler lays out a state dict, so tests can also write the hostile variants.
struct PickleBuilder {
    var bytes: [UInt8]

    init(protocol version: UInt8 = 2) { bytes = [0x80, version] }

    mutating func op(_ codes: UInt8...) { bytes += codes }
    mutating func le(_ value: UInt64, _ width: Int) { for i in 0..<width { bytes.append(UInt8((value >> (8 * UInt64(i))) & 0xFF)) } }

    mutating func mark() { op(0x28) }
    mutating func stop() { op(0x2E) }
    mutating func none() { op(0x4E) }
    mutating func bool(_ v: Bool) { op(v ? 0x88 : 0x89) }
    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { op(0x4B, UInt8(v)) }
        else if v >= 0 && v < 65536 { op(0x4D); le(UInt64(v), 2) }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { op(0x4A); le(UInt64(UInt32(bitPattern: Int32(v))), 4) }
        else { op(0x8A, 8); le(UInt64(bitPattern: Int64(v)), 8) }
    }
    mutating func float(_ v: Double) { op(0x47); bytes += withUnsafeBytes(of: v.bitPattern.bigEndian) { Array($0) } }
    mutating func string(_ s: String) { let u = Array(s.utf8); op(0x58); le(UInt64(u.count), 4); bytes += u }
    mutating func shortString(_ s: String) { let u = Array(s.utf8); op(0x8C, UInt8(u.count)); bytes += u }
    mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func stackGlobal(_ module: String, _ name: String) { shortString(module); shortString(name); op(0x93) }
    mutating func put(_ i: Int) { if i < 256 { op(0x71, UInt8(i)) } else { op(0x72); le(UInt64(i), 4) } }
    mutating func get(_ i: Int) { if i < 256 { op(0x68, UInt8(i)) } else { op(0x6A); le(UInt64(i), 4) } }
    mutating func tuple(_ body: (inout PickleBuilder) -> Void) { mark(); body(&self); op(0x74) }
    mutating func intTuple(_ values: [Int]) { tuple { b in for v in values { b.int(v) } } }
    mutating func reduce() { op(0x52) }
    mutating func emptyTuple() { op(0x29) }

    /// `_rebuild_tensor_v2((persistent storage id), offset, size, stride, False, OrderedDict())` as torch.save writes it.
    mutating func tensor(storageType: String = "FloatStorage", key: String, numel: Int, offset: Int = 0,
                         size: [Int], stride: [Int]? = nil, rebuild: String = "_rebuild_tensor_v2") {
        global("torch._utils", rebuild)
        tuple { b in
            b.tuple { p in
                p.string("storage"); p.global("torch", storageType); p.string(key); p.string("cpu"); p.int(numel)
            }
            b.op(0x51)  // BINPERSID
            b.int(offset)
            b.intTuple(size)
            b.intTuple(stride ?? PickleBuilder.contiguousStrides(size))
            b.bool(false)
            b.global("collections", "OrderedDict"); b.emptyTuple(); b.reduce()
        }
        reduce()
    }

    static func contiguousStrides(_ size: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: size.count)
        var s = 1
        for d in stride(from: size.count - 1, through: 0, by: -1) { strides[d] = s; s = s &* size[d] }
        return strides
    }

    /// A whole `OrderedDict` state dict pickle.
    static func stateDict(_ body: (inout PickleBuilder) -> Void) -> [UInt8] {
        var b = PickleBuilder()
        b.global("collections", "OrderedDict"); b.emptyTuple(); b.reduce()
        b.mark(); body(&b); b.op(0x75)  // SETITEMS
        b.stop()
        return b.bytes
    }
}

/// A persistent loader over in-memory storages (one TensorStorage per key, as PyTorchCheckpoint does), for
/// exercising tensor rebuilding without a zip.
func memoryStorages(_ storages: [String: (DType, [UInt8])]) -> Unpickler.PersistentLoader {
    var made: [String: TensorStorage] = [:]
    return { pid in
        guard case .tuple(let t) = pid, t.count == 5, case .string(let key) = t[2], case .int(let numel) = t[4],
              let (dtype, data) = storages[key] else { throw PickleError.malformed(offset: -1, what: "test loader: bad id \(pid)") }
        let storage = made[key] ?? TensorStorage(byteCount: data.count)
        if made[key] == nil {
            data.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: data.count) }
            made[key] = storage
        }
        return PickleStorage(typeName: "test", dtype: dtype, key: key, location: "cpu", elementCount: numel, storage: storage)
    }
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

// MARK: - Tests

@Suite("Unpickler")
struct UnpicklerTests {
    let unpickler = Unpickler()

    @Test func scalarsAndStrings() throws {
        var b = PickleBuilder(protocol: 4)
        b.op(0x95); b.le(0, 8)  // FRAME (a length hint, ignored)
        b.mark()
        b.int(7); b.int(300); b.int(-5); b.int(1 << 40)
        b.op(0x8A, 0)  // LONG1 of length 0 is 0
        b.op(0x8A, 2, 0x00, 0xFF)  // LONG1 -256
        b.op(0x8A, 9); b.bytes += [UInt8](repeating: 0, count: 8) + [1]  // 2^64: wider than Int
        b.float(-2.5); b.none(); b.bool(true); b.bool(false)
        b.string("héllo"); b.shortString("short")
        b.op(0x8D); b.le(3, 8); b.bytes += Array("u8!".utf8)  // BINUNICODE8
        b.op(0x55, 2); b.bytes += [0x61, 0xE9]  // SHORT_BINSTRING with a Latin-1 byte
        b.op(0x43, 2, 0xDE, 0xAD)  // SHORT_BINBYTES
        b.global("_codecs", "encode"); b.tuple { $0.string("\u{00FF}A"); $0.string("latin1") }; b.reduce()
        b.op(0x74)  // TUPLE
        b.stop()
        let value = try unpickler.load(b.bytes)
        let items = try #require(value.items)
        #expect(items.count == 17)
        #expect(items[0].int == 7 && items[1].int == 300 && items[2].int == -5 && items[3].int == 1 << 40)
        #expect(items[4].int == 0 && items[5].int == -256)
        guard case .bigInt(let big) = items[6] else { Issue.record("expected a big int"); return }
        #expect(big == [0, 0, 0, 0, 0, 0, 0, 0, 1])
        guard case .float(let f) = items[7], case .none = items[8], case .bool(true) = items[9], case .bool(false) = items[10] else {
            Issue.record("constants decoded wrong: \(items[7...10])"); return
        }
        #expect(f == -2.5)
        #expect(items[11].string == "héllo" && items[12].string == "short" && items[13].string == "u8!")
        #expect(items[14].string == "aé")
        guard case .bytes(let raw) = items[15], case .bytes(let encoded) = items[16] else { Issue.record("expected bytes"); return }
        #expect(raw == [0xDE, 0xAD] && encoded == [0xFF, 0x41])
    }

    @Test func containersMemoAndMutationAfterMemoize() throws {
        // d = {}; memo[0] = d; d['a'] = [1, 2]; d['b'] = memo[0]['a'] via BINGET of the list; d['a'] replaced.
        var b = PickleBuilder()
        b.op(0x7D); b.put(0)  // EMPTY_DICT, BINPUT 0
        b.mark()
        b.string("a"); b.op(0x5D); b.put(1); b.mark(); b.int(1); b.int(2); b.op(0x65)  // list [1, 2] via APPENDS
        b.string("s"); b.op(0x8F); b.mark(); b.int(3); b.int(3); b.op(0x90)  // EMPTY_SET + ADDITEMS
        b.op(0x75)  // SETITEMS
        b.get(1); b.int(9); b.op(0x61); b.op(0x30)  // memo[1].append(9) after it was stored, then POP
        b.string("t"); b.get(1); b.int(4); b.op(0x86); b.op(0x73)  // d['t'] = (list, 4)
        b.string("s"); b.op(0x4E); b.op(0x73)  // a repeated key replaces the value but keeps its position
        b.string("f"); b.mark(); b.int(1); b.op(0x91); b.op(0x73)  // FROZENSET
        b.string("o"); b.global("collections", "OrderedDict"); b.emptyTuple(); b.reduce(); b.op(0x73)
        b.stop()
        let value = try unpickler.load(b.bytes)
        let d = try #require(value.dict)
        #expect(d.entries.map { $0.key.string ?? "?" } == ["a", "s", "t", "f", "o"])
        #expect(d["a"]?.items?.compactMap(\.int) == [1, 2, 9])
        guard case .none? = d["s"] else { Issue.record("repeated key did not replace: \(String(describing: d["s"]))"); return }
        #expect(d["t"]?.items?.first?.items?.compactMap(\.int) == [1, 2, 9])
        guard case .set(let f)? = d["f"], case .dict(let od)? = d["o"] else { Issue.record("set / OrderedDict missing"); return }
        #expect(f.count == 1 && od.count == 0)
    }

    @Test func protocol4StackGlobalAndMemoize() throws {
        var b = PickleBuilder(protocol: 4)
        b.stackGlobal("collections", "OrderedDict"); b.op(0x94); b.emptyTuple(); b.reduce(); b.op(0x94)
        b.shortString("k"); b.op(0x94); b.int(5); b.op(0x73)
        b.op(0x68, 2)  // BINGET 2: the key string memoized third
        b.op(0x30)
        b.stop()
        let value = try unpickler.load(b.bytes)
        #expect(value["k"]?.int == 5)
    }

    @Test func metadataObjectsAreRecordedNotConstructed() throws {
        var b = PickleBuilder()
        b.op(0x7D); b.mark()
        b.string("hparams")
        b.global("argparse", "Namespace"); b.emptyTuple(); b.op(0x81)  // NEWOBJ
        b.op(0x7D); b.string("lr"); b.float(1e-4); b.op(0x73); b.op(0x62)  // BUILD {'lr': 1e-4}
        b.string("attrs")
        b.global("pytorch_lightning.utilities.parsing", "AttributeDict"); b.emptyTuple(); b.op(0x81)
        b.string("batch"); b.int(8); b.op(0x73)
        b.op(0x75); b.stop()
        let value = try unpickler.load(b.bytes)
        guard case .object(let ns)? = value["hparams"] else { Issue.record("expected an object"); return }
        #expect(ns.className == "argparse.Namespace")
        guard case .float(let lr)? = ns.state?["lr"] else { Issue.record("state lost"); return }
        #expect(lr == 1e-4)
        let attrs = try #require(value["attrs"]?.dict)
        #expect(attrs.className == "pytorch_lightning.utilities.parsing.AttributeDict" && attrs["batch"]?.int == 8)
    }

    // MARK: Tensors

    @Test func contiguousTensorsViewTheirStorage() throws {
        let values: [Float] = (0..<12).map(Float.init)
        let pickle = PickleBuilder.stateDict { b in
            b.string("w"); b.tensor(key: "0", numel: 12, size: [3, 4])
            b.string("row"); b.tensor(key: "0", numel: 12, offset: 8, size: [4])
            b.string("scalar"); b.tensor(key: "0", numel: 12, offset: 5, size: [])
            b.string("one_row"); b.tensor(key: "0", numel: 12, offset: 1, size: [1, 3], stride: [99, 1])  // a size-1 dim's stride is irrelevant
            b.string("empty"); b.tensor(key: "0", numel: 12, offset: 500, size: [0, 4])
        }
        let root = try unpickler.load(pickle, persistentLoad: memoryStorages(["0": (.float32, floatBytes(values))]))
        let w = try #require(root["w"]?.tensor), row = try #require(root["row"]?.tensor)
        #expect(w.shape == [3, 4] && w.floats == values)
        #expect(row.shape == [4] && row.floats == [8, 9, 10, 11])
        #expect(row.storage === w.storage && row.byteOffset == 32)  // one storage, no copies
        #expect(root["scalar"]?.tensor?.floats == [5])
        #expect(root["one_row"]?.tensor?.floats == [1, 2, 3] && root["one_row"]?.tensor?.storage === w.storage)
        #expect(root["empty"]?.tensor?.shape == [0, 4])
    }

    @Test func stridedTensorsAreCopiedContiguous() throws {
        let values: [Float] = (0..<6).map(Float.init)  // a 2x3 matrix
        let pickle = PickleBuilder.stateDict { b in
            b.string("t"); b.tensor(key: "0", numel: 6, size: [3, 2], stride: [1, 3])  // its transpose
            b.string("every_other"); b.tensor(key: "0", numel: 6, offset: 1, size: [3], stride: [2])
        }
        let root = try unpickler.load(pickle, persistentLoad: memoryStorages(["0": (.float32, floatBytes(values))]))
        let t = try #require(root["t"]?.tensor)
        #expect(t.shape == [3, 2] && t.floats == [0, 3, 1, 4, 2, 5])
        #expect(t.storage.isWritable)
        #expect(root["every_other"]?.tensor?.floats == [1, 3, 5])
    }

    @Test func parametersAndV3RebuildsUnwrapToTensors() throws {
        let halves: [UInt16] = [floatToFloat16(1.5), floatToFloat16(-2)]
        let pickle = PickleBuilder.stateDict { b in
            b.string("p")
            b.global("torch._utils", "_rebuild_parameter")
            b.tuple { t in t.tensor(storageType: "HalfStorage", key: "h", numel: 2, size: [2]); t.bool(true); t.global("collections", "OrderedDict"); t.emptyTuple(); t.reduce() }
            b.reduce()
            b.string("v3")  // an untyped (byte) storage reinterpreted as float16 by the dtype argument
            b.global("torch._utils", "_rebuild_tensor_v3")
            b.tuple { t in
                t.tuple { p in p.string("storage"); p.global("torch", "UntypedStorage"); p.string("u"); p.string("cpu"); p.int(4) }
                t.op(0x51); t.int(0); t.intTuple([2]); t.intTuple([1]); t.bool(false)
                t.global("collections", "OrderedDict"); t.emptyTuple(); t.reduce()
                t.global("torch", "float16")
            }
            b.reduce()
        }
        let raw = halves.withUnsafeBytes { Array($0) }
        let root = try unpickler.load(pickle, persistentLoad: memoryStorages(["h": (.float16, raw), "u": (.uint8, raw)]))
        #expect(root["p"]?.tensor?.dtype == .float16 && root["p"]?.tensor?.floats == [1.5, -2])
        #expect(root["v3"]?.tensor?.dtype == .float16 && root["v3"]?.tensor?.floats == [1.5, -2])
    }

    @Test func tensorsOutsideTheirStorageAreRefused() throws {
        let storages = memoryStorages(["0": (.float32, floatBytes([1, 2, 3, 4]))])
        let cases: [(String, (inout PickleBuilder) -> Void, String)] = [
            ("extent", { $0.tensor(key: "0", numel: 4, offset: 1, size: [4]) }, "reaches past the end of storage 0"),
            ("stride", { $0.tensor(key: "0", numel: 4, size: [2, 2], stride: [3, 1]) }, "reaches past the end"),
            ("overflow", { $0.tensor(key: "0", numel: 4, size: [Int(Int32.max), Int(Int32.max), 4]) }, "overflows a 64-bit count"),
            ("negative", { $0.tensor(key: "0", numel: 4, size: [-1]) }, "negative"),
            ("rank", { $0.tensor(key: "0", numel: 4, size: [2, 2], stride: [2]) }, "2 sizes but 1 strides"),
            ("expand", { $0.tensor(key: "0", numel: 4, size: [1000], stride: [0]) }, "would expand the 4 elements"),
        ]
        for (name, body, phrase) in cases {
            let pickle = PickleBuilder.stateDict { b in b.string(name); body(&b) }
            let error = #expect(throws: PickleError.self, "\(name)") { _ = try unpickler.load(pickle, persistentLoad: storages) }
            guard case .invalidTensor(let what)? = error else { Issue.record("\(name): got \(String(describing: error))"); continue }
            #expect(what.contains(phrase), "\(name): \(what)")
        }
    }

    // MARK: Hostile pickles

    /// The classic payloads: each global is refused by name before anything could be called, and the command
    /// it would have run (creating a marker file) never runs.
    @Test func dangerousGlobalsAreRefusedByName() throws {
        let marker = NSTemporaryDirectory() + "paella-pwned-\(UUID().uuidString)"
        let command = "touch \(marker)"
        func payload(_ reach: (inout PickleBuilder) -> Void) -> [UInt8] {
            var b = PickleBuilder(protocol: 4)
            reach(&b)
            b.tuple { $0.string(command) }
            b.reduce(); b.stop()
            return b.bytes
        }
        let cases: [(String, String, [UInt8])] = [
            ("os", "system", payload { $0.global("os", "system") }),
            ("os", "system", payload { $0.stackGlobal("os", "system") }),
            ("posix", "system", payload { $0.global("posix", "system") }),
            ("builtins", "eval", payload { $0.global("builtins", "eval") }),
            ("__builtin__", "eval", payload { $0.global("__builtin__", "eval") }),
            ("builtins", "exec", payload { $0.stackGlobal("builtins", "exec") }),
            ("subprocess", "Popen", payload { $0.global("subprocess", "Popen") }),
            ("builtins", "getattr", payload { $0.global("builtins", "getattr") }),
            ("copyreg", "_reconstructor", payload { $0.global("copyreg", "_reconstructor") }),
            ("torch", "load", payload { $0.global("torch", "load") }),
            ("torch._utils", "_rebuild_device_tensor_from_numpy", payload { $0.global("torch._utils", "_rebuild_device_tensor_from_numpy") }),
            ("numpy.core.multiarray", "_reconstruct", payload { $0.global("numpy.core.multiarray", "_reconstruct") }),
        ]
        for (module, name, bytes) in cases {
            let error = #expect(throws: PickleError.self) { _ = try unpickler.load(bytes) }
            #expect(error == .forbiddenGlobal(module: module, name: name))
            #expect(error?.description.contains("`\(module).\(name)`") == true, "\(String(describing: error))")
            #expect(error?.description.contains("could run code") == true)
        }
        // Also deep inside an otherwise normal state dict, after valid tensors.
        let nested = PickleBuilder.stateDict { b in
            b.string("ok"); b.tensor(key: "0", numel: 1, size: [1])
            b.string("evil"); b.global("os", "system"); b.tuple { $0.string(command) }; b.reduce()
        }
        let error = #expect(throws: PickleError.self) {
            _ = try unpickler.load(nested, persistentLoad: memoryStorages(["0": (.float32, floatBytes([1]))]))
        }
        #expect(error == .forbiddenGlobal(module: "os", name: "system"))
        #expect(!FileManager.default.fileExists(atPath: marker), "a payload ran")
    }

    @Test func malformedPicklesThrowTypedErrors() throws {
        func load(_ bytes: [UInt8], limits: Unpickler.Limits = Unpickler.Limits()) -> PickleError? {
            #expect(throws: PickleError.self) { _ = try Unpickler(limits: limits).load(bytes) }
        }
        // Unknown and unsupported opcodes, named with their offset.
        #expect(load([0x80, 2, 0xFF]) == .unsupportedOpcode(opcode: 0xFF, offset: 2))
        #expect(load([0x80, 2, 0x69] + Array("os\nsystem\n".utf8)) == .unsupportedOpcode(opcode: 0x69, offset: 2))  // INST
        #expect(load([0x80, 5, 0x97]) == .unsupportedOpcode(opcode: 0x97, offset: 2))  // NEXT_BUFFER
        #expect(load([0x80, 2, 0x49] + Array("1\n.".utf8))?.description.contains("'I'") == true)  // text INT
        #expect(load([0x80, 9, 0x4E, 0x2E])?.description.contains("protocol 9") == true)

        // Truncation: no STOP, a cut string, a cut integer, a GLOBAL without its newline.
        guard case .truncated? = load([0x80, 2, 0x4E]) else { Issue.record("missing STOP"); return }
        guard case .truncated? = load([0x80, 2, 0x58, 5, 0, 0, 0, 0x61]) else { Issue.record("cut string"); return }
        guard case .truncated? = load([0x80, 2, 0x4A, 1, 2]) else { Issue.record("cut BININT"); return }
        guard case .truncated? = load([0x80, 2, 0x63] + Array("os\nsys".utf8)) else { Issue.record("cut GLOBAL"); return }
        guard case .truncated? = load([]) else { Issue.record("empty"); return }

        // Huge length prefixes are checked against what remains before anything is allocated.
        let huge = load([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x61, 0x2E])
        #expect(huge?.description.contains("declares 4294967295 bytes but only 2 remain") == true, "\(String(describing: huge))")
        let huge8 = load([0x80, 4, 0x8E] + [UInt8](repeating: 0xFF, count: 8) + [0x2E])
        #expect(huge8?.description.contains("declares 18446744073709551615 bytes") == true)
        guard case .truncated? = load([0x80, 2, 0x8B, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E]) else { Issue.record("huge LONG4"); return }
        guard case .malformed? = load([0x80, 2, 0x54, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]) else { Issue.record("negative BINSTRING"); return }

        // Stack underflow: STOP on an empty stack, TUPLE2 with one value, SETITEMS without a MARK, POP_MARK.
        #expect(load([0x80, 2, 0x2E]) == .stackUnderflow(opcode: "STOP", offset: 2))
        #expect(load([0x80, 2, 0x4E, 0x86, 0x2E]) == .stackUnderflow(opcode: "TUPLE2", offset: 3))
        #expect(load([0x80, 2, 0x7D, 0x75, 0x2E]) == .stackUnderflow(opcode: "SETITEMS (no MARK)", offset: 3))
        #expect(load([0x80, 2, 0x28, 0x30, 0x2E]) == .stackUnderflow(opcode: "POP", offset: 3))  // MARK hides what is below
        #expect(load([0x80, 2, 0x4E, 0x71, 0, 0x28, 0x71, 1, 0x2E]) == .stackUnderflow(opcode: "PUT", offset: 6))

        // Memo reads of indices never written.
        #expect(load([0x80, 2, 0x68, 5, 0x2E]) == .memoMissing(index: 5, offset: 2))
        #expect(load([0x80, 2, 0x4E, 0x71, 0, 0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]) == .memoMissing(index: 0xFFFF_FFFF, offset: 5))

        // Text that is not UTF-8.
        let notUTF8 = load([0x80, 2, 0x58, 2, 0, 0, 0, 0xC3, 0x28, 0x2E])
        #expect(notUTF8?.description.contains("BINUNICODE is not valid UTF-8") == true)

        // Wrong kinds of values.
        let appendToDict = load([0x80, 2, 0x7D, 0x4E, 0x61, 0x2E])
        #expect(appendToDict?.description.contains("APPEND applies to a dict, not a list") == true)
        let setItemOnList = load([0x80, 2, 0x5D, 0x4E, 0x4E, 0x73, 0x2E])
        #expect(setItemOnList?.description.contains("SETITEM applies to a list, not a dict") == true)
        let callNonGlobal = load([0x80, 2, 0x4E, 0x29, 0x52, 0x2E])
        #expect(callNonGlobal?.description.contains("REDUCE calls None") == true)
        let persid = load([0x80, 2, 0x4E, 0x51, 0x2E])
        #expect(persid?.description.contains("persistent id") == true)
        let badRebuild = load(PickleBuilder.stateDict { b in
            b.string("x"); b.global("torch._utils", "_rebuild_tensor_v2"); b.tuple { $0.none() }; b.reduce()
        })
        #expect(badRebuild?.description.contains("1 arguments instead of 6 or 7") == true)
        let callStorage = load(PickleBuilder.stateDict { b in
            b.string("x"); b.global("torch", "FloatStorage"); b.emptyTuple(); b.reduce()
        })
        #expect(callStorage?.description.contains("torch.FloatStorage is called") == true)
    }

    @Test func resourceLimitsHold() throws {
        // 100 000 nested one-element tuples: built without recursion, refused at the nesting cap, no stack overflow.
        var deep = PickleBuilder()
        deep.none()
        deep.bytes += [UInt8](repeating: 0x85, count: 100_000)  // TUPLE1
        deep.stop()
        let nesting = #expect(throws: PickleError.self) { _ = try unpickler.load(deep.bytes) }
        #expect(nesting?.description.contains("nest deeper than 200 levels") == true)

        // A list that contains itself.
        let cycle = #expect(throws: PickleError.self) { _ = try unpickler.load([0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]) }
        guard case .limitExceeded? = cycle else { Issue.record("cycle: \(String(describing: cycle))"); return }

        // Shared sub-structures convert once (a "billion laughs" of 40 doublings stays small).
        var laughs = PickleBuilder()
        laughs.op(0x5D); laughs.put(0)
        for i in 1...40 { laughs.get(i - 1); laughs.get(i - 1); laughs.op(0x86); laughs.put(i); laughs.op(0x30) }
        laughs.get(40); laughs.stop()
        #expect(try unpickler.load(laughs.bytes).items?.count == 2)

        var limits = Unpickler.Limits()
        limits.maxStack = 1000
        var wide = PickleBuilder()
        wide.mark(); for _ in 0..<1001 { wide.none() }; wide.op(0x74); wide.stop()
        let stack = #expect(throws: PickleError.self) { _ = try Unpickler(limits: limits).load(wide.bytes) }
        #expect(stack == .limitExceeded(what: "its pickle stack grows past 1000 values"))
        var marks = PickleBuilder()
        for _ in 0..<1001 { marks.mark() }
        let markError = #expect(throws: PickleError.self) { _ = try Unpickler(limits: limits).load(marks.bytes) }
        #expect(markError == .limitExceeded(what: "its pickle nests more than 1000 MARKs"))

        limits.maxMemo = 10
        var memo = PickleBuilder()
        memo.none(); for i in 0..<11 { memo.put(i) }; memo.stop()
        let memoError = #expect(throws: PickleError.self) { _ = try Unpickler(limits: limits).load(memo.bytes) }
        #expect(memoError == .limitExceeded(what: "its pickle memo grows past 10 entries"))
    }
}
