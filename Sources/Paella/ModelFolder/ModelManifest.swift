// A model folder's `model.json`: which file holds each component, in which dtype, with which configuration, plus
// the tokenizer vocabulary and the sampling defaults. The format is described in docs/model-folder.md.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// The contents of a model folder's `model.json`.
public struct ModelManifest: Codable, Sendable, Equatable {
    /// The format version this version of Paella writes and reads; a folder with another number is refused.
    public static let currentFormat = 1
    /// The name of the manifest file inside a model folder.
    public static let fileName = "model.json"
    /// The largest model.json read (a real one is about 3 kB).
    public static let maxBytes = 1 << 20

    /// Must equal `currentFormat`.
    public var format: Int
    /// A short name shown to users and written into images, e.g. "paella-v1".
    public var name: String
    public var description: String?
    public var denoiser: ModelComponent<DenoiserConfig>
    public var vqgan: ModelComponent<VQGANConfig>
    public var clip: CLIPComponent
    /// The file name of the tokenizer vocabulary inside the folder (OpenCLIP's `bpe_simple_vocab_16e6.txt.gz`).
    public var tokenizer: String
    public var defaults: PipelineDefaults

    public init(format: Int = ModelManifest.currentFormat, name: String, description: String? = nil,
                denoiser: ModelComponent<DenoiserConfig>, vqgan: ModelComponent<VQGANConfig>, clip: CLIPComponent,
                tokenizer: String = CLIPTokenizer.vocabularyFileName, defaults: PipelineDefaults) {
        self.format = format
        self.name = name
        self.description = description
        self.denoiser = denoiser
        self.vqgan = vqgan
        self.clip = clip
        self.tokenizer = tokenizer
        self.defaults = defaults
    }

    /// A manifest with the standard file names (`denoiser.safetensors`, `vqgan.safetensors`, `clip.safetensors`)
    /// and every component stored in `dtype`.
    public init(name: String, description: String? = nil, denoiser: DenoiserConfig, vqgan: VQGANConfig,
                clip: CLIPConfig, withVision: Bool, dtype: DType, defaults: PipelineDefaults) {
        self.init(name: name, description: description,
                  denoiser: ModelComponent(file: "denoiser.safetensors", dtype: dtype.rawValue, config: denoiser),
                  vqgan: ModelComponent(file: "vqgan.safetensors", dtype: dtype.rawValue, config: vqgan),
                  clip: CLIPComponent(file: "clip.safetensors", dtype: dtype.rawValue, config: clip,
                                      towers: withVision ? ["text", "vision"] : ["text"]),
                  defaults: defaults)
    }

    /// Decodes `model.json`; `path` (the file) names it in errors.
    public static func decode(_ data: Data, path: String) throws -> ModelManifest {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ModelFolderError.invalidManifest(path: path, reason: "is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw ModelFolderError.invalidManifest(path: path, reason: "is not a JSON object")
        }
        // Check the version before anything else: a newer format may have other fields.
        guard let format = object["format"] as? Int else {
            throw ModelFolderError.invalidManifest(path: path, reason: "has no \"format\" number")
        }
        guard format == currentFormat else { throw ModelFolderError.unsupportedFormat(path: path, format: format) }
        do {
            return try JSONDecoder().decode(ModelManifest.self, from: data)
        } catch let error as DecodingError {
            throw ModelFolderError.invalidManifest(path: path, reason: Self.explain(error))
        }
    }

