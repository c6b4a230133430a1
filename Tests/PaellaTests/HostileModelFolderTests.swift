import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// Model folders whose model.json was edited as an attacker would (zero, negative, huge or inconsistent values):
/// each is refused when the folder is opened, with one sentence naming the field, the value and the allowed range,
/// before any layer is built. The weights stay the tiny fixture's; only the manifest changes.
@Suite struct HostileModelFolderTests {
    /// Sets `value` at `path` (keys from the top of model.json) in a copy of the tiny folder and returns the
    /// error that opening it throws (nil when it opens).
    static func openError(_ path: [String], json value: String) throws -> String? {
        let parsed = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let copy = ModelFolderTests.scratch("hostile") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try ModelFolderTests.editManifest(copy) { setValue(&$0, path[...], parsed) }
        do {
            _ = try ModelFolder(path: copy)
            return nil
        } catch {
            return "\(error)"
        }
    }

    static func setValue(_ object: inout [String: Any], _ path: ArraySlice<String>, _ value: Any) {
        guard let key = path.first else { return }
        if path.count == 1 {
            object[key] = value
        } else {
            var inner = object[key] as? [String: Any] ?? [:]
            setValue(&inner, path.dropFirst(), value)
            object[key] = inner
        }
    }

    /// The field, its new value as JSON, and what the refusal must say.
    static let cases: [(path: [String], value: String, phrase: String)] = [
        (["denoiser", "config", "c_hidden"], "0", "denoiser.config.c_hidden 0, outside the allowed 1...8192"),
        (["denoiser", "config", "c_hidden"], "1099511627776", "denoiser.config.c_hidden 1099511627776, outside the allowed 1...8192"),
        (["denoiser", "config", "c_hidden"], "66", "c_hidden 66, which must be a multiple of 4"),
        (["denoiser", "config", "c_clip"], "-16", "denoiser.config.c_clip -16, outside the allowed 1...8192"),
        (["denoiser", "config", "c_r"], "0", "denoiser.config.c_r 0, outside the allowed 4...4096"),
        (["denoiser", "config", "num_labels"], "9223372036854775807", "denoiser.config.num_labels \(Int.max), outside the allowed 2...65536"),
        (["denoiser", "config", "down_levels"], "[]", "denoiser.config.down_levels 0 entries, outside the allowed 1...8"),
        (["denoiser", "config", "down_levels"], "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "down_levels 64 entries, outside the allowed 1...8"),
        (["denoiser", "config", "down_levels"], "[1, 1000000, 2]", "denoiser.config.down_levels[1] 1000000, outside the allowed 1...64"),
        (["denoiser", "config", "up_levels"], "[2, 2]", "up_levels 2 levels but down_levels 3"),
        (["vqgan", "config", "ch_mult"], "[]", "vqgan.config.ch_mult 0 entries, outside the allowed 1...6"),
        (["vqgan", "config", "ch_mult"], "[1, 1, 2, 1048576]", "vqgan.config.ch_mult[3] 1048576, outside the allowed 1...16"),
        (["vqgan", "config", "n_embed"], "0", "vqgan.config.n_embed 0, outside the allowed 2...65536"),
        (["vqgan", "config", "in_channels"], "4", "vqgan.config.in_channels 4, outside the allowed 3...3"),
        (["vqgan", "config", "attn_resolutions"], "[4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4]", "attn_resolutions 100 entries"),
        (["clip", "config", "embed_dim"], "0", "clip.config.embed_dim 0, outside the allowed 1...8192"),
        (["clip", "config", "text_cfg", "vocab_size"], "100", "clip.config.text_cfg.vocab_size 100, outside the allowed 49408...262144"),
        (["clip", "config", "text_cfg", "context_length"], "1", "clip.config.text_cfg.context_length 1, outside the allowed 2...1024"),
        (["clip", "config", "text_cfg", "heads"], "0", "clip.config.text_cfg.heads 0, outside the allowed 1...32"),
        (["clip", "config", "text_cfg", "heads"], "3", "heads 3, which does not divide the width 32"),
        (["clip", "config", "text_cfg", "layers"], "100000", "clip.config.text_cfg.layers 100000, outside the allowed 1...128"),
        (["clip", "config", "text_cfg", "mlp_ratio"], "1e9", "clip.config.text_cfg.mlp_ratio 1000000000.0, outside the allowed 0.25...16.0"),
        (["clip", "config", "vision_cfg", "patch_size"], "0", "clip.config.vision_cfg.patch_size 0, outside the allowed 1...28"),
        (["clip", "config", "vision_cfg", "head_width"], "5", "head_width 5, which does not divide the width 32"),
        (["defaults", "image_size"], "-64", "defaults.image_size -64, outside the allowed 1...1024"),
        (["defaults", "image_size"], "2048", "defaults.image_size 2048, outside the allowed 1...1024"),
        (["defaults", "edit_strength"], "7", "defaults.edit_strength 7.0, outside the allowed 0.0...1.0"),
        (["defaults", "generate", "steps"], "0", "defaults.generate.steps 0, outside the allowed 1...100"),
        (["defaults", "vary", "steps"], "1000000000", "defaults.vary.steps 1000000000, outside the allowed 1...100"),
        (["defaults", "edit", "temperature_range"], "[1.0]", "defaults.edit.temperature_range 1 value (it takes a first and a last)"),
        (["defaults", "inpaint", "temperature_range"], "[0.0, 1.0]", "defaults.inpaint.temperature_range[0] 0.0, outside the allowed 0.001...100.0"),
        (["defaults", "compose", "typical_mass"], "0", "defaults.compose.typical_mass 0.0, outside the allowed 0.001...1.0"),
        (["defaults", "outpaint", "typical_min_tokens"], "-1", "defaults.outpaint.typical_min_tokens -1, outside the allowed 1...48"),
        (["defaults", "generate", "renoise_steps"], "99", "defaults.generate.renoise_steps 99, outside the allowed 0...4"),
    ]

    @Test(arguments: cases.indices)
    func anOutOfBoundsValueIsRefusedByName(_ index: Int) throws {
        let (path, value, phrase) = Self.cases[index]
        let message = try #require(try Self.openError(path, json: value), "\(path) = \(value) was accepted")
        #expect(message.contains(phrase), "\(path): \(message)")
        #expect(message.contains("/model.json gives "), "\(message)")
        #expect(message.hasSuffix(".") && !message.contains("\n"), "not one sentence: \(message)")
    }

    /// Values inside the bounds that the weights contradict: the tensor that disagrees is named at open.
    @Test func aConfigTheWeightsContradictIsRefusedAtOpen() throws {
        let wider = try #require(try Self.openError(["vqgan", "config", "ch"], json: "64"))
        #expect(wider.contains("vqgan.safetensors does not hold the weights that the vqgan config in model.json describes"), "\(wider)")
        #expect(wider.contains("where the config needs") && wider.contains("more tensors disagree"), "\(wider)")

        let deeper = try #require(try Self.openError(["denoiser", "config", "down_levels"], json: "[1, 2, 3]"))
        #expect(deeper.contains("denoiser.safetensors does not hold the weights that the denoiser config"), "\(deeper)")
        #expect(deeper.contains("it has no tensor \"down_blocks.2."), "\(deeper)")

        let fewerLayers = try #require(try Self.openError(["clip", "config", "text_cfg", "layers"], json: "1"))
        #expect(fewerLayers.contains("which the config has no place for"), "\(fewerLayers)")
        #expect(fewerLayers.hasSuffix(".") && !fewerLayers.contains("\n"))
    }

    /// A copy of the tiny folder changed by `damage`; the error opening it throws.
    static func damagedOpenError(_ damage: (String) throws -> Void) throws -> String {
        let copy = ModelFolderTests.scratch("hostile-files") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try damage(copy)
        do {
            _ = try ModelFolder(path: copy)
        } catch {
            return "\(error)"
        }
        Issue.record("the damaged folder opened")
        return ""
    }

    @Test func filesFarLargerThanTheirKindAreRefusedUnread() throws {
        let manifest = try Self.damagedOpenError { folder in
            let path = folder + "/model.json"
            let padded = try Data(contentsOf: URL(fileURLWithPath: path)) + Data(repeating: 0x20, count: 2 << 20)
            try padded.write(to: URL(fileURLWithPath: path))
        }
        #expect(manifest.contains("model.json is 2.1 MB, more than the 1.0 MB a manifest may have"), "\(manifest)")
        let vocabulary = try Self.damagedOpenError { folder in
            try Data(count: 20 << 20).write(to: URL(fileURLWithPath: folder + "/" + CLIPTokenizer.vocabularyFileName))
        }
        #expect(vocabulary.contains("more than the 16.8 MB a tokenizer vocabulary may have"), "\(vocabulary)")
        #expect(vocabulary.hasSuffix(".") && !vocabulary.contains("\n"))
    }

    @Test func weightsStoredAsIntegersAreRefusedByName() throws {
        let message = try Self.damagedOpenError { folder in
            let path = folder + "/vqgan.safetensors"
            let stored = try SafeTensors(path: path).tensors.map { named -> (name: String, tensor: Tensor) in
                guard named.name == "quant_conv.bias" else { return (named.name, named.tensor.toFloat32()) }
                return (named.name, Tensor(int32: [Int32](repeating: 7, count: named.tensor.count), shape: named.tensor.shape))
            }
            try SafeTensors.write(stored, to: path + ".new")
            _ = rename(path + ".new", path)
        }
        #expect(message.contains("\"quant_conv.bias\" is stored as int32, not as float32, float16 or bfloat16"), "\(message)")
    }

    @Test func theShippedAndTinyFoldersOpen() throws {
        #expect(try Self.openError(["name"], json: "\"still tiny\"") == nil)
        let shipped = try ModelFolder(path: BundledModelTests.folder)
        #expect(shipped.manifest.name == "paella-small")
        // The shipped weights are the ones its model.json records (22 MB: larger than what is checked on open).
        #expect(shipped.weightBytes > ModelFolder.verifiedOnOpenBytes)
        #expect(try shipped.verifyChecksums() == ["denoiser", "vqgan", "clip"])
    }

    // MARK: Checksums

    @Test func writtenFoldersRecordEachWeightFilesChecksum() throws {
        let folder = try ModelFolder(path: Fixtures.tinyModelFolder(dtype: .float32))
        for (_, file, digest) in folder.manifest.weightFiles {
            #expect(digest == (try SHA256.hex(ofFile: folder.file(file))))
        }
        let info = try PaellaCLI.run(["info", "--model", folder.path, "--verify", "--threads", "1"])
        #expect(info.status == 0 && info.stdout.contains("SHA-256 verified for denoiser, vqgan, clip"), "\(info.stdout)\(info.stderr)")
    }

    /// The tiny float32 folder (12 MB) is above what every open hashes, so `paella info --verify` finds the flip.
    @Test func aBitFlippedWeightFileIsRefusedByName() throws {
        let copy = ModelFolderTests.scratch("flipped") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        let path = copy + "/clip.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 3] ^= 0x04  // inside the last tensor's data: the header still reads
        try bytes.write(to: URL(fileURLWithPath: path))

        let folder = try ModelFolder(path: copy)
        #expect(folder.weightBytes > ModelFolder.verifiedOnOpenBytes)
        #expect(throws: ModelFolderError.self) { try folder.verifyChecksums() }
        let info = try PaellaCLI.run(["info", "--model", copy, "--verify", "--threads", "1"])
        #expect(info.status == 1)
        #expect(info.stderr.contains("clip.safetensors has the SHA-256 "), "\(info.stderr)")
        #expect(info.stderr.contains("that model.json records, so it was damaged or replaced"), "\(info.stderr)")
        #expect(info.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func checksumsAreOptionalButMustBeWellFormed() throws {
        let copy = ModelFolderTests.scratch("unrecorded") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try ModelFolderTests.editManifest(copy) { m in
            for role in ["denoiser", "vqgan", "clip"] { Self.setValue(&m, [role, "sha256"], NSNull()) }
        }
        #expect(try ModelFolder(path: copy).verifyChecksums().isEmpty)
        let info = try PaellaCLI.run(["info", "--model", copy, "--verify", "--threads", "1"])
        #expect(info.status == 0 && info.stdout.contains("none recorded for denoiser, vqgan, clip"), "\(info.stdout)")

        let malformed = try #require(try Self.openError(["vqgan", "sha256"], json: "\"ABC\""))
        #expect(malformed.contains("gives the vqgan sha256 \"ABC\", which is not 64 lower-case hex digits"), "\(malformed)")
    }

    // MARK: Weight contents

    /// A copy of the tiny folder in `dtype` whose `file` holds what `rewrite` makes of its tensors, with the
    /// checksums dropped (so that only the contents can give the damage away).
    static func folderWithRewrittenWeights(_ file: String, dtype: DType = .float32,
                                           _ rewrite: ([(name: String, tensor: Tensor)]) -> [(name: String, tensor: Tensor)]) throws -> String {
        let copy = ModelFolderTests.scratch("weights") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: dtype), toPath: copy)
        let path = copy + "/" + file
        try SafeTensors.write(rewrite(try SafeTensors(path: path).tensors), to: path + ".new")
        _ = rename(path + ".new", path)
        try ModelFolderTests.editManifest(copy) { m in
            for role in ["denoiser", "vqgan", "clip"] { Self.setValue(&m, [role, "sha256"], NSNull()) }
        }
        return copy
    }

    /// A copy of the tiny float32 folder whose `file` has one value of the first tensor that `which` picks set to
    /// `value`.
    static func folderWithWeight(_ file: String, _ which: (String) -> Bool, set value: Float) throws -> String {
        var changed = false
        let copy = try folderWithRewrittenWeights(file) { tensors in
            tensors.map { named in
                var t = named.tensor.toFloat32()
                if !changed && which(named.name) {
                    t.withMutableFloats { $0[$0.count / 2] = value }
                    changed = true
                }
                return (named.name, t)
            }
        }
        #expect(changed, "no tensor of \(file) was picked")
        return copy
    }

    /// A NaN in the denoiser: `info --verify` names the tensor, generating is refused with one sentence (not a
    /// flat image), and the server-facing error says it is the model, not the request.
    @Test func nonFiniteDenoiserWeightsAreFoundByVerifyAndByGenerating() async throws {
        // A convolution of the first block, which every position goes through (a row of the token embedding would
        // only matter where the random start drew that token).
        let copy = try Self.folderWithWeight("denoiser.safetensors", { $0.hasPrefix("down_blocks.0.0.depthwise") && $0.hasSuffix(".weight") }, set: .nan)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        let info = try PaellaCLI.run(["info", "--model", copy, "--verify", "--threads", "1"])
        #expect(info.status == 1, "\(info.stdout)")
        #expect(info.stderr.contains("denoiser.safetensors holds weights that are not finite numbers ("), "\(info.stderr)")
        #expect(info.stderr.contains(": 1 of "), "\(info.stderr)")
        #expect(info.stderr.filter { $0 == "\n" }.count == 1, "\(info.stderr)")

        let pipeline = try Pipeline(folder: ModelFolder(path: copy), compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        await #expect(throws: PipelineError.nonFiniteModelOutput(part: "denoiser")) {
            _ = try await pipeline.generate(GenerateRequest(prompt: "a red circle", settings: CommonSettings(seed: 1)))
        }
        let generated = try PaellaCLI.run(["generate", "a red circle", "--model", copy, "--output", copy + "/out.png", "--threads", "1", "--seed", "3"])
        #expect(generated.status == 1 && generated.stderr.contains("computed values that are not finite numbers"), "\(generated.stderr)")
        #expect(!FileManager.default.fileExists(atPath: copy + "/out.png"))
    }

    /// An infinity in the VQGAN's decoder: the tokens are fine, the pixels are not, and that is refused too.
    @Test func nonFiniteDecoderWeightsAreRefusedWhenDecoding() async throws {
        let copy = try Self.folderWithWeight("vqgan.safetensors", { $0.hasPrefix("decoder.") && $0.hasSuffix(".weight") }, set: .infinity)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        #expect(throws: ModelFolderError.self) { try ModelFolder(path: copy).checkWeightValues() }
        let pipeline = try Pipeline(folder: ModelFolder(path: copy), compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        await #expect(throws: PipelineError.nonFiniteModelOutput(part: "VQGAN decoder")) {
            _ = try await pipeline.generate(GenerateRequest(prompt: "a red circle", settings: CommonSettings(seed: 1)))
        }
    }

    /// `t` (float32) rounded to bfloat16 and labelled float16, as a file written with the wrong dtype holds it.
    static func bfloat16BitsLabelledFloat16(_ t: Tensor) -> Tensor {
        let bits = t.converted(to: .bfloat16)
        var out = Tensor(uninitialized: t.shape, dtype: .float16)
        bits.withUnsafeBufferPointer(as: UInt16.self) { src in
            out.withUnsafeMutableBufferPointer(as: UInt16.self) { dst in for i in 0..<src.count { dst[i] = src[i] } }
        }
        return out
    }

    /// A folder whose float16 denoiser file holds bfloat16 bits (finite values, garbage images) is caught by
    /// `info --verify`; honest float16 matrices and norm gains near 1 are not.
    @Test func bfloat16DataLabelledFloat16IsFoundByVerify() throws {
        var random = TestRandom(seed: 5)
        let weights = random.tensor([64, 48], -0.2, 0.2)
        #expect(ModelFolder.looksLikeBFloat16(Self.bfloat16BitsLabelledFloat16(weights)))
        #expect(!ModelFolder.looksLikeBFloat16(weights.converted(to: .float16)))
        #expect(!ModelFolder.looksLikeBFloat16(Self.bfloat16BitsLabelledFloat16(random.tensor([4096], -0.2, 0.2))))
        // One honest value outside the band is enough (a genuine matrix with every value between 0.5 and 2 in
        // size would be taken for bfloat16 data; trained weights do not look like that).
        var mostlyNearOne = random.tensor([64, 48], 0.9, 1.1)
        mostlyNearOne.withMutableFloats { $0[17] = 0.01 }
        #expect(!ModelFolder.looksLikeBFloat16(mostlyNearOne.converted(to: .float16)))

        let copy = try Self.folderWithRewrittenWeights("denoiser.safetensors", dtype: .float16) { tensors in
            tensors.map { ($0.name, $0.tensor.rank >= 2 ? Self.bfloat16BitsLabelledFloat16($0.tensor.toFloat32()) : $0.tensor) }
        }
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        let info = try PaellaCLI.run(["info", "--model", copy, "--verify", "--threads", "1"])
        #expect(info.status == 1, "\(info.stdout)")
        #expect(info.stderr.contains("denoiser.safetensors labels ") && info.stderr.contains("float16, but its values look like bfloat16 data"),
                "\(info.stderr)")
        let honest = try PaellaCLI.run(["info", "--model", try Fixtures.tinyModelFolder(dtype: .float16), "--verify", "--threads", "1"])
        #expect(honest.status == 0 && honest.stdout.contains("none bfloat16 read as float16"), "\(honest.stdout)\(honest.stderr)")
    }

    /// Half-precision values are judged on their bits; the shipped folder is finite throughout.
    @Test func nonFiniteValuesAreCountedInEveryFloatDtype() throws {
        let values: [Float] = [1, .nan, -.infinity, 65504, .infinity]
        let wide = Tensor(values, shape: [5])
        #expect(wide.nonFiniteCount == 3)
        #expect(wide.converted(to: .float16).nonFiniteCount == 3)
        #expect(wide.converted(to: .bfloat16).nonFiniteCount == 3)
        #expect(Tensor(int32: [1, 2], shape: [2]).nonFiniteCount == 0)
        #expect(try ModelFolder(path: BundledModelTests.folder).checkWeightValues() > 10_000_000)
    }

    /// The CLI refuses such a folder with one line and status 1, no trap.
    @Test func infoRefusesAHostileFolderWithOneLine() throws {
        let copy = ModelFolderTests.scratch("hostile-cli") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try ModelFolderTests.editManifest(copy) { Self.setValue(&$0, ["denoiser", "config", "c_hidden"], 0) }
        let result = try PaellaCLI.run(["info", "--model", copy, "--threads", "1"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.filter { $0 == "\n" }.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("denoiser.config.c_hidden 0"), "\(result.stderr)")
    }
}
