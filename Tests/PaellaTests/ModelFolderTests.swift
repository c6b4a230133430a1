import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// Model folders built from the fixture checkpoints (`Fixtures.tinyModelFolder`): what they hold, that they load
/// to the same models as the source files, and that every broken folder gives one clear error.
@Suite struct ModelFolderTests {
    static let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())

    static func scratch(_ label: String) -> String {
        let path = NSTemporaryDirectory() + "paella-folder-test-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Outputs of the three components on fixed inputs whose sizes come from the configurations.
    struct Outputs {
        var logits, decoded, encodedLogits, text, image: [Float]
        var tokens: [Int]
    }

    static func outputs(denoiser: Denoiser, vqgan: VQGAN, clip: CLIPModel) throws -> Outputs {
        var random = TestRandom(seed: 7)
        let side = Fixtures.tinyTokenSide(denoiser.config)
        let tokens = Tensor(int32: (0 ..< side * side).map { _ in Int32(random.int(0 ... denoiser.config.numLabels - 1)) },
                            shape: [1, side, side])
        let logits = denoiser(tokens, conditioning: random.tensor([1, denoiser.config.cClip]), r: [0.3])
        let decoded = try vqgan.decode(tokens)                                        // [1, H, W, 3]
        let encodedLogits = try vqgan.quantizerLogits(decoded)
        let tokenizer = try CLIPTokenizer(openCLIPVocabulary: CLIPTokenizer.locateVocabulary())
        let textTower = try #require(clip.text), visionTower = try #require(clip.vision)
        let text = textTower(tokenizer.contextTokens(["a bowl of paella"]), compute: compute)
        let size = clip.config.vision.imageSize
        let image = visionTower(random.tensor([1, size, size, 3]), compute: compute)
        return Outputs(logits: logits.floats, decoded: decoded.floats, encodedLogits: encodedLogits.floats,
                       text: text.floats, image: image.floats, tokens: try vqgan.encode(decoded).integers())
    }

    /// The same outputs from the source checkpoints (the adapted tiny denoiser, `vqgan_tiny.ckpt`, `clip_tiny.bin`).
    static func sourceOutputs() throws -> Outputs {
        let configs = try Fixtures.tinyConfigs()
        let denoiserFile = try Fixtures.tinyPipelineDenoiser(in: scratch("source"))
        return try outputs(
            denoiser: Denoiser(config: configs.denoiser, path: denoiserFile, compute: compute),
            vqgan: VQGAN(contentsOf: Fixtures.path("vqgan_tiny.ckpt"), config: configs.vqgan, compute: compute),
            clip: CLIPModel(path: Fixtures.path("clip_tiny.bin"), config: configs.clip, towers: .both))
    }

    static func folderOutputs(_ folder: ModelFolder) throws -> Outputs {
        try outputs(denoiser: folder.loadDenoiser(compute: compute), vqgan: folder.loadVQGAN(compute: compute),
                    clip: folder.loadCLIP(towers: .both))
    }

    @Test func float32FolderGivesBitIdenticalOutputs() throws {
        let folder = try ModelFolder(path: Fixtures.tinyModelFolder(dtype: .float32))
        let (a, b) = (try Self.folderOutputs(folder), try Self.sourceOutputs())
        #expect(a.logits == b.logits)
        #expect(a.decoded == b.decoded)
        #expect(a.encodedLogits == b.encodedLogits)
        #expect(a.tokens == b.tokens)
        #expect(a.text == b.text)
        #expect(a.image == b.image)
    }

    /// Weights rounded to float16 (11 significant bits) or bfloat16 (8 bits) change every output a little.
    /// Bounds, relative to the largest output: float16 1e-2, bfloat16 5e-2: a weight's relative rounding error is
    /// at most 2^-11 or 2^-8, and it grows through the tiny models' few layers (measured on the fixtures: float16 at most 2.0e-3, bfloat16 at most 1.4e-2, both on the VQGAN decoder output).
    @Test(arguments: [(DType.float16, Float(1e-2)), (DType.bfloat16, Float(5e-2))])
    func halfPrecisionFoldersStayClose(dtype: DType, tolerance: Float) throws {
        let path = try Fixtures.tinyModelFolder(dtype: dtype)
        let folder = try ModelFolder(path: path)
        #expect(folder.manifest.denoiser.dtype == dtype.rawValue)
        for file in [folder.manifest.denoiser.file, folder.manifest.vqgan.file, folder.manifest.clip.file] {
            #expect(try SafeTensors(path: folder.file(file)).tensors.allSatisfy { $0.tensor.dtype == dtype })
        }
        let (a, b) = (try Self.folderOutputs(folder), try Self.sourceOutputs())
        for (name, x, y) in [("logits", a.logits, b.logits), ("decoded", a.decoded, b.decoded),
                             ("quantizer logits", a.encodedLogits, b.encodedLogits), ("text", a.text, b.text),
                             ("image", a.image, b.image)] {
            let relative = maxAbsDifference(x, y) / maxAbs(y)
            print("\(dtype.rawValue) folder, \(name): max |a-b| / max |ref| = \(relative)")
            #expect(relative <= tolerance, "\(dtype.rawValue) \(name): \(relative) > \(tolerance)")
        }
    }

    @Test func manifestDescribesWhatWasWritten() throws {
        let path = try Fixtures.tinyModelFolder(dtype: .float32)
        let folder = try ModelFolder(path: path)
        let configs = try Fixtures.tinyConfigs()
        let m = folder.manifest
        #expect(m.format == ModelManifest.currentFormat)
        #expect(m.denoiser.config == configs.denoiser && m.vqgan.config == configs.vqgan && m.clip.config == configs.clip)
        #expect(folder.hasVisionTower && m.clip.towers == ["text", "vision"])
        #expect(m.defaults.imageSize == Fixtures.tinyTokenSide(configs.denoiser) * configs.vqgan.downsamplingFactor)
        // Only inference keys are kept, under their upstream names.
        let vqganKeys = try SafeTensors(path: folder.file(m.vqgan.file)).names
        #expect(!vqganKeys.isEmpty && !vqganKeys.contains { VQGAN.isTrainingOnlyKey($0) })
        let ckptKeys = try WeightLoader.open(path: Fixtures.path("vqgan_tiny.ckpt")).keys
        #expect(Set(vqganKeys) == Set(ckptKeys.filter { !VQGAN.isTrainingOnlyKey($0) }))
        let clipKeys = try SafeTensors(path: folder.file(m.clip.file)).names
        #expect(!clipKeys.contains("logit_scale") && clipKeys.contains { $0.hasPrefix("visual.") })
        // The manifest survives a round trip through its JSON.
        #expect(try ModelManifest.decode(m.encoded(), path: "model.json") == m)
        #expect(try folder.loadTokenizer().encode("paella").isEmpty == false)
        let stored = try folder.storedComponents()
        #expect(stored.map(\.role) == ["denoiser", "vqgan", "clip"])
        #expect(stored.allSatisfy { $0.parameters > 0 && $0.bytes > $0.parameters * 4 })
    }

    @Test func aFolderWithoutTheVisionTowerSaysHowToGetIt() throws {
        let folder = try ModelFolder(path: Fixtures.tinyModelFolder(dtype: .float32, withVision: false))
        #expect(!folder.hasVisionTower)
        #expect(try !SafeTensors(path: folder.file(folder.manifest.clip.file)).names.contains { $0.hasPrefix("visual.") })
        #expect(try folder.loadCLIP(towers: .text).text != nil)
        for towers in [CLIPTowers.vision, .both] {
            let error = #expect(throws: ModelFolderError.self) { try folder.loadCLIP(towers: towers) }
            #expect(error?.description.contains("has no CLIP vision tower; rerun paella convert with --with-vision") == true)
        }
    }

    // MARK: Broken folders

    /// A copy of the float32 tiny folder, changed by `damage`; returns the error `ModelFolder.init` or loading throws.
    static func damagedFolderError(_ damage: (String) throws -> Void) throws -> String? {
        let copy = scratch("damaged") + "/model"
        try FileManager.default.copyItem(atPath: try Fixtures.tinyModelFolder(dtype: .float32), toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try damage(copy)
        do {
            let folder = try ModelFolder(path: copy)
            _ = try folder.loadDenoiser(compute: compute)
            _ = try folder.loadVQGAN(compute: compute)
            _ = try folder.loadCLIP(towers: .both)
            _ = try folder.loadTokenizer()
            return nil
        } catch {
            return "\(error)"
        }
    }

    static func editManifest(_ folder: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = folder + "/model.json"
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    }

    static let damages: [(String, String, @Sendable (String) throws -> Void)] = [
        ("no model.json", "has no model.json", { try FileManager.default.removeItem(atPath: $0 + "/model.json") }),
        ("bad JSON", "model.json is not valid JSON", { try Data("{\"format\": 1,".utf8).write(to: URL(fileURLWithPath: $0 + "/model.json")) }),
        ("newer format", "has format 2, but this version of Paella reads format 1", { try editManifest($0) { $0["format"] = 2 } }),
        ("no format", "has no \"format\" number", { try editManifest($0) { $0["format"] = nil } }),
        ("missing component", "has no \"vqgan\" entry", { try editManifest($0) { $0["vqgan"] = nil } }),
        ("missing weights file", "vqgan.safetensors, the VQGAN weights named in model.json, does not exist",
         { try FileManager.default.removeItem(atPath: $0 + "/vqgan.safetensors") }),
        ("missing vocabulary", "the tokenizer vocabulary named in model.json, does not exist",
         { try FileManager.default.removeItem(atPath: $0 + "/" + CLIPTokenizer.vocabularyFileName) }),
        ("unknown dtype", "gives the clip dtype \"float8\"", { try editManifest($0) { m in
            var clip = m["clip"] as? [String: Any] ?? [:]; clip["dtype"] = "float8"; m["clip"] = clip } }),
        ("file outside the folder", "is not a plain file name inside the folder", { try editManifest($0) { m in
            var d = m["denoiser"] as? [String: Any] ?? [:]; d["file"] = "../denoiser.safetensors"; m["denoiser"] = d } }),
        ("mismatched components", "pairs a denoiser of", { try editManifest($0) { m in
            var d = m["denoiser"] as? [String: Any] ?? [:]; var c = d["config"] as? [String: Any] ?? [:]
            c["num_labels"] = 1000; d["config"] = c; m["denoiser"] = d } }),
        ("misshapen weights", "does not hold the weights that the vqgan config in model.json describes", { try editManifest($0) { m in
            var v = m["vqgan"] as? [String: Any] ?? [:]; var c = v["config"] as? [String: Any] ?? [:]
            c["ch"] = 64; v["config"] = c; m["vqgan"] = v } }),
        ("truncated weights", "denoiser.safetensors", { folder in
            let path = folder + "/denoiser.safetensors"
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path)) }),
    ]

    @Test(arguments: damages.indices)
    func aBrokenFolderGivesOneClearSentence(_ index: Int) throws {
        let (label, phrase, damage) = Self.damages[index]
        let message = try #require(try Self.damagedFolderError(damage), "\(label): no error")
        print("broken folder, \(label): \(message)")
        #expect(message.contains(phrase), "\(label): \(message)")
        #expect(message.hasSuffix(".") && !message.contains("\n"), "\(label): not one sentence: \(message)")
    }

    // MARK: Writing

    @Test func writingIsAtomicAndRefusesToOverwrite() throws {
        let parent = Self.scratch("write")
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let output = parent + "/model"
        let denoiser = try Fixtures.tinyPipelineDenoiser(in: parent)
        var conversion = try Fixtures.tinyModelConversion(output: output, denoiser: denoiser)
        let contents = { try FileManager.default.contentsOfDirectory(atPath: parent).sorted() }
        let before = try contents()

        // A failure half way (the vocabulary cannot be read, after the weights were written) leaves nothing.
        conversion.vocabulary = parent + "/missing-vocab.txt.gz"
        #expect(throws: (any Error).self) { try conversion.run(compute: Self.compute) }
        #expect(try contents() == before)
        let tensors = try SafeTensors(path: Fixtures.path("vqgan_tiny.safetensors")).tensors
        let error = #expect(throws: ModelFolderError.self) {
            try ModelFolder.write(to: output, manifest: conversion.manifest, denoiser: [], vqgan: tensors, clip: [],
                                  vocabulary: parent + "/missing-vocab.txt.gz", compute: Self.compute)
        }
        #expect(error?.description.contains("nothing was left behind") == true)
        #expect(try contents() == before)

        // A good write, then a second one without and with overwrite.
        conversion.vocabulary = try CLIPTokenizer.locateVocabulary()
        try conversion.run(compute: Self.compute)
        let marker = output + "/old-file"
        try Data().write(to: URL(fileURLWithPath: marker))
        let exists = #expect(throws: ModelFolderError.self) { try conversion.run(compute: Self.compute) }
        #expect(exists == .outputExists(path: output))
        #expect(FileManager.default.fileExists(atPath: marker))
        conversion.overwrite = true
        conversion.dtype = .bfloat16
        try conversion.run(compute: Self.compute)
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(try ModelFolder(path: output).manifest.vqgan.dtype == "bfloat16")
        #expect(try contents() == (before + ["model"]).sorted())
    }

    @Test func conversionChecksEveryComponentBeforeWriting() throws {
        let parent = Self.scratch("convert")
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let output = parent + "/model"
        // The fixture denoiser as it is predicts 64 labels for a 48-entry codebook: refused before reading weights.
        var mismatched = try Fixtures.tinyModelConversion(output: output, denoiser: Fixtures.path("denoiser_v1_tiny.pt"))
        mismatched.denoiserConfig = try ModelConfigFile.denoiser(Fixtures.path("denoiser_v1_tiny.json"))
        let inconsistent = #expect(throws: ModelFolderError.self) { try mismatched.run(compute: Self.compute) }
        #expect(inconsistent?.description.contains("do not make one model") == true)
        // Weights that do not fit the configuration: every key is checked by loading.
        let wrongWeights = try Fixtures.tinyModelConversion(output: output, denoiser: Fixtures.path("denoiser_v1_tiny.pt"))
        let misfit = #expect(throws: WeightLoadingError.self) { try wrongWeights.run(compute: Self.compute) }
        #expect(misfit?.description.contains("denoiser_v1_tiny.pt") == true)
        // The VQGAN file given as CLIP.
        var swapped = try Fixtures.tinyModelConversion(output: output, denoiser: Fixtures.tinyPipelineDenoiser(in: parent))
        swapped.clip = Fixtures.path("vqgan_tiny.ckpt")
        #expect(throws: WeightLoadingError.self) { try swapped.run(compute: Self.compute) }
        #expect(!FileManager.default.fileExists(atPath: output))
        // A checkpoint its reader refuses without naming it (here a pickle that calls os.system) is named, with its role.
        let hostile = parent + "/hostile.pt"
        let pickle: [UInt8] = [0x80, 0x02, UInt8(ascii: "c")] + Array("os\nsystem\n".utf8) + [UInt8(ascii: "."),]
        try Data(TestZip.stored([("archive/data.pkl", pickle)]).build().bytes).write(to: URL(fileURLWithPath: hostile))
        var refused = try Fixtures.tinyModelConversion(output: output, denoiser: Fixtures.tinyPipelineDenoiser(in: parent))
        refused.vqgan = hostile
        let named = #expect(throws: ModelFolderError.self) { try refused.run(compute: Self.compute) }
        #expect(named?.description.hasPrefix("The VQGAN checkpoint \(hostile) cannot be used: ") == true, "\(named.map { "\($0)" } ?? "")")
        #expect(named?.description.contains("`os.system`") == true)
        #expect(!FileManager.default.fileExists(atPath: output))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test func configFilesInUpstreamFormats() throws {
        #expect(try ModelConfigFile.vqgan(Fixtures.path("vqgan_tiny.json")).nEmbed > 0)
        #expect(try ModelConfigFile.clip(Fixtures.path("clip_tiny.json")).embedDim > 0)
        #expect(try ModelConfigFile.denoiser(Fixtures.path("denoiser_v1_tiny.json")).numLabels > 0)
        let error = #expect(throws: ModelFolderError.self) { try ModelConfigFile.denoiser(Fixtures.path("clip_tiny.json")) }
        #expect(error?.description.contains("is not a denoiser configuration") == true)
        #expect(formatCount(573_123_456) == "573,123,456" && formatCount(12) == "12")
    }
}

