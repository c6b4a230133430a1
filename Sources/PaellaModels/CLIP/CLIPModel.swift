// open_clip/model.py `CLIP` (encode_text, encode_image); only the towers, loaded from an OpenCLIP state dict.
import PaellaCore
import PaellaIO

/// Which towers of a CLIP checkpoint to load.
public enum CLIPTowers: String, Sendable, CaseIterable {
    /// Text tower only: the `visual.*` weights are never read (with a memory-mapped file they stay on disk).
    case text
    /// Vision tower only: the text weights are never read.
    case vision
    case both
}

/// An OpenCLIP model's text and/or vision tower, loaded strictly from an OpenCLIP state dict
/// (`open_clip_pytorch_model.bin` or a safetensors file with the same keys).
public struct CLIPModel: Sendable {
    public let config: CLIPConfig
    /// The text tower, unless only the vision tower was loaded.
    public let text: CLIPTextEncoder?
    /// The vision tower, unless only the text tower was loaded.
    public let vision: CLIPVisionEncoder?

    /// Loads `towers` from a checkpoint file (safetensors or `torch.save`), detected by content, the weight
    /// matrices at `precision`.
    public init(path: String, config: CLIPConfig, towers: CLIPTowers = .both, precision: Precision = .fp32) throws {
        let weights = try WeightLoader.open(path: path)
        weights.precision = precision
        try self.init(weights: weights, config: config, towers: towers)
    }

    /// Loads `towers` from `weights`; throws one error naming every missing, unexpected or misshapen key.
    /// `logit_scale` (training only) and, when a tower is left out, that tower's keys are the only keys skipped.
    public init(weights: WeightLoader, config: CLIPConfig, towers: CLIPTowers = .both) throws {
        let root = weights.scope("")
        self.config = config
        text = towers == .vision ? nil : CLIPTextEncoder(root, config: config)
        vision = towers == .text ? nil : CLIPVisionEncoder(root.scope("visual"), config: config)
        try weights.finish(skipping: { key in
            key == "logit_scale" || (towers == .text && Self.isVisionKey(key)) || (towers == .vision && Self.isTextKey(key))
        })
    }

    /// Whether `key` (OpenCLIP's names) is a weight of the vision tower, or of the text tower; `logit_scale` is neither.
    public static func isVisionKey(_ key: String) -> Bool { key.hasPrefix("visual.") }
    public static func isTextKey(_ key: String) -> Bool { !isVisionKey(key) && key != "logit_scale" }
}
