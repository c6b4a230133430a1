import Foundation
import PaellaTestSupport
import Testing
@testable import PaellaIO
import PaellaCore

@Suite("CheckpointInspector")
struct InspectTests {
    /// The fixture's header parsed with Foundation (an independent reader) and its length.
    private func header(_ path: String) throws -> (entries: [String: [String: Any]], length: Int, fileSize: Int) {
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var object = try #require(JSONSerialization.jsonObject(with: raw.subdata(in: 8..<(8 + n))) as? [String: Any])
        object["__metadata__"] = nil
        return (try #require(object as? [String: [String: Any]]), n, raw.count)
    }

    @Test(arguments: ["denoiser_v1_tiny.safetensors", "vqgan_tiny.safetensors", "clip_tiny.safetensors"])
    func reportTotalsOfAFixture(name: String) throws {
        let path = Fixtures.path(name)
        let report = try CheckpointInspector.inspect(path: path)
        let (entries, length, size) = try header(path)
        #expect(report.format == .safetensors)
        #expect(report.entries.count == entries.count)
        // The fixtures were written by the reference writer, whose data section has no gaps, so the tensor bytes
        // add up to the file size minus the length field and the header.
        #expect(report.totalBytes == size - 8 - length)
        // All fixture weights are float32 (Tests/Fixtures/README.md), so 4 bytes per parameter.
        #expect(entries.values.allSatisfy { $0["dtype"] as? String == "F32" })
        #expect(report.totalParameters * 4 == report.totalBytes)
        for entry in report.entries {
            let shape = try #require(entries[entry.name]?["shape"] as? [Int])
            #expect(entry.shape == shape && entry.parameters == shape.reduce(1, *) && entry.bytes == entry.parameters * 4)
        }
    }

    @Test func tableAndJSON() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("small.safetensors")
        try SafeTensors.write([("big.weight", Tensor(zeros: [1000, 1234])), ("tokens", Tensor(zeros: [3], dtype: .int64)),
                               ("scale", Tensor(zeros: [], dtype: .bfloat16))], metadata: ["format": "pt"], to: path)
        let report = try CheckpointInspector.inspect(path: path)
        #expect(report.totalParameters == 1_234_000 + 3 + 1)
        #expect(report.totalBytes == 1_234_000 * 4 + 3 * 8 + 2)

        let table = report.table().split(separator: "\n").map(String.init)
        #expect(table.first?.hasPrefix("name") == true)
        #expect(table.contains { $0.hasPrefix("big.weight") && $0.contains("float32") && $0.contains("[1000, 1234]") && $0.hasSuffix("1,234,000") })
        #expect(table.contains { $0.hasPrefix("scale") && $0.contains("bfloat16") && $0.contains("[]") })
        #expect(table.contains("metadata format: pt"))
        #expect(table.last == "safetensors: 3 tensors, 1,234,004 parameters, 4,936,026 bytes (4.7 MiB)")

        let limited = report.table(limit: 1)
        #expect(!limited.contains("tokens") && limited.contains("... 2 more tensors not shown"))
        #expect(limited.hasSuffix("safetensors: 3 tensors, 1,234,004 parameters, 4,936,026 bytes (4.7 MiB)"))

        let json = try #require(JSONSerialization.jsonObject(with: Data(report.json(limit: 2).utf8)) as? [String: Any])
        #expect(json["format"] as? String == "safetensors")
        #expect((json["tensors"] as? [[String: Any]])?.map { $0["name"] as? String } == ["big.weight", "tokens"])
        #expect(json["total_tensors"] as? Int == 3)
        #expect(json["total_parameters"] as? Int == 1_234_004)
        #expect(json["total_bytes"] as? Int == 4_936_026)
        #expect((json["metadata"] as? [String: String]) == ["format": "pt"])
    }

    @Test func numberFormatting() {
        #expect(CheckpointReport.grouped(0) == "0")
        #expect(CheckpointReport.grouped(999) == "999")
        #expect(CheckpointReport.grouped(1000) == "1,000")
        #expect(CheckpointReport.grouped(1_234_567) == "1,234,567")
        #expect(CheckpointReport.humanBytes(512) == "512 B")
        #expect(CheckpointReport.humanBytes(1536) == "1.5 KiB")
        #expect(CheckpointReport.humanBytes(2_469_606_195) == "2.3 GiB")
    }

