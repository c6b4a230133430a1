import Foundation
import Testing
import PaellaTestSupport
@testable import PaellaIO
import PaellaCore

/// A torch.save-shaped archive: `<name>/data.pkl`, `byteorder`, one `data/<key>` entry per storage, `version`.
func checkpointArchive(_ pickle: [UInt8], storages: [(String, [UInt8])], name: String = "archive",
                       byteorder: String = "little", zip64: Bool = false) -> [UInt8] {
    var files: [(String, [UInt8])] = [("\(name)/data.pkl", pickle), ("\(name)/byteorder", Array(byteorder.utf8))]
    files += storages.map { ("\(name)/data/\($0.0)", $0.1) }
    files.append(("\(name)/version", Array("3\n".utf8)))
    return TestZip.stored(files, zip64: zip64).build().bytes
}

@Suite("PyTorchCheckpoint")
struct PyTorchCheckpointTests {
    /// Loads `checkpoint` and its `.safetensors` twin (both written from the same state dict by the fixture
    /// script, see Tests/Fixtures/README.md) and requires the same names, dtypes, shapes and bytes: the format
    /// stores raw little-endian elements, so any difference is a reader bug and no tolerance applies.
    /// `onlyInCheckpoint` says which extra names the checkpoint may carry (the Lightning `.ckpt` keeps the
    /// training loss's `loss.*` weights, which the model's safetensors leaves out).
    func expectSameTensors(_ checkpoint: String, _ safetensors: String,
                           onlyInCheckpoint: (String) -> Bool = { _ in false }) throws -> PyTorchCheckpoint {
        let pt = try PyTorchCheckpoint(path: Fixtures.path(checkpoint))
        let reference = try SafeTensors(path: Fixtures.path(safetensors))
        let names = pt.names.filter { !onlyInCheckpoint($0) }
        #expect(names.count == Set(names).count, "\(checkpoint): repeated names")
        #expect(Set(names).subtracting(reference.names).sorted() == [], "\(checkpoint): names not in \(safetensors)")
        #expect(Set(reference.names).subtracting(names).sorted() == [], "\(checkpoint): names missing")
        for (name, tensor) in pt.tensors {
            guard let expected = reference[name] else { continue }
            #expect(tensor.dtype == expected.dtype && tensor.shape == expected.shape, "\(name): \(tensor) vs \(expected)")
            let same = tensor.withUnsafeBytes { a in expected.withUnsafeBytes { b in a.elementsEqual(b) } }
            #expect(same, "\(checkpoint): bytes of \(name) differ")
            #expect(tensor.storage.isMapped, "\(name) was copied instead of viewing the file")
        }
        return pt
    }

    @Test func denoiserStateDictMatchesSafetensors() throws {
        let pt = try expectSameTensors("denoiser_v1_tiny.pt", "denoiser_v1_tiny.safetensors")
        #expect(pt.archiveName == "denoiser_v1_tiny")
        #expect(pt.names.first == "embedding.weight")  // file order: the first key torch.save wrote
        #expect(pt.stateDict?.attributes != nil)  // the OrderedDict's `_metadata`, recorded by BUILD
    }

    @Test func clipStateDictMatchesSafetensors() throws {
        let pt = try expectSameTensors("clip_tiny.bin", "clip_tiny.safetensors")
        #expect(pt.names.first == "positional_embedding")
    }

    @Test func lightningCheckpointMatchesSafetensorsAndKeepsTrainingFields() throws {
        let pt = try expectSameTensors("vqgan_tiny.ckpt", "vqgan_tiny.safetensors") { $0.hasPrefix("loss.") }
        // Lightning fields beside the state dict (values written by the fixture script).
        #expect(pt.root["epoch"]?.int == 3)
        #expect(pt.root["global_step"]?.int == 1000)
        // The loss.* entries a model loader must skip are present in the state dict.
        #expect(pt.names.contains { $0.hasPrefix("loss.") })
        #expect(pt["loss.logvar"]?.shape == [])
        #expect(pt.stateDict?.count == pt.tensors.count)
    }

