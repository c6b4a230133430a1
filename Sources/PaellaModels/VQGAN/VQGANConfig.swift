// The shape of a taming-transformers GumbelVQ (ddconfig + n_embed + embed_dim), with ruDALL-E's f8 preset.

import Foundation

/// Hyperparameters of a Gumbel-VQGAN: taming-transformers' Encoder/Decoder (`ddconfig`) plus the quantizer's
/// codebook. Coding keys are the upstream names, so a taming/ruDALL-E config (as JSON) decodes directly.
public struct VQGANConfig: Codable, Sendable, Equatable {
    /// Base channel count; level `i` has `ch * chMult[i]` channels.
    public var ch: Int
    /// Channel multiplier per resolution level; every level but the last halves the resolution (f = 2^(levels-1)).
    public var chMult: [Int]
    /// Residual blocks per encoder level (the decoder has one more per level).
    public var numResBlocks: Int
    /// Feature-map sides (counted from `resolution`) at which the levels get self-attention after each block.
    public var attnResolutions: [Int]
    /// Channels of the encoder output and decoder input.
    public var zChannels: Int
    /// Width of a codebook entry.
    public var embedDim: Int
    /// Codebook size (number of distinct tokens).
    public var nEmbed: Int
    /// The training resolution; only used, as upstream, to decide which levels have attention.
    public var resolution: Int
    /// Image channels in and out (RGB).
    public var inChannels: Int
    public var outCh: Int
    /// Not upstream (taming always has them; so does a config without these keys). Without the middle
    /// self-attention and with a normalisation other than GroupNorm, encoder and decoder are purely local: a token
    /// then depends only on the pixels around it, not on statistics of the whole image, so a flat background
    /// encodes to one code wherever it is, as in a plain VQ-VAE.
    public var midAttention: Bool
    public var normalization: VQGANNormalization

    enum CodingKeys: String, CodingKey {
        case ch, resolution
        case chMult = "ch_mult", numResBlocks = "num_res_blocks", attnResolutions = "attn_resolutions"
        case zChannels = "z_channels", embedDim = "embed_dim", nEmbed = "n_embed"
        case inChannels = "in_channels", outCh = "out_ch"
        case midAttention = "mid_attention", normalization
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(ch: try c.decode(Int.self, forKey: .ch), chMult: try c.decode([Int].self, forKey: .chMult),
                  numResBlocks: try c.decode(Int.self, forKey: .numResBlocks),
                  attnResolutions: try c.decode([Int].self, forKey: .attnResolutions),
                  zChannels: try c.decode(Int.self, forKey: .zChannels), embedDim: try c.decode(Int.self, forKey: .embedDim),
                  nEmbed: try c.decode(Int.self, forKey: .nEmbed), resolution: try c.decode(Int.self, forKey: .resolution),
                  inChannels: try c.decode(Int.self, forKey: .inChannels), outCh: try c.decode(Int.self, forKey: .outCh),
                  midAttention: try c.decodeIfPresent(Bool.self, forKey: .midAttention) ?? true,
                  normalization: try c.decodeIfPresent(VQGANNormalization.self, forKey: .normalization) ?? .group)
    }