    @Test func detectsFormatsByContent() throws {
        let dir = try TemporaryDirectory()
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let path = dir.file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        #expect(try CheckpointInspector.detectFormat(path: Fixtures.path("denoiser_v1_tiny.pt")) == .pytorch)
        #expect(try CheckpointInspector.detectFormat(path: Fixtures.path("vqgan_tiny.ckpt")) == .pytorch)
        #expect(try CheckpointInspector.detectFormat(path: Fixtures.path("clip_tiny.bin")) == .pytorch)
        // Content decides, not the name.
        let renamed = try file("weights.bin", Array(try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("clip_tiny.safetensors")))))
        #expect(try CheckpointInspector.detectFormat(path: renamed) == .safetensors)

        let legacy = try file("old.pt", CheckpointInspector.legacyTorchMagic + [0x2E])
        #expect(throws: CheckpointFormatError.legacyPyTorch(path: legacy)) { try CheckpointInspector.inspect(path: legacy) }
        let pickle = try file("data.pkl", [0x80, 0x04, 0x95, 0x00, 0x2E])
        #expect(throws: CheckpointFormatError.barePickle(path: pickle)) { try CheckpointInspector.inspect(path: pickle) }
        let lfs = try file("model.ckpt", Array("version https://git-lfs.github.com/spec/v1\noid sha256:00\n".utf8))
        #expect(throws: CheckpointFormatError.gitLFSPointer(path: lfs)) { try CheckpointInspector.inspect(path: lfs) }
        let html = try file("model.pt", Array("<!DOCTYPE html>".utf8))
        #expect(throws: CheckpointFormatError.unrecognized(path: html, firstBytes: "3c 21 44 4f 43 54 59 50")) {
            try CheckpointInspector.inspect(path: html)
        }
        let empty = try file("empty.bin", [])
        #expect(throws: CheckpointFormatError.unrecognized(path: empty, firstBytes: "(none, the file is empty)")) {
            try CheckpointInspector.inspect(path: empty)
        }
        #expect(throws: InputFileError.notARegularFile(path: dir.path, kind: "a directory")) { try CheckpointInspector.inspect(path: dir.path) }
    }

    @Test func damagedSafeTensorsGetTheReadersError() throws {
        let dir = try TemporaryDirectory()
        // Too short to recognise by content: the extension routes it to the safetensors reader.
        let short = dir.file("cut.safetensors")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: short))
        #expect(throws: SafeTensorsError.fileTooShort(path: short, byteCount: 3)) { try CheckpointInspector.inspect(path: short) }
        // Recognised by content whatever its name.
        let absurd = try rawSafeTensors(dir.file("absurd.bin"),
            header: #"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        let error = try #require(throws: SafeTensorsError.self) { try CheckpointInspector.inspect(path: absurd) }
        #expect(error == .shapeTooLarge(path: absurd, tensor: "a", shape: [1 << 40, 1 << 40]))
        // What `paella inspect` prints: one line, one sentence naming the file.
        #expect(!error.description.contains("\n") && error.description.hasSuffix(".") && error.description.contains(absurd))
    }

    @Test func hugeFileOpensWithoutReadingItsTensors() throws {
        // A 2.5 GB safetensors file, sparse on disk: only the header exists. Opening must map, not read, so it
        // takes milliseconds; reading 2.5 GB would take seconds. The 1 s bound leaves room for a busy machine.
        let dir = try TemporaryDirectory()
        let path = dir.file("huge.safetensors")
        let count = 625_000_000
        var header = Array(#"{"w":{"dtype":"F32","shape":[\#(count)],"data_offsets":[0,\#(count * 4)]}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var bytes = [UInt8]()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        try Data(bytes + header).write(to: URL(fileURLWithPath: path))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(8 + header.count + count * 4))
        try handle.close()

        let clock = ContinuousClock()
        var report: CheckpointReport?
        let elapsed = try clock.measure { report = try CheckpointInspector.inspect(path: path) }
        #expect(report?.totalBytes == count * 4)
        #expect(elapsed < .seconds(1), "opening took \(elapsed)")
        let file = try SafeTensors(path: path)
        #expect(try file.tensor("w").storage.isMapped)
    }

    /// `denoiser_v1_tiny.pt`, `vqgan_tiny.ckpt` and `clip_tiny.bin` hold the same tensors as their safetensors
    /// twins (Tests/Fixtures/README.md), except the `loss.*` keys of the Lightning checkpoint.
    @Test(arguments: [("denoiser_v1_tiny.pt", "denoiser_v1_tiny.safetensors"), ("vqgan_tiny.ckpt", "vqgan_tiny.safetensors"),
                      ("clip_tiny.bin", "clip_tiny.safetensors")])
    func pytorchReportMatchesSafeTensors(pair: (String, String)) throws {
        let pytorch = try CheckpointInspector.inspect(path: Fixtures.path(pair.0))
        let reference = try CheckpointInspector.inspect(path: Fixtures.path(pair.1))
        #expect(pytorch.format == .pytorch)
        func key(_ e: CheckpointReport.Entry) -> String { "\(e.name) \(e.dtype) \(e.shape)" }
        let kept = pytorch.entries.filter { !$0.name.hasPrefix("loss.") }
        #expect(kept.map(key).sorted() == reference.entries.map(key).sorted())
    }
}