    @Test func synthesizedCheckpointWithManyDtypesSharedStoragesAndZip64() throws {
        let floats: [Float] = [1, 2, 3, 4, 5, 6]
        let halves: [UInt16] = [floatToFloat16(0.5), floatToFloat16(-1)]
        let brains: [UInt16] = [floatToBFloat16(3), floatToBFloat16(-0.25)]
        let longs: [Int64] = [-1, 1 << 40, 7]
        let pickle = PickleBuilder.stateDict { b in
            b.string("a"); b.tensor(key: "0", numel: 6, size: [2, 3])
            b.string("a_tail"); b.tensor(key: "0", numel: 6, offset: 3, size: [3])  // shares storage 0
            b.string("a_t"); b.tensor(key: "0", numel: 6, size: [3, 2], stride: [1, 3])  // transposed: copied
            b.string("h"); b.tensor(storageType: "HalfStorage", key: "1", numel: 2, size: [2])
            b.string("bf"); b.tensor(storageType: "BFloat16Storage", key: "2", numel: 2, size: [1, 2])
            b.string("ids"); b.tensor(storageType: "LongStorage", key: "3", numel: 3, size: [3])
            b.string("flag"); b.tensor(storageType: "BoolStorage", key: "4", numel: 1, size: [])
            b.string("step"); b.int(12)  // not a tensor: left out of `tensors`, readable in `root`
            b.string("nested"); b.op(0x7D); b.string("x"); b.tensor(key: "0", numel: 6, offset: 5, size: [1]); b.op(0x73)
        }
        let storages: [(String, [UInt8])] = [
            ("0", floatBytes(floats)), ("1", halves.withUnsafeBytes { Array($0) }),
            ("2", brains.withUnsafeBytes { Array($0) }), ("3", longs.withUnsafeBytes { Array($0) }), ("4", [1]),
        ]
        for zip64 in [false, true] {
            try withTemporaryFile(checkpointArchive(pickle, storages: storages, zip64: zip64), suffix: ".pt") { path in
                let pt = try PyTorchCheckpoint(path: path)
                #expect(pt.names == ["a", "a_tail", "a_t", "h", "bf", "ids", "flag", "nested.x"])
                #expect(pt["a"]?.floats == floats && pt["a_tail"]?.floats == [4, 5, 6])
                #expect(pt["a"]?.storage === pt["a_tail"]?.storage && pt["a"]?.storage.isMapped == true)
                #expect(pt["a_t"]?.floats == [1, 4, 2, 5, 3, 6])
                #expect(pt["h"]?.dtype == .float16 && pt["h"]?.floats == [0.5, -1])
                #expect(pt["bf"]?.dtype == .bfloat16 && pt["bf"]?.floats == [3, -0.25])
                #expect(pt["ids"]?.dtype == .int64 && pt["ids"]?.integers() == [-1, 1 << 40, 7])
                #expect(pt["flag"]?.dtype == .bool && pt["flag"]?.integers() == [1])
                #expect(pt["nested.x"]?.floats == [6])
                #expect(pt.root["step"]?.int == 12)
            }
        }
    }

    @Test func bareTopLevelArchiveLoads() throws {
        let pickle = PickleBuilder.stateDict { b in b.string("w"); b.tensor(key: "0", numel: 2, size: [2]) }
        let bytes = TestZip.stored([("data.pkl", pickle), ("data/0", floatBytes([7, 8]))]).build().bytes
        try withTemporaryFile(bytes) { path in
            let pt = try PyTorchCheckpoint(path: path)
            #expect(pt.archiveName == "" && pt["w"]?.floats == [7, 8])
        }
    }

    // MARK: Hostile and unsupported files

    func checkpointError(_ bytes: [UInt8], suffix: String = ".pt") -> (any Error)? {
        withTemporaryFile(bytes, suffix: suffix) { path in
            #expect(throws: (any Error).self) { _ = try PyTorchCheckpoint(path: path) }
        }
    }

    @Test func forbiddenGlobalsInsideARealArchiveAreRefused() throws {
        var evil = PickleBuilder()
        evil.global("os", "system"); evil.tuple { $0.string("echo pwned") }; evil.reduce(); evil.stop()
        var evil4 = PickleBuilder(protocol: 4)
        evil4.stackGlobal("subprocess", "Popen"); evil4.tuple { $0.string("id") }; evil4.reduce(); evil4.stop()
        for (pickle, module, name) in [(evil.bytes, "os", "system"), (evil4.bytes, "subprocess", "Popen")] {
            let error = checkpointError(checkpointArchive(pickle, storages: []))
            #expect(error as? PickleError == .forbiddenGlobal(module: module, name: name))
        }
    }

    @Test func storageProblemsAreNamed() throws {
        let oneTensor = PickleBuilder.stateDict { b in b.string("w"); b.tensor(key: "0", numel: 4, size: [4]) }

        let missing = checkpointError(checkpointArchive(oneTensor, storages: [("1", floatBytes([1, 2, 3, 4]))]))
        guard case .missingStorage(_, "0", "archive/data/0")? = missing as? PyTorchCheckpointError else {
            Issue.record("missing storage: \(String(describing: missing))"); return
        }
        #expect((missing as? PyTorchCheckpointError)?.description.contains("storage 0 should be the archive entry archive/data/0") == true)

        let small = checkpointError(checkpointArchive(oneTensor, storages: [("0", floatBytes([1, 2]))]))
        #expect((small as? PyTorchCheckpointError)?.description.contains("storage 0 needs 16 bytes but its archive entry holds 8") == true,
                "\(String(describing: small))")