    /// Writes the upstream keys, and the two extensions only where they differ from taming.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ch, forKey: .ch)
        try c.encode(chMult, forKey: .chMult)
        try c.encode(numResBlocks, forKey: .numResBlocks)
        try c.encode(attnResolutions, forKey: .attnResolutions)
        try c.encode(zChannels, forKey: .zChannels)
        try c.encode(embedDim, forKey: .embedDim)
        try c.encode(nEmbed, forKey: .nEmbed)
        try c.encode(resolution, forKey: .resolution)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outCh, forKey: .outCh)
        if !midAttention { try c.encode(false, forKey: .midAttention) }
        if normalization != .group { try c.encode(normalization, forKey: .normalization) }
    }

    public init(ch: Int, chMult: [Int], numResBlocks: Int, attnResolutions: [Int], zChannels: Int, embedDim: Int,
                nEmbed: Int, resolution: Int, inChannels: Int = 3, outCh: Int = 3, midAttention: Bool = true,
                normalization: VQGANNormalization = .group) {
        self.ch = ch
        self.chMult = chMult
        self.numResBlocks = numResBlocks
        self.attnResolutions = attnResolutions
        self.zChannels = zChannels
        self.embedDim = embedDim
        self.nEmbed = nEmbed
        self.resolution = resolution
        self.inChannels = inChannels
        self.outCh = outCh
        self.midAttention = midAttention
        self.normalization = normalization
    }

    /// ruDALL-E's f8 Gumbel-VQGAN used by Paella v1: `rudalle/vae/vqgan.gumbelf8-sber.config.yml` (PyPI rudalle
    /// 1.1.3), `model.params`: embed_dim 256, n_embed 8192, ddconfig ch 128, ch_mult [1, 1, 2, 4],
    /// num_res_blocks 2, attn_resolutions [32], z_channels 256, resolution 256, in/out 3 channels.
    public static let rudalleF8 = VQGANConfig(ch: 128, chMult: [1, 1, 2, 4], numResBlocks: 2, attnResolutions: [32],
                                              zChannels: 256, embedDim: 256, nEmbed: 8192, resolution: 256)

    /// Reads the layout of a taming/ruDALL-E `model.params` block as JSON:
    /// `{"ddconfig": {"ch": ..., "ch_mult": [...], ...}, "n_embed": ..., "embed_dim": ...}` (other keys ignored).
    public init(tamingParams data: Data) throws {
        struct Params: Decodable {
            struct DDConfig: Decodable {
                var ch: Int, ch_mult: [Int], num_res_blocks: Int, attn_resolutions: [Int], z_channels: Int
                var resolution: Int, in_channels: Int?, out_ch: Int?, double_z: Bool?
            }
            var ddconfig: DDConfig, n_embed: Int, embed_dim: Int
        }
        let p = try JSONDecoder().decode(Params.self, from: data)
        let d = p.ddconfig
        if d.double_z == true {
            throw VQGANError.unsupportedConfig("double_z is true (a KL autoencoder's encoder); a GumbelVQ has double_z false")
        }
        self.init(ch: d.ch, chMult: d.ch_mult, numResBlocks: d.num_res_blocks, attnResolutions: d.attn_resolutions,
                  zChannels: d.z_channels, embedDim: p.embed_dim, nEmbed: p.n_embed, resolution: d.resolution,
                  inChannels: d.in_channels ?? 3, outCh: d.out_ch ?? 3)
    }

    /// How much smaller the token grid is than the image on each side (8 for f8).
    public var downsamplingFactor: Int { 1 << max(0, chMult.count - 1) }

    /// Throws when the numbers cannot describe a working model.
    public func validate() throws {
        func fail(_ why: String) -> VQGANError { .unsupportedConfig(why) }
        guard ch > 0, !chMult.isEmpty, chMult.allSatisfy({ $0 > 0 }), numResBlocks >= 0 else {
            throw fail("ch \(ch), ch_mult \(chMult) and num_res_blocks \(numResBlocks) must be positive")
        }
        guard zChannels > 0, embedDim > 0, nEmbed > 0, inChannels > 0, outCh > 0, resolution > 0 else {
            throw fail("channel counts, n_embed and resolution must be positive")
        }
        // GumbelQuantize.proj reads the quant_conv output with `z_channels` inputs: upstream only runs when equal.
        guard zChannels == embedDim else {
            throw fail("z_channels \(zChannels) differs from embed_dim \(embedDim) (ruDALL-E's quantizer needs them equal)")
        }
        let widths = [ch] + chMult.map { ch * $0 }  // every GroupNorm is over one of these
        guard normalization != .group || widths.allSatisfy({ $0 % VQGANLayers.normGroups == 0 }) else {
            throw fail("channel counts \(widths) must be multiples of the \(VQGANLayers.normGroups) GroupNorm groups")
        }
    }
}

/// What taming's `Normalize` is in a VQGAN config.
public enum VQGANNormalization: String, Codable, Sendable, CaseIterable {
    /// GroupNorm with 32 groups, statistics over each group's channels of the whole image (taming, ruDALL-E).
    case group
    /// LayerNorm over each pixel's channels (weight and bias per channel, as GroupNorm's): local, like a ConvNeXt.
    case pixel
    /// The identity (the weights are absent); swish still follows where taming has it.
    case none
}

/// Errors a user of the VQGAN can hit: a bad configuration, image or token grid.
public enum VQGANError: Error, CustomStringConvertible, Equatable {
    case unsupportedConfig(String)
    /// Image sides that are not multiples of the downsampling factor (and no resize or crop was asked for).
    case imageSizeNotMultiple(width: Int, height: Int, factor: Int)
    case badImageShape([Int])
    case badTokenShape([Int])
    case tokenOutOfRange(token: Int, codebookSize: Int)

    public var description: String {
        switch self {
        case .unsupportedConfig(let why):
            return "This VQGAN configuration is not supported: \(why)."
        case let .imageSizeNotMultiple(w, h, f):
            return "The image is \(w)x\(h) but the VQGAN needs sides that are multiples of \(f); resize or crop it "
                + "(e.g. to \(max(f, w / f * f))x\(max(f, h / f * f))) or ask encode to do so."
        case .badImageShape(let shape):
            return "Expected images as a float [batch, height, width, 3] tensor with values in [0, 1], got shape \(shape)."
        case .badTokenShape(let shape):
            return "Expected VQGAN tokens as an integer [batch, height, width] tensor, got shape \(shape)."
        case let .tokenOutOfRange(t, n):
            return "Token \(t) is outside the VQGAN codebook of \(n) entries."
        }
    }
}