/// `paella convert` and `paella info --model` run as a user runs them: the built executable, found next to the
/// test bundle (`swift build` puts both in the same folder); skipped when it has not been built.
@Suite(.enabled(if: PaellaCLI.executable != nil, "the paella executable is not built (run `swift build` first)"))
struct ConvertCommandTests {
}

extension ConvertCommandTests {
    /// Exit status, stdout and stderr of `paella arguments...`.
    static func paella(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let result = try PaellaCLI.run(arguments)
        return (result.status, result.stdout, result.stderr)
    }

    @Test func newDenoiserStartsAModelFromATrainedVQGANAndCLIP() throws {
        let work = ModelFolderTests.scratch("new")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let configs = try Fixtures.tinyConfigs()
        let denoiserConfig = work + "/denoiser.json"
        try JSONEncoder().encode(configs.denoiser).write(to: URL(fileURLWithPath: denoiserConfig))
        let common = ["--vqgan", Fixtures.path("vqgan_tiny.ckpt"), "--clip", Fixtures.path("clip_tiny.bin"),
                      "--vqgan-config", Fixtures.path("vqgan_tiny.json"), "--clip-config", Fixtures.path("clip_tiny.json"), "--quiet"]
        let made = try Self.paella(["convert", "--new-denoiser", "--denoiser-config", denoiserConfig, "--output", work + "/new"] + common)
        #expect(made.status == 0, "\(made.err)")
        let folder = try ModelFolder(path: work + "/new")
        #expect(folder.manifest.denoiser.config == configs.denoiser)
        _ = try folder.loadDenoiser(compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()))
        let withoutConfig = try Self.paella(["convert", "--new-denoiser", "--output", work + "/other"] + common)
        #expect(withoutConfig.status != 0 && withoutConfig.err.contains("--denoiser-config"))
    }

    @Test func convertsTheFixtureCheckpointsAndDescribesTheFolder() throws {
        let work = ModelFolderTests.scratch("cli")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let configs = try Fixtures.tinyConfigs()
        let denoiserConfig = work + "/denoiser.json"
        try JSONEncoder().encode(configs.denoiser).write(to: URL(fileURLWithPath: denoiserConfig))
        let output = work + "/tiny"
        let common = ["--vqgan", Fixtures.path("vqgan_tiny.ckpt"), "--clip", Fixtures.path("clip_tiny.bin"),
                      "--vqgan-config", Fixtures.path("vqgan_tiny.json"), "--clip-config", Fixtures.path("clip_tiny.json"),
                      "--output", output, "--threads", "2"]

        // The denoiser .pt fixture as it is does not fit the VQGAN and CLIP fixtures: one sentence, exit 1.
        let mismatched = try Self.paella(["convert", "--denoiser", Fixtures.path("denoiser_v1_tiny.pt"),
                                          "--denoiser-config", Fixtures.path("denoiser_v1_tiny.json")] + common)
        #expect(mismatched.status == 1)
        #expect(mismatched.err.hasPrefix("error: These components do not make one model") && mismatched.err.filter { $0 == "\n" }.count == 1)
        // Strict loading: the .pt's weights against the adapted configuration.
        let misfit = try Self.paella(["convert", "--denoiser", Fixtures.path("denoiser_v1_tiny.pt"),
                                      "--denoiser-config", denoiserConfig] + common)
        #expect(misfit.status == 1 && misfit.err.contains("do not fit this model"))
        #expect(!FileManager.default.fileExists(atPath: output))

        let denoiser = try Fixtures.tinyPipelineDenoiser(in: work)
        let converted = try Self.paella(["convert", "--denoiser", denoiser, "--denoiser-config", denoiserConfig,
                                         "--dtype", "f16", "--with-vision", "--name", "tiny"] + common)
        #expect(converted.status == 0, "\(converted.err)")
        #expect(converted.out == output + "\n")
        for role in ["denoiser", "vqgan", "clip"] { #expect(converted.err.contains("\(role): reading"), "no progress for \(role)") }
        let folder = try ModelFolder(path: output)
        #expect(folder.manifest.name == "tiny" && folder.manifest.clip.dtype == "float16" && folder.hasVisionTower)

        let again = try Self.paella(["convert", "--denoiser", denoiser, "--denoiser-config", denoiserConfig] + common)
        #expect(again.status == 1 && again.err.contains("already exists") && again.err.contains("--force"))
        let forced = try Self.paella(["convert", "--quiet", "--force", "--denoiser", denoiser, "--denoiser-config", denoiserConfig] + common)
        #expect(forced.status == 0 && forced.err.isEmpty)
        #expect(try ModelFolder(path: output).manifest.denoiser.dtype == "float32")

        let info = try Self.paella(["info", "--model", output, "--threads", "1"])
        #expect(info.status == 0)
        for phrase in ["paella-v1", "denoiser.safetensors", "parameters", "float32", "clip towers", "text", "generate"] {
            #expect(info.out.contains(phrase), "info lacks \(phrase): \(info.out)")
        }
        let missing = try Self.paella(["info", "--model", work + "/nothing"])
        #expect(missing.status == 1 && missing.err.contains("does not exist"))
    }
}

