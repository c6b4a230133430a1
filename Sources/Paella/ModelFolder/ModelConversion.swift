// `paella convert` as a library call: the released checkpoints (or any with the same keys) -> a model folder.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// Turns three checkpoints (denoiser, VQGAN, CLIP; safetensors or `torch.save` files) into a model folder.
/// Each component is loaded strictly by its model before anything is written, so every key and shape is checked
/// against the configuration; only the keys the model reads are written, under their upstream names (the
/// VQGAN's training-only `loss.*`, CLIP's `logit_scale` and, without `withVision`, CLIP's `visual.*` are dropped).
public struct ModelConversion: Sendable {
    public var denoiser: String
    public var vqgan: String
    public var clip: String
    /// The OpenCLIP vocabulary to copy in; nil: `CLIPTokenizer.locateVocabulary()`.
    public var vocabulary: String?
    public var output: String
    /// The dtype every component is stored in: float32, float16 or bfloat16.
    public var dtype: DType = .float32
    /// Keep CLIP's vision tower (needed for image variations).
    public var withVision = false
    public var name = "paella-v1"
    public var description: String?
    public var denoiserConfig: DenoiserConfig = .v1
    public var vqganConfig: VQGANConfig = .rudalleF8
    public var clipConfig: CLIPConfig = .vitG14
    public var defaults: PipelineDefaults = .v1
    /// Replace an existing output folder.
    public var overwrite = false

    public init(denoiser: String, vqgan: String, clip: String, output: String) {
        self.denoiser = denoiser
        self.vqgan = vqgan
        self.clip = clip
        self.output = output
    }

    /// The released file names inside a download folder (`paella download v1 --no-convert`).
    public init(downloadFolder: String, output: String) {
        func inside(_ file: HubFile) -> String { (downloadFolder as NSString).appendingPathComponent(file.file) }
        self.init(denoiser: inside(ReleasedWeights.v1Denoiser), vqgan: inside(ReleasedWeights.v1VQGAN),
                  clip: inside(ReleasedWeights.v1CLIP), output: output)
    }

    /// The manifest this conversion writes.
    public var manifest: ModelManifest {
        ModelManifest(name: name, description: description, denoiser: denoiserConfig, vqgan: vqganConfig,
                      clip: clipConfig, withVision: withVision, dtype: dtype, defaults: defaults)
    }

    /// Checks, converts and writes; returns the folder as read back. `progress` gets one line per stage.
    @discardableResult
    public func run(compute: Compute, progress: (String) -> Void = { _ in }) throws -> ModelFolder {
        let manifest = self.manifest
        if let problem = manifest.problems().first {
            throw ModelFolderError.inconsistent(reason: problem)
        }
        if FileManager.default.fileExists(atPath: output) && !overwrite { throw ModelFolderError.outputExists(path: output) }
        for (role, path) in [("denoiser", denoiser), ("VQGAN", vqgan), ("CLIP", clip)]
        where !FileManager.default.isReadableFile(atPath: path) {
            throw ModelFolderError.missingCheckpoint(path: path, role: role)
        }
        let vocabulary = try self.vocabulary ?? CLIPTokenizer.locateVocabulary()
        _ = try CLIPTokenizer(openCLIPVocabulary: vocabulary)  // a broken vocabulary fails here, not in the folder

        let denoiserTensors = try checked("denoiser", denoiser, progress) { loader in
            _ = try Denoiser(config: denoiserConfig, weights: loader, compute: compute)
        }
        let vqganTensors = try checked("vqgan", vqgan, progress) { loader in
            _ = try VQGAN(config: vqganConfig, weights: loader, compute: compute)
        }
        let clipTensors = try checked("clip", clip, progress) { loader in
            _ = try CLIPModel(weights: loader, config: clipConfig, towers: withVision ? .both : .text)
        }
        try ModelFolder.write(to: output, manifest: manifest, denoiser: denoiserTensors, vqgan: vqganTensors,
                              clip: clipTensors, vocabulary: vocabulary, overwrite: overwrite, compute: compute,
                              progress: progress)
        let folder = try ModelFolder(path: output)
        progress("wrote \(output)")
        return folder
    }