    /// The manifest as pretty-printed JSON with sorted keys (the same manifest always gives the same bytes).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    /// Every problem of the manifest alone (no file access), as phrases that follow "model.json ...": values
    /// outside their bounds (`ModelManifestBounds`), dtypes, file names, towers, and whether the components fit together.
    public func problems() -> [String] {
        var found = boundsProblems()
        if !found.isEmpty { return found }
        let files = [("denoiser", denoiser.file, denoiser.dtype), ("vqgan", vqgan.file, vqgan.dtype),
                     ("clip", clip.file, clip.dtype)]
        for (component, file, dtype) in files {
            if !ModelManifest.storageDTypes.contains(where: { $0.rawValue == dtype }) {
                found.append("gives the \(component) dtype \"\(dtype)\" (float32, float16 or bfloat16 are allowed)")
            }
            if !ModelManifest.isPlainFileName(file) {
                found.append("names the \(component) file \"\(file)\", which is not a plain file name inside the folder")
            }
        }
        if Set(files.map(\.1)).count != files.count { found.append("names the same file for two components") }
        for (role, _, digest) in weightFiles {
            if let digest, !(digest.count == 64 && digest.allSatisfy({ $0.isHexDigit && !$0.isUppercase })) {
                found.append("gives the \(role) sha256 \"\(digest.prefix(80))\", which is not 64 lower-case hex digits")
            }
        }
        if !ModelManifest.isPlainFileName(tokenizer) {
            found.append("names the tokenizer file \"\(tokenizer)\", which is not a plain file name inside the folder")
        }
        if !clip.towers.contains("text") || !clip.towers.allSatisfy({ ["text", "vision"].contains($0) }) {
            found.append("lists the CLIP towers \(clip.towers) (\"text\" is required, \"vision\" optional)")
        }
        if denoiser.config.numLabels != vqgan.config.nEmbed {
            found.append("pairs a denoiser of \(denoiser.config.numLabels) token labels with a VQGAN codebook of "
                         + "\(vqgan.config.nEmbed) entries")
        }
        if denoiser.config.cClip != clip.config.embedDim {
            found.append("pairs a denoiser conditioned on \(denoiser.config.cClip)-wide embeddings with a CLIP of "
                         + "\(clip.config.embedDim)-wide embeddings")
        }
        let side = tokenSideMultiple * vqgan.config.downsamplingFactor
        if defaults.imageSize <= 0 || defaults.imageSize % side != 0 {
            found.append("gives the default image size \(defaults.imageSize), which is not a positive multiple of \(side) "
                         + "(the VQGAN factor \(vqgan.config.downsamplingFactor) times the denoiser's grid multiple "
                         + "\(tokenSideMultiple))")
        }
        return found
    }

    /// Each component's role, file name and recorded checksum, in the order the folder lists them.
    public var weightFiles: [(role: String, file: String, sha256: String?)] {
        [("denoiser", denoiser.file, denoiser.sha256), ("vqgan", vqgan.file, vqgan.sha256), ("clip", clip.file, clip.sha256)]
    }

    /// Records the SHA-256 of each component's file as it is now in `folder` (after writing or replacing them).
    public mutating func recordChecksums(in folder: String) throws {
        func digest(_ file: String) throws -> String { try SHA256.hex(ofFile: (folder as NSString).appendingPathComponent(file)) }
        denoiser.sha256 = try digest(denoiser.file)
        vqgan.sha256 = try digest(vqgan.file)
        clip.sha256 = try digest(clip.file)
    }

    /// Token grid sides must be multiples of this (the denoiser halves the grid once per level below the first).
    public var tokenSideMultiple: Int { denoiser.config.sideMultiple }

    /// The dtypes a component may be stored in.
    public static let storageDTypes: [DType] = [.float32, .float16, .bfloat16]

    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains("/") && name != "." && name != ".." && !name.hasPrefix(".")
    }

    /// One phrase for a decoding error: which field, and what is wrong with it.
    static func explain(_ error: DecodingError) -> String {
        func field(_ path: [CodingKey], _ last: CodingKey? = nil) -> String {
            let names = (path + (last.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }
            return names.isEmpty ? "the top level" : "\"" + names.joined(separator: ".") + "\""
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "has no \(field(context.codingPath, key)) entry"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "has a wrong value at \(field(context.codingPath)) (\(context.debugDescription))"
        case .dataCorrupted(let context):
            return "has an unreadable value at \(field(context.codingPath)) (\(context.debugDescription))"
        @unknown default:
            return "cannot be read (\(error))"
        }
    }
}

/// One network of a model folder: its safetensors file, the dtype the weights are stored in, and its shape.
public struct ModelComponent<Config: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    /// File name inside the folder.
    public var file: String
    /// "float32", "float16" or "bfloat16"; weights are widened to float32 when loaded.
    public var dtype: String
    public var config: Config
    /// The file's SHA-256 (64 lower-case hex digits), recorded when the folder is written; nil in folders written
    /// before checksums were recorded.
    public var sha256: String?

    public init(file: String, dtype: String, config: Config, sha256: String? = nil) {
        self.file = file
        self.dtype = dtype
        self.config = config
        self.sha256 = sha256
    }
}

/// The CLIP component: like `ModelComponent`, plus which towers the file holds.
public struct CLIPComponent: Codable, Sendable, Equatable {
    public var file: String
    public var dtype: String
    /// OpenCLIP's configuration (`embed_dim`, `text_cfg`, `vision_cfg`).
    public var config: CLIPConfig
    /// "text" (always) and "vision" (only when converted with `--with-vision`; needed for variations).
    public var towers: [String]
    /// As `ModelComponent.sha256`.
    public var sha256: String?

    public init(file: String, dtype: String, config: CLIPConfig, towers: [String], sha256: String? = nil) {
        self.file = file
        self.dtype = dtype
        self.config = config
        self.towers = towers
        self.sha256 = sha256
    }
}
