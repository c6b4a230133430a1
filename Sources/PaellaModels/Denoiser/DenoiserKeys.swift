// Where each module of DenoiseUNet sits in upstream's state dict (dome272/Paella modules.py, commit 3671515):
// the indices of its nn.Sequential levels. Loading, the backward pass and the training initialisation all name
// parameters through this one table instead of repeating the index arithmetic.

/// The upstream state-dict prefix of every module of a denoiser with `config`'s levels.
public struct DenoiserKeys: Sendable, Equatable {
    /// One down level: `down_blocks.i` holds, on every level but the first, the strided Conv2d at index 0 and
    /// then the ResBlocks; the first level holds only ResBlocks, from index 0.
    public struct DownLevel: Sendable, Equatable {
        public var downsample: String?
        public var blocks: [String]
    }

    /// One up level: `up_blocks.i` holds the ResBlocks from index 0, then, on every level but the last, the
    /// ConvTranspose2d after them.
    public struct UpLevel: Sendable, Equatable {
        public var blocks: [String]
        public var upsample: String?
    }

    /// The modules inside every ResBlock, relative to the block (`ResBlock` and its `ModulatedLayerNorm`).
    public enum Block {
        public static let depthwise = "depthwise.1", condMapper = "cond_mapper"
        public static let norm = "ln.ln", normGamma = "ln.gamma", normBeta = "ln.beta"
        public static let channelwise0 = "channelwise.0", channelwise2 = "channelwise.2", gamma = "gamma"
    }

    public static let embedding = "embedding"
    public static let classifier = "clf"
    /// The prefixes of the two paths; a block's last MLP weight is initialised by how many blocks its path has.
    public static let downPath = "down_blocks", upPath = "up_blocks"

    /// Shallowest level first, like `DenoiserConfig.downLevels`.
    public let down: [DownLevel]
    /// Deepest level first, like `DenoiserConfig.upLevels`.
    public let up: [UpLevel]

    public init(_ config: DenoiserConfig) {
        down = config.downLevels.enumerated().map { i, count in
            let level = "\(Self.downPath).\(i)", first = i > 0 ? 1 : 0
            return DownLevel(downsample: i > 0 ? "\(level).0" : nil, blocks: (0..<count).map { "\(level).\(first + $0)" })
        }
        up = config.upLevels.enumerated().map { i, count in
            let level = "\(Self.upPath).\(i)"
            return UpLevel(blocks: (0..<count).map { "\(level).\($0)" },
                           upsample: i < config.upLevels.count - 1 ? "\(level).\(count)" : nil)
        }
    }
}