    /// Reads `path`, lets `load` build the model from it strictly (it throws on any missing, unexpected or
    /// misshapen key), and returns the tensors the model read, in file order.
    private func checked(_ role: String, _ path: String, _ progress: (String) -> Void,
                         _ load: (WeightLoader) throws -> Void) throws -> ModelFolder.NamedTensors {
        progress("\(role): reading \(path)")
        let tensors: ModelFolder.NamedTensors
        do {
            switch try CheckpointInspector.detectFormat(path: path) {
            case .safetensors: tensors = try SafeTensors(path: path).tensors
            case .pytorch: tensors = try PyTorchCheckpoint(path: path).tensors
            }
        } catch {
            // Three checkpoints go in; a reader's message that does not name its file must say which one failed.
            let message = "\(error)"
            guard !message.contains(path) else { throw error }
            throw ModelFolderError.unusableCheckpoint(path: path, role: ["vqgan": "VQGAN", "clip": "CLIP"][role] ?? role, reason: message)
        }
        let loader = WeightLoader(tensors: tensors, origin: path)
        try load(loader)
        let used = Set(loader.requested.map(\.name))
        let kept = tensors.filter { used.contains($0.name) }
        try ModelFolder.checkValues(kept, path: path)
        let parameters = kept.reduce(0) { $0 + $1.tensor.count }
        let dropped = tensors.count - kept.count
        progress("\(role): \(kept.count) tensors, \(formatCount(parameters)) parameters checked"
                 + (dropped > 0 ? " (\(dropped) not needed for inference dropped)" : ""))
        return kept
    }
}

/// Reading model configurations from JSON files in the formats upstream writes them. Each reader of a file has
/// an in-memory twin (`contents:`, with `source` naming the bytes in errors) that the file version goes through.
public enum ModelConfigFile {
    /// `DenoiseUNet`'s constructor arguments (`{"num_labels": ..., "c_hidden": ..., ...}`).
    public static func denoiser(_ path: String) throws -> DenoiserConfig { try denoiser(contents: read(path, "denoiser"), source: path) }
    public static func denoiser(contents: Data, source: String) throws -> DenoiserConfig {
        try decode(contents, source, "denoiser") { try JSONDecoder().decode(DenoiserConfig.self, from: $0) }
    }

    /// A taming/ruDALL-E `model.params` block (`{"ddconfig": {...}, "n_embed": ..., "embed_dim": ...}`) or the
    /// flat form a model folder's manifest stores.
    public static func vqgan(_ path: String) throws -> VQGANConfig { try vqgan(contents: read(path, "VQGAN"), source: path) }
    public static func vqgan(contents: Data, source: String) throws -> VQGANConfig {
        try decode(contents, source, "VQGAN") { data in
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            if object?["ddconfig"] != nil { return try VQGANConfig(tamingParams: data) }
            return try JSONDecoder().decode(VQGANConfig.self, from: data)
        }
    }

    /// An OpenCLIP model config (`{"embed_dim": ..., "text_cfg": {...}, "vision_cfg": {...}}`).
    public static func clip(_ path: String) throws -> CLIPConfig { try clip(contents: read(path, "CLIP"), source: path) }
    public static func clip(contents: Data, source: String) throws -> CLIPConfig {
        try decode(contents, source, "CLIP") { try JSONDecoder().decode(CLIPConfig.self, from: $0) }
    }

    /// `PipelineDefaults` as a manifest stores them.
    public static func defaults(_ path: String) throws -> PipelineDefaults {
        try defaults(contents: read(path, "pipeline defaults"), source: path)
    }
    public static func defaults(contents: Data, source: String) throws -> PipelineDefaults {
        try decode(contents, source, "pipeline defaults") { try JSONDecoder().decode(PipelineDefaults.self, from: $0) }
    }

    private static func read(_ path: String, _ what: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFolderError.badConfigFile(path: path, reason: "cannot be read as a \(what) configuration")
        }
        return data
    }

    private static func decode<T>(_ data: Data, _ path: String, _ what: String, _ body: (Data) throws -> T) throws -> T {
        do {
            return try body(data)
        } catch let error as DecodingError {
            throw ModelFolderError.badConfigFile(path: path, reason: "is not a \(what) configuration: it " + ModelManifest.explain(error))
        } catch let error as VQGANError {
            throw ModelFolderError.badConfigFile(path: path, reason: "describes an unsupported VQGAN (\(error))")
        } catch {
            throw ModelFolderError.badConfigFile(path: path, reason: "is not valid JSON")
        }
    }
}
