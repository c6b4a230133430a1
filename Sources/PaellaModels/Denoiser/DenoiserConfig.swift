// The constructor arguments of DenoiseUNet in dome272/Paella modules.py (commit 3671515), with the same
// JSON names (so a fixture's or a checkpoint's config decodes directly).

/// The shape of a Paella v1 token denoiser.
public struct DenoiserConfig: Codable, Sendable, Equatable {
    /// Codebook size: the token vocabulary and the number of output logits per position.
    public var numLabels: Int
    /// Channels of the deepest level; the levels have `cHidden / 2^(levels-1-i)` channels.
    public var cHidden: Int
    /// Width of the conditioning vector (the CLIP embedding).
    public var cClip: Int
    /// Width of the noise-level (r) embedding.
    public var cR: Int
    /// ResBlocks per level on the way down, shallowest level first.
    public var downLevels: [Int]
    /// ResBlocks per level on the way up, deepest level first.
    public var upLevels: [Int]

    public init(numLabels: Int, cHidden: Int = 1280, cClip: Int = 1024, cR: Int = 64,
                downLevels: [Int] = [4, 8, 16], upLevels: [Int] = [16, 8, 4]) {
        self.numLabels = numLabels
        self.cHidden = cHidden
        self.cClip = cClip
        self.cR = cR
        self.downLevels = downLevels
        self.upLevels = upLevels
    }

    /// The released Paella v1 denoiser: `DenoiseUNet(num_labels=8192)` with the defaults of modules.py, trained
    /// on the 8192-token ruDALL-E VQGAN (paella.py; `model_600000.pt`, 573M parameters).
    public static let v1 = DenoiserConfig(numLabels: 8192, cHidden: 1280, cClip: 1024, cR: 64,
                                          downLevels: [4, 8, 16], upLevels: [16, 8, 4])

    /// Channels per level, shallowest first: `[cHidden / 4, cHidden / 2, cHidden]` for three levels.
    public var levelChannels: [Int] {
        (0..<downLevels.count).reversed().map { cHidden / (1 << $0) }
    }

    /// Width of the conditioning `s = concat(c, r_embedding)` that every block's `cond_mapper` reads.
    public var conditioningChannels: Int { cClip + cR }

    /// Token grids must have sides divisible by this (one halving per level below the first).
    public var sideMultiple: Int { 1 << max(0, downLevels.count - 1) }

    enum CodingKeys: String, CodingKey {
        case numLabels = "num_labels", cHidden = "c_hidden", cClip = "c_clip", cR = "c_r"
        case downLevels = "down_levels", upLevels = "up_levels"
    }
}