extension ModelFolderTests {
    /// `ModelConversion(downloadFolder:)` (`paella convert --from`, `paella download v1`) finds the released file names.
    @Test func convertsFromADownloadFolder() throws {
        let work = Self.scratch("from")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let downloads = work + "/downloads"
        try FileManager.default.createDirectory(atPath: downloads, withIntermediateDirectories: true)
        let fm = FileManager.default
        try fm.copyItem(atPath: Fixtures.tinyPipelineDenoiser(in: work), toPath: downloads + "/" + ReleasedWeights.v1Denoiser.file)
        try fm.copyItem(atPath: Fixtures.path("vqgan_tiny.ckpt"), toPath: downloads + "/" + ReleasedWeights.v1VQGAN.file)
        try fm.copyItem(atPath: Fixtures.path("clip_tiny.bin"), toPath: downloads + "/" + ReleasedWeights.v1CLIP.file)
        let template = try Fixtures.tinyModelConversion(output: "", denoiser: "")
        var conversion = ModelConversion(downloadFolder: downloads, output: work + "/models/paella-v1")
        conversion.denoiserConfig = template.denoiserConfig
        conversion.vqganConfig = template.vqganConfig
        conversion.clipConfig = template.clipConfig
        conversion.defaults = template.defaults
        var lines: [String] = []
        let folder = try conversion.run(compute: Self.compute) { lines.append($0) }
        #expect(folder.manifest.name == "paella-v1" && !folder.hasVisionTower)
        #expect(lines.contains { $0.hasPrefix("vqgan: reading") && $0.hasSuffix(ReleasedWeights.v1VQGAN.file) })
        // A missing released file is named.
        try fm.removeItem(atPath: downloads + "/" + ReleasedWeights.v1CLIP.file)
        conversion.overwrite = true
        let error = #expect(throws: ModelFolderError.self) { try conversion.run(compute: Self.compute) }
        #expect(error?.description.contains(ReleasedWeights.v1CLIP.file) == true)
    }
}

extension ModelFolderTests {
    /// The presets `paella convert` uses by default describe one consistent model (checked without weights).
    @Test func theV1PresetsMakeOneModel() throws {
        let manifest = ModelManifest(name: "paella-v1", denoiser: .v1, vqgan: .rudalleF8, clip: .vitG14, withVision: false,
                                     dtype: .float32, defaults: .v1)
        #expect(manifest.problems().isEmpty, "\(manifest.problems())")
        #expect(try ModelManifest.decode(manifest.encoded(), path: "model.json") == manifest)
        #expect(try manifest.encoded() == manifest.encoded())
        var wrongGrid = manifest
        wrongGrid.defaults.imageSize = 260
        #expect(wrongGrid.problems().count == 1)
    }
}
