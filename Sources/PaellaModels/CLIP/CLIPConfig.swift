// open_clip/model.py `CLIPTextCfg` / `CLIPVisionCfg` and model_configs/ViT-H-14.json, ViT-g-14.json; only the
// fields these towers use (no attention pooling, no custom text model, pooling by argmax / class token).

/// An OpenCLIP model's shape, with OpenCLIP's JSON field names (`embed_dim`, `text_cfg`, `vision_cfg`), so an
/// OpenCLIP model config decodes directly. Fields OpenCLIP leaves out take OpenCLIP's defaults.
public struct CLIPConfig: Codable, Sendable, Equatable {
    /// Width of the shared embedding both projections map to.
    public var embedDim: Int
    public var text: CLIPTextConfig
    public var vision: CLIPVisionConfig

    public init(embedDim: Int, text: CLIPTextConfig, vision: CLIPVisionConfig) {
        self.embedDim = embedDim
        self.text = text
        self.vision = vision
    }

    enum CodingKeys: String, CodingKey {
        case embedDim = "embed_dim", text = "text_cfg", vision = "vision_cfg"
    }

    /// OpenCLIP `ViT-H-14` (open_clip/model_configs/ViT-H-14.json), the conditioning model of Paella v3.
    public static let vitH14 = CLIPConfig(
        embedDim: 1024,
        text: CLIPTextConfig(contextLength: 77, vocabSize: 49408, width: 1024, heads: 16, layers: 24),
        vision: CLIPVisionConfig(imageSize: 224, layers: 32, width: 1280, headWidth: 80, patchSize: 14))

    /// OpenCLIP `ViT-g-14` (open_clip/model_configs/ViT-g-14.json), the conditioning model of Paella v1
    /// (`laion/CLIP-ViT-g-14-laion2B-s12B-b42K`).
    public static let vitG14 = CLIPConfig(
        embedDim: 1024,
        text: CLIPTextConfig(contextLength: 77, vocabSize: 49408, width: 1024, heads: 16, layers: 24),
        vision: CLIPVisionConfig(imageSize: 224, layers: 40, width: 1408, headWidth: 88, mlpRatio: 4.3637, patchSize: 14))
}

/// The text tower's shape (`CLIPTextCfg`).
public struct CLIPTextConfig: Codable, Sendable, Equatable {
    public var contextLength: Int
    public var vocabSize: Int
    public var width: Int
    public var heads: Int
    public var layers: Int
    public var mlpRatio: Double

    /// Hidden width of each block's MLP: `int(width * mlp_ratio)`, as OpenCLIP truncates it.
    public var mlpWidth: Int { Int(Double(width) * mlpRatio) }

    public init(contextLength: Int = 77, vocabSize: Int = 49408, width: Int = 512, heads: Int = 8, layers: Int = 12,
                mlpRatio: Double = 4.0) {
        self.contextLength = contextLength
        self.vocabSize = vocabSize
        self.width = width
        self.heads = heads
        self.layers = layers
        self.mlpRatio = mlpRatio
    }

    enum CodingKeys: String, CodingKey {
        case contextLength = "context_length", vocabSize = "vocab_size", width, heads, layers, mlpRatio = "mlp_ratio"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPTextConfig()
        self.init(contextLength: try c.decodeIfPresent(Int.self, forKey: .contextLength) ?? d.contextLength,
                  vocabSize: try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize,
                  width: try c.decodeIfPresent(Int.self, forKey: .width) ?? d.width,
                  heads: try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads,
                  layers: try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers,
                  mlpRatio: try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? d.mlpRatio)
    }
}

/// The vision tower's shape (`CLIPVisionCfg`).
public struct CLIPVisionConfig: Codable, Sendable, Equatable {
    public var imageSize: Int
    public var layers: Int
    public var width: Int
    /// Channels per attention head; `heads = width / headWidth`.
    public var headWidth: Int
    public var mlpRatio: Double
    public var patchSize: Int

    public var heads: Int { width / headWidth }
    /// Hidden width of each block's MLP: `int(width * mlp_ratio)` (6144 for ViT-g-14's 1408 * 4.3637).
    public var mlpWidth: Int { Int(Double(width) * mlpRatio) }
    /// Patches per side.
    public var grid: Int { imageSize / patchSize }

    public init(imageSize: Int = 224, layers: Int = 12, width: Int = 768, headWidth: Int = 64, mlpRatio: Double = 4.0,
                patchSize: Int = 16) {
        self.imageSize = imageSize
        self.layers = layers
        self.width = width
        self.headWidth = headWidth
        self.mlpRatio = mlpRatio
        self.patchSize = patchSize
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", layers, width, headWidth = "head_width", mlpRatio = "mlp_ratio",
             patchSize = "patch_size"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPVisionConfig()
        self.init(imageSize: try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize,
                  layers: try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers,
                  width: try c.decodeIfPresent(Int.self, forKey: .width) ?? d.width,
                  headWidth: try c.decodeIfPresent(Int.self, forKey: .headWidth) ?? d.headWidth,
                  mlpRatio: try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? d.mlpRatio,
                  patchSize: try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize)
    }
}