        let past = PickleBuilder.stateDict { b in b.string("w"); b.tensor(key: "0", numel: 4, offset: 2, size: [4]) }
        let extent = checkpointError(checkpointArchive(past, storages: [("0", floatBytes([1, 2, 3, 4]))]))
        guard case .invalidTensor(let what)? = extent as? PickleError else { Issue.record("extent: \(String(describing: extent))"); return }
        #expect(what.contains("reaches past the end of storage 0"))

        let complex = PickleBuilder.stateDict { b in b.string("z"); b.tensor(storageType: "ComplexFloatStorage", key: "0", numel: 1, size: [1]) }
        let unsupported = checkpointError(checkpointArchive(complex, storages: [("0", [UInt8](repeating: 0, count: 8))]))
        #expect((unsupported as? PyTorchCheckpointError)?.description.contains("torch.ComplexFloatStorage") == true)

        var badID = PickleBuilder()
        badID.string("not a tuple"); badID.op(0x51); badID.stop()
        let pid = checkpointError(checkpointArchive(badID.bytes, storages: []))
        #expect((pid as? PyTorchCheckpointError)?.description.contains("persistent id") == true)

        let bigEndian = checkpointError(checkpointArchive(oneTensor, storages: [("0", floatBytes([1, 2, 3, 4]))], byteorder: "big"))
        #expect((bigEndian as? PyTorchCheckpointError)?.description.contains("big-endian") == true)
    }

    @Test func otherFormatsAreRefusedWithARemedy() throws {
        // Legacy (pre-1.6) files start with PROTO 2 and LONG1 of torch's magic number 0x1950a86a20f9469cfc6c.
        let legacy = PyTorchCheckpoint.legacyMagic + [0x2E, 0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]
        let legacyError = checkpointError(legacy)
        guard case .legacyFormat? = legacyError as? PyTorchCheckpointError else { Issue.record("legacy: \(String(describing: legacyError))"); return }
        #expect((legacyError as? PyTorchCheckpointError)?.description.contains("legacy (pre-1.6)") == true)
        #expect((legacyError as? PyTorchCheckpointError)?.description.contains("torch.save") == true)

        var raw = PickleBuilder(); raw.none(); raw.stop()
        guard case .rawPickle? = checkpointError(raw.bytes) as? PyTorchCheckpointError else { Issue.record("raw pickle"); return }

        let noPickle = TestZip.stored([("archive/data/0", [1, 2, 3, 4])]).build().bytes
        guard case .missingPickle? = checkpointError(noPickle) as? PyTorchCheckpointError else { Issue.record("no data.pkl"); return }

        // A TorchScript archive also has a data.pkl (referencing `__torch__` classes): named as TorchScript first.
        let script = TestZip.stored([("model/data.pkl", [0x80, 2, 0x4E, 0x2E]), ("model/constants.pkl", [0x80, 2, 0x4E, 0x2E]),
                                     ("model/code/__torch__.py", [])]).build().bytes
        guard case .torchScript? = checkpointError(script) as? PyTorchCheckpointError else { Issue.record("TorchScript"); return }

        guard case .notAZipArchive? = checkpointError(Array("definitely not a checkpoint".utf8)) as? ZipError else {
            Issue.record("text file"); return
        }
        let absent = #expect(throws: MappedFile.Failure.self) { _ = try PyTorchCheckpoint(path: "/nonexistent/paella/model.pt") }
        #expect(absent?.description.contains("/nonexistent/paella/model.pt") == true)
    }

    @Test func truncatedAndCorruptedFixturesNeverCrash() throws {
        let original = try Array(Data(contentsOf: URL(fileURLWithPath: Fixtures.path("denoiser_v1_tiny.pt"))))
        // Cut at many points: every prefix must be refused with a typed error.
        for fraction in [0.01, 0.1, 0.5, 0.9, 0.999] {
            let error = checkpointError(Array(original.prefix(Int(Double(original.count) * fraction))))
            #expect(error is ZipError, "cut at \(fraction): \(String(describing: error))")
        }
        // Corrupt the pickle's bytes (the stored data.pkl entry starts at the first local header's data).
        let archive = try ZipArchive(path: Fixtures.path("denoiser_v1_tiny.pt"))
        let pickle = try #require(archive.entry(named: "denoiser_v1_tiny/data.pkl"))
        var random = TestRandom(seed: 2024)
        for _ in 0..<30 {
            var bytes = original
            for _ in 0..<3 { bytes[pickle.dataOffset + random.int(2...(pickle.uncompressedSize - 1))] = UInt8(random.int(0...255)) }
            // Either it still decodes (a harmless change, e.g. inside a name) or it throws a typed error.
            do {
                _ = try withTemporaryFile(bytes) { try PyTorchCheckpoint(path: $0) }
            } catch {
                #expect(error is PickleError || error is PyTorchCheckpointError, "\(error)")
            }
        }
    }
}
