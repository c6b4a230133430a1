import Foundation
import PaellaTestSupport
import Testing
@testable import PaellaIO
import PaellaCore

/// Writes a file byte by byte as a hostile or hand-made safetensors file: the 8-byte length (the real header
/// length unless `declared` overrides it), the header text, then `data`.
func rawSafeTensors(_ path: String, header: String, data: [UInt8] = [], declared: UInt64? = nil) throws -> String {
    var bytes = [UInt8]()
    let headerBytes = Array(header.utf8)
    withUnsafeBytes(of: (declared ?? UInt64(headerBytes.count)).littleEndian) { bytes.append(contentsOf: $0) }
    bytes += headerBytes + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// The typed error opening `path` throws, or nil when it opens (or fails with another error type).
func safeTensorsError(_ path: String) -> SafeTensorsError? {
    do {
        _ = try SafeTensors(path: path)
        return nil
    } catch let error as SafeTensorsError {
        return error
    } catch {
        return nil
    }
}

/// Random bytes, so that every bit pattern of every dtype round-trips.
private func randomTensor(_ shape: [Int], _ dtype: DType, seed: UInt64) -> Tensor {
    let t = Tensor(uninitialized: shape, dtype: dtype)
    var rng = TestRandom(seed: seed)
    let p = t.storage.pointer.assumingMemoryBound(to: UInt8.self)
    for i in 0..<t.byteCount { p[i] = UInt8(truncatingIfNeeded: rng.next()) }
    return t
}

private func bytes(_ t: Tensor) -> [UInt8] { t.withUnsafeBytes { Array($0) } }

@Suite("SafeTensors")
struct SafeTensorsTests {
    // MARK: Round trips

    @Test func roundTripsEveryDTypeWithoutCopying() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("all.safetensors")
        // Mixed element sizes in an order that would misalign wider types if written as given (u8 first).
        var tensors: [(name: String, tensor: Tensor)] = []
        for (i, dtype) in DType.allCases.reversed().enumerated() {
            tensors.append(("t\(i).\(dtype.rawValue)", randomTensor([3, i + 1], dtype, seed: UInt64(i))))
        }
        tensors.append(("scalar", randomTensor([], .float32, seed: 100)))
        tensors.append(("empty", randomTensor([4, 0, 2], .bfloat16, seed: 101)))
        tensors.append(("odd.u8", randomTensor([7], .uint8, seed: 102)))
        tensors.append(("tokens.i64", Tensor(zeros: [2], dtype: .int64)))
        let metadata = ["format": "pt", "quote \"and\\ newline\n": "ünïcode 😀 \u{01}"]
        try SafeTensors.write(tensors, metadata: metadata, to: path)

        let file = try SafeTensors(path: path)
        #expect(file.names == tensors.map(\.name))
        #expect(file.metadata == metadata)
        #expect(file.copiedForAlignment.isEmpty)
        for (name, original) in tensors {
            let read = try #require(file[name])
            #expect(read.dtype == original.dtype && read.shape == original.shape, "\(name)")
            #expect(bytes(read) == bytes(original), "\(name)")
            #expect(read.storage.isMapped, "\(name) should be a view of the mapped file")
            if case .mapped(let mapped) = read.storage.backing { #expect(mapped.path == path) }
            // Natural alignment, so typed access is legal.
            #expect(Int(bitPattern: read.storage.pointer + read.byteOffset) % read.dtype.size == 0, "\(name)")
        }
        #expect(try #require(file["scalar"]).count == 1)
        #expect(try #require(file["empty"]).byteCount == 0)
    }

    @Test func writesWhatTheReferenceReaderAccepts() throws {
        // The reference implementation (huggingface/safetensors) requires a header padded to 8 bytes and a data
        // section without gaps whose end is the end of the file; check both from the raw bytes.
        let dir = try TemporaryDirectory()
        let path = dir.file("ref.safetensors")
        try SafeTensors.write([("a", randomTensor([3], .uint8, seed: 1)), ("b", randomTensor([5], .float64, seed: 2)),
                               ("c", randomTensor([1], .float16, seed: 3))], to: path)
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        #expect(n % 8 == 0)
        let header = try #require(JSONSerialization.jsonObject(with: raw.subdata(in: 8..<(8 + n))) as? [String: [String: Any]])
        let spans = header.values.compactMap { $0["data_offsets"] as? [Int] }.sorted { $0[0] < $1[0] }
        #expect(spans.count == 3)
        var end = 0
        for span in spans { #expect(span[0] == end); end = span[1] }
        #expect(8 + n + end == raw.count)
    }

    @Test func halfPrecisionValuesSurvive() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("half.safetensors")
        var rng = TestRandom(seed: 5)
        let source = rng.tensor([4, 5], -3, 3)
        try SafeTensors.write([("bf", source.converted(to: .bfloat16)), ("h", source.converted(to: .float16))], to: path)
        let file = try SafeTensors(path: path)
        // Exact: the file holds the very bits `converted(to:)` produced, and widening them is exact.
        #expect(try file.tensor("bf").floats == source.converted(to: .bfloat16).floats)
        #expect(try file.tensor("h").floats == source.converted(to: .float16).floats)
        // And those are within half an ulp of the source: bf16 has 8 significand bits, f16 11 (|x| < 3).
        #expect(maxAbsDifference(try file.tensor("bf").floats, source.floats) <= 3 * 0x1p-8)
        #expect(maxAbsDifference(try file.tensor("h").floats, source.floats) <= 3 * 0x1p-11)
    }

    @Test func misalignedTensorIsCopiedIntoAlignedMemory() throws {
        let dir = try TemporaryDirectory()
        // A 45-byte header puts the data section at byte 53, which is not a multiple of 4.
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect((8 + header.utf8.count) % 4 != 0)
        let values: [Float] = [1.5, -2.25]
        let data = values.withUnsafeBytes { Array($0) }
        let path = try rawSafeTensors(dir.file("odd.safetensors"), header: header, data: data)
        let file = try SafeTensors(path: path)
        #expect(file.copiedForAlignment == ["w"])
        let w = try file.tensor("w")
        #expect(!w.storage.isMapped)
        #expect(w.floats == values)
    }

    @Test func gapsAndEmptyHeaderAreAccepted() throws {
        let dir = try TemporaryDirectory()
        let gap = try rawSafeTensors(dir.file("gap.safetensors"),
            header: #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[5,6]},"z":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}"#,
            data: [1, 2, 3, 4, 5, 6])
        let file = try SafeTensors(path: gap)
        #expect(file.names == ["a", "b", "z"])
        #expect(try file.tensor("b").integers() == [6])
        let empty = try rawSafeTensors(dir.file("empty.safetensors"), header: "{}")
        #expect(try SafeTensors(path: empty).count == 0)
    }

    @Test func escapedNamesRoundTrip() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("names.safetensors")
        let names = ["plain", "with \"quotes\" and \\", "tab\tnewline\n", "emoji 😀 ü"]
        try SafeTensors.write(names.enumerated().map { ($1, Tensor(repeating: Float($0), shape: [1])) }, to: path)
        let file = try SafeTensors(path: path)
        #expect(file.names == names)
        // A \u escape with a surrogate pair, as Python's json.dumps writes non-ASCII names.
        let escaped = try rawSafeTensors(dir.file("u.safetensors"),
            header: #"{"\ud83d\ude00\u00fc":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}"#, data: [7])
        #expect(try SafeTensors(path: escaped).names == ["😀ü"])
    }

    @Test func writerRefusesBadNamesAndKeepsTheOldFile() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("w.safetensors")
        try SafeTensors.write([("x", Tensor([1], shape: [1]))], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(throws: SafeTensorsError.invalidWrite(path: path, reason: "two tensors are named \"a\"")) {
            try SafeTensors.write([("a", Tensor([1], shape: [1])), ("a", Tensor([2], shape: [1]))], to: path)
        }
        #expect(throws: SafeTensorsError.self) {
            try SafeTensors.write([("__metadata__", Tensor([1], shape: [1]))], to: path)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test func missingTensorNamesFileAndTensor() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("m.safetensors")
        try SafeTensors.write([("x", Tensor([1], shape: [1]))], to: path)
        let file = try SafeTensors(path: path)
        #expect(file["y"] == nil)
        #expect(throws: SafeTensorsError.missingTensor(path: path, tensor: "y")) { try file.tensor("y") }
    }

    // MARK: Fixtures

    /// The header of a fixture parsed independently with Foundation, to cross-check names and shapes.
    private func foundationHeader(_ path: String) throws -> [String: Any] {
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try #require(JSONSerialization.jsonObject(with: raw.subdata(in: 8..<(8 + n))) as? [String: Any])
        header["__metadata__"] = nil
        return header
    }

    @Test(arguments: ["denoiser_v1_tiny.safetensors", "vqgan_tiny.safetensors", "clip_tiny.safetensors"])
    func fixtureLoadsAsMappedViews(name: String) throws {
        let path = Fixtures.path(name)
        let file = try SafeTensors(path: path)
        let header = try foundationHeader(path)
        #expect(Set(file.names) == Set(header.keys))
        #expect(file.names.count == header.count)
        for (tensorName, tensor) in file.tensors {
            let entry = try #require(header[tensorName] as? [String: Any])
            #expect(tensor.shape == entry["shape"] as? [Int], "\(tensorName)")
            #expect(SafeTensors.fileName(of: tensor.dtype) == entry["dtype"] as? String, "\(tensorName)")
            #expect(tensor.storage.isMapped, "\(tensorName)")
        }
    }

    @Test func fixtureShapesMatchTheirConfigs() throws {
        // Sizes come from the fixtures' JSON (constructor arguments of the upstream models).
        let denoiserConfig = try #require(try Fixtures.json("denoiser_v1_tiny.json") as? [String: Any])
        let denoiser = try SafeTensors(path: Fixtures.path("denoiser_v1_tiny.safetensors"))
        // DenoiseUNet's classifier is a 1x1 conv to num_labels.
        #expect(try denoiser.tensor("clf.weight").shape.first == denoiserConfig["num_labels"] as? Int)
        #expect(try denoiser.tensor("clf.weight").shape.suffix(2) == [1, 1])

        let vqConfig = try #require(try Fixtures.json("vqgan_tiny.json") as? [String: Any])
        let vqgan = try SafeTensors(path: Fixtures.path("vqgan_tiny.safetensors"))
        // GumbelQuantize: embed is nn.Embedding(n_embed, embedding_dim).
        #expect(try vqgan.tensor("quantize.embed.weight").shape == [vqConfig["n_embed"] as? Int, vqConfig["embed_dim"] as? Int].compactMap { $0 })

        let clipConfig = try #require(try Fixtures.json("clip_tiny.json") as? [String: Any])
        let text = try #require(clipConfig["text_cfg"] as? [String: Any])
        let clip = try SafeTensors(path: Fixtures.path("clip_tiny.safetensors"))
        let width = try #require(text["width"] as? Int)
        #expect(try clip.tensor("token_embedding.weight").shape == [try #require(text["vocab_size"] as? Int), width])
        #expect(try clip.tensor("positional_embedding").shape == [try #require(text["context_length"] as? Int), width])
        #expect(try clip.tensor("logit_scale").shape == [])  // a 0-dimensional parameter
    }

    @Test func fixtureValuesMatchTheRawBytes() throws {
        // The first tensor's values read through the view equal the bytes at its offset in the file.
        let path = Fixtures.path("clip_tiny.safetensors")
        let file = try SafeTensors(path: path)
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let header = try foundationHeader(path)
        for name in file.names.prefix(5) {
            let offsets = try #require((header[name] as? [String: Any])?["data_offsets"] as? [Int])
            let start = 8 + file.headerLength + offsets[0]
            #expect(bytes(try file.tensor(name)) == Array(raw[start..<(8 + file.headerLength + offsets[1])]))
        }
    }

    // MARK: Hostile files

    private func entry(_ dtype: String = "F32", _ shape: String = "[2]", _ offsets: String = "[0,8]") -> String {
        #"{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    @Test func refusesTruncatedFiles() throws {
        let dir = try TemporaryDirectory()
        let empty = dir.file("empty.safetensors")
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(safeTensorsError(empty) == .fileTooShort(path: empty, byteCount: 0))
        let five = dir.file("five.safetensors")
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: five))
        #expect(safeTensorsError(five) == .fileTooShort(path: five, byteCount: 5))

        // A real fixture cut inside its header, then inside its data.
        let raw = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("denoiser_v1_tiny.safetensors")))
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let inHeader = dir.file("cut-header.safetensors")
        try raw.prefix(8 + n / 2).write(to: URL(fileURLWithPath: inHeader))
        #expect(safeTensorsError(inHeader) == .invalidHeaderLength(path: inHeader, headerLength: UInt64(n), fileSize: 8 + n / 2))
        let inData = dir.file("cut-data.safetensors")
        try raw.prefix(raw.count - 100).write(to: URL(fileURLWithPath: inData))
        guard case .offsetsOutOfBounds(let p, _, _, _, let size) = safeTensorsError(inData) else {
            Issue.record("expected offsetsOutOfBounds"); return
        }
        #expect(p == inData && size == raw.count - 100 - 8 - n)
    }

    @Test func refusesAbsurdHeaderLengths() throws {
        let dir = try TemporaryDirectory()
        let header = #"{"a":\#(entry())}"#
        for declared: UInt64 in [UInt64.max, 1 << 63, 200_000_000, UInt64(header.utf8.count + 9)] {
            let path = try rawSafeTensors(dir.file("h\(declared).safetensors"), header: header, data: [0, 0, 0, 0, 0, 0, 0, 0], declared: declared)
            let size = 8 + header.utf8.count + 8
            #expect(safeTensorsError(path) == .invalidHeaderLength(path: path, headerLength: declared, fileSize: size))
        }
    }

    @Test func refusesMalformedJSON() throws {
        let dir = try TemporaryDirectory()
        let cases: [(String, String)] = [
            ("unterminated", #"{"a": "#),
            ("trailing", #"{"a":\#(entry())} x"#),
            ("nan", #"{"a":\#(entry("F32", "[2]", "[NaN,8]"))}"#),
            ("infinity", #"{"a":\#(entry("F32", "[2]", "[0,Infinity]"))}"#),
            ("single quotes", "{'a': 1}"),
            ("trailing comma", #"{"a":\#(entry()),}"#),
            ("control char", "{\"a\u{01}\":\(entry())}"),
            ("bad escape", #"{"a\q":\#(entry())}"#),
            ("lone surrogate", #"{"\ud800":\#(entry())}"#),
            ("leading zero", #"{"a":\#(entry("F32", "[02]"))}"#),
            ("deep nesting", String(repeating: "[", count: 100_000)),
            ("empty", ""),
        ]
        for (label, header) in cases {
            let path = try rawSafeTensors(dir.file("\(label).safetensors"), header: header, data: [UInt8](repeating: 0, count: 8))
            guard case .invalidJSON(let p, let reason) = safeTensorsError(path) else {
                Issue.record("\(label): expected invalidJSON, got \(String(describing: safeTensorsError(path)))"); continue
            }
            #expect(p == path && !reason.isEmpty, "\(label)")
        }
        // Not UTF-8.
        var bad = [UInt8]()
        let header: [UInt8] = Array(#"{"a"#.utf8) + [0xFF, 0xFE] + Array(#"":{}}"#.utf8)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bad.append(contentsOf: $0) }
        let path = dir.file("latin1.safetensors")
        try Data(bad + header).write(to: URL(fileURLWithPath: path))
        #expect(safeTensorsError(path) == .invalidJSON(path: path, reason: "it is not valid UTF-8"))
    }

    @Test func refusesWrongStructure() throws {
        let dir = try TemporaryDirectory()
        func check(_ label: String, _ header: String, data: [UInt8] = [UInt8](repeating: 0, count: 16),
                   _ expected: (String) -> SafeTensorsError, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let path = try rawSafeTensors(dir.file("\(label).safetensors"), header: header, data: data)
            let error = safeTensorsError(path)
            #expect(error == expected(path), "\(label)", sourceLocation: sourceLocation)
            if let error {
                // One sentence: names the file, no line breaks, ends with a full stop.
                #expect(error.description.contains(path) && !error.description.contains("\n") && error.description.hasSuffix("."),
                        sourceLocation: sourceLocation)
            }
        }
        try check("array", "[1,2]") { .headerNotObject(path: $0) }
        try check("string", #""hello""#) { .headerNotObject(path: $0) }
        try check("entry number", #"{"a":5}"#) { .invalidEntry(path: $0, tensor: "a", reason: "is not a JSON object") }
        try check("no dtype", #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#) { .missingField(path: $0, tensor: "a", field: "dtype") }
        try check("no shape", #"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#) { .missingField(path: $0, tensor: "a", field: "shape") }
        try check("no offsets", #"{"a":{"dtype":"F32","shape":[2]}}"#) { .missingField(path: $0, tensor: "a", field: "data_offsets") }
        try check("dtype number", #"{"a":{"dtype":5,"shape":[2],"data_offsets":[0,8]}}"#) {
            .invalidField(path: $0, tensor: "a", field: "dtype", reason: "is not a string")
        }
        try check("shape string", #"{"a":\#(entry("F32", "\"2\""))}"#) {
            .invalidField(path: $0, tensor: "a", field: "shape", reason: "is not an array")
        }
        try check("shape of strings", #"{"a":\#(entry("F32", "[\"2\"]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "shape", reason: "contains a string, not a number")
        }
        try check("unknown dtype", #"{"a":\#(entry("Q4"))}"#) { .unsupportedDType(path: $0, tensor: "a", dtype: "Q4") }
        try check("fp8", #"{"a":\#(entry("F8_E4M3", "[8]"))}"#) { .unsupportedDType(path: $0, tensor: "a", dtype: "F8_E4M3") }
        try check("u32", #"{"a":\#(entry("U32"))}"#) { .unsupportedDType(path: $0, tensor: "a", dtype: "U32") }
        try check("negative offset", #"{"a":\#(entry("F32", "[2]", "[-8,0]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "data_offsets", reason: "contains the negative number -8")
        }
        try check("negative dim", #"{"a":\#(entry("F32", "[-2]", "[0,8]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "shape", reason: "contains the negative number -2")
        }
        try check("float offset", #"{"a":\#(entry("F32", "[2]", "[0.0,8]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "data_offsets", reason: "contains 0.0, which is not an integer")
        }
        try check("exponent offset", #"{"a":\#(entry("F32", "[2]", "[0,8e0]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "data_offsets", reason: "contains 8e0, which is not an integer")
        }
        try check("huge dim", #"{"a":\#(entry("F32", "[99999999999999999999999]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "shape", reason: "contains 99999999999999999999999, which is too large")
        }
        try check("three offsets", #"{"a":\#(entry("F32", "[2]", "[0,8,16]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "data_offsets", reason: "has 3 numbers instead of 2 (begin and end)")
        }
        try check("reversed offsets", #"{"a":\#(entry("F32", "[0]", "[8,0]"))}"#) {
            .invalidField(path: $0, tensor: "a", field: "data_offsets", reason: "begins at 8, after its end 0")
        }
        try check("shape overflow", #"{"a":\#(entry("F32", "[1099511627776,1099511627776]"))}"#) {
            .shapeTooLarge(path: $0, tensor: "a", shape: [1 << 40, 1 << 40])
        }
        try check("byte overflow", #"{"a":\#(entry("F64", "[4611686018427387904]"))}"#) {
            .shapeTooLarge(path: $0, tensor: "a", shape: [1 << 62])
        }
        try check("size mismatch", #"{"a":\#(entry("F32", "[3]", "[0,8]"))}"#) {
            .byteCountMismatch(path: $0, tensor: "a", dtype: "F32", shape: [3], expected: 12, actual: 8)
        }
        try check("past end", #"{"a":\#(entry("F32", "[100]", "[0,400]"))}"#) {
            .offsetsOutOfBounds(path: $0, tensor: "a", begin: 0, end: 400, dataSize: 16)
        }
        try check("huge offsets", #"{"a":\#(entry("U8", "[8]", "[9223372036854775800,9223372036854775807]"))}"#) {
            .byteCountMismatch(path: $0, tensor: "a", dtype: "U8", shape: [8], expected: 8, actual: 7)
        }
        try check("overlap", #"{"b":\#(entry("F32", "[2]", "[4,12]")),"a":\#(entry("F32", "[2]", "[0,8]"))}"#) {
            .overlappingTensors(path: $0, first: "a", second: "b")
        }
        try check("same bytes", #"{"a":\#(entry()),"b":\#(entry())}"#) { .overlappingTensors(path: $0, first: "a", second: "b") }
        try check("duplicate", #"{"a":\#(entry()),"a":\#(entry("F32", "[2]", "[8,16]"))}"#) { .duplicateTensor(path: $0, tensor: "a") }
        try check("duplicate field", #"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#) {
            .invalidField(path: $0, tensor: "a", field: "dtype", reason: "appears twice")
        }
        try check("metadata array", #"{"__metadata__":[1],"a":\#(entry())}"#) { .invalidMetadata(path: $0, reason: "is not a JSON object") }
        try check("metadata number", #"{"__metadata__":{"k":1}}"#) {
            .invalidMetadata(path: $0, reason: "has a non-string value for \"k\"")
        }
    }

    @Test func missingFileIsAClearError() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("nope.safetensors")
        #expect(throws: MappedFile.Failure.self) { try SafeTensors(path: path) }
    }
}
