// Port of taming-transformers 0.0.1 `taming/modules/diffusionmodules/model.py` (Encoder, Decoder, ResnetBlock,
// AttnBlock, Downsample, Upsample), channels-last; on purpose: no timestep embedding (temb_channels is 0 in
// Encoder/Decoder), no dropout (0 in every config), resample with conv only, and the encoder keeps only the last
// activation instead of the list `hs` of all of them.
import PaellaCore
import PaellaIO

/// Constants of taming's `Normalize` and the layers built on it.
enum VQGANLayers {
    /// `Normalize(c) = GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)`.
    static let normGroups = 32
    static let normEps: Float = 1e-6
}

/// taming's `Normalize(channels)` as the config has it: GroupNorm over the image or LayerNorm over each pixel's
/// channels (the same weight and bias keys), or nil for none.
struct VQNorm: Sendable {
    let weights: NormWeights
    let perPixel: Bool

    static func make(_ w: WeightScope, _ name: String, channels: Int, _ config: VQGANConfig) -> VQNorm? {
        if config.normalization == .none { return nil }
        return VQNorm(weights: NormWeights(w, name, features: channels, eps: VQGANLayers.normEps),
                      perPixel: config.normalization == .pixel)
    }
}

extension Compute {
    /// taming's `Normalize` (or what the config has instead) then, with `swish`, `nonlinearity` (x * sigmoid(x)),
    /// fused into the same pass for GroupNorm.
    func vqNormalize(_ x: Tensor, _ norm: VQNorm?, swish: Bool) -> Tensor {
        guard let norm else { return swish ? silu(x) : x }
        if norm.perPixel {
            let y = layerNorm(x, weight: norm.weights.weight, bias: norm.weights.bias, eps: norm.weights.eps)
            return swish ? silu(y) : y
        }
        return groupNorm(x, norm.weights, groups: VQGANLayers.normGroups, fusedSiLU: swish)
    }
}

/// taming `ResnetBlock`: two (GroupNorm, swish, 3x3 conv) steps plus the input, through a 1x1 conv
/// (`nin_shortcut`) when the channel count changes.
struct VQResnetBlock: Sendable {
    /// The upstream key prefix the weights were loaded under (gradients go back under it).
    let key: String
    let norm1: VQNorm?, conv1: Conv2dWeights
    let norm2: VQNorm?, conv2: Conv2dWeights
    let ninShortcut: Conv2dWeights?

    init(_ w: WeightScope, inChannels: Int, outChannels: Int, _ config: VQGANConfig) {
        key = w.prefix
        norm1 = VQNorm.make(w, "norm1", channels: inChannels, config)
        conv1 = Conv2dWeights(w, "conv1", inChannels: inChannels, outChannels: outChannels, kernel: 3)
        norm2 = VQNorm.make(w, "norm2", channels: outChannels, config)
        conv2 = Conv2dWeights(w, "conv2", inChannels: outChannels, outChannels: outChannels, kernel: 3)
        ninShortcut = inChannels == outChannels ? nil
            : Conv2dWeights(w, "nin_shortcut", inChannels: inChannels, outChannels: outChannels, kernel: 1)
    }

    func callAsFunction(_ x: Tensor, _ c: Compute) -> Tensor {
        var h = c.vqNormalize(x, norm1, swish: true)
        h = c.conv2d(h, conv1, padding: 1)  // [B, H, W, Cout]
        h = c.vqNormalize(h, norm2, swish: true)
        h = c.conv2d(h, conv2, padding: 1)
        c.addInPlace(&h, ninShortcut.map { c.conv2d(x, $0) } ?? x)  // x + h
        return h
    }
}

/// taming `AttnBlock`: single-head self-attention over all positions, q/k/v/proj_out as 1x1 convs, residual.
struct VQAttnBlock: Sendable {
    let key: String
    let norm: VQNorm?
    let q: Conv2dWeights, k: Conv2dWeights, v: Conv2dWeights, projOut: Conv2dWeights

    init(_ w: WeightScope, channels: Int, _ config: VQGANConfig) {
        key = w.prefix
        norm = VQNorm.make(w, "norm", channels: channels, config)
        q = Conv2dWeights(w, "q", inChannels: channels, outChannels: channels, kernel: 1)
        k = Conv2dWeights(w, "k", inChannels: channels, outChannels: channels, kernel: 1)
        v = Conv2dWeights(w, "v", inChannels: channels, outChannels: channels, kernel: 1)
        projOut = Conv2dWeights(w, "proj_out", inChannels: channels, outChannels: channels, kernel: 1)
    }

    func callAsFunction(_ x: Tensor, _ c: Compute) -> Tensor {
        let (b, height, width, ch) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let h = c.vqNormalize(x, norm, swish: false)
        let query = c.conv2d(h, q).reshaped([b, 1, height * width, ch])  // one head over the H*W positions
        let key = c.conv2d(h, k).reshaped([b, 1, height * width, ch])
        let value = c.conv2d(h, v).reshaped([b, 1, height * width, ch])
        var out = c.scaledDotProductAttention(q: query, k: key, v: value)  // softmax(q k^T / sqrt(C)) v
        out = c.conv2d(out.reshaped([b, height, width, ch]), projOut)  // [B, H, W, C]
        c.addInPlace(&out, x)
        return out
    }
}

/// taming `Downsample` (with conv): pad right and bottom by one zero, then a 3x3 conv with stride 2.
struct VQDownsample: Sendable {
    let key: String
    let conv: Conv2dWeights

    init(_ w: WeightScope, channels: Int) {
        key = w.prefix
        conv = Conv2dWeights(w, "conv", inChannels: channels, outChannels: channels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, _ c: Compute) -> Tensor {
        c.conv2d(x, conv, stride: 2, padding: Padding2d(top: 0, bottom: 1, left: 0, right: 1))  // [B, H/2, W/2, C]
    }
}

/// taming `Upsample` (with conv): nearest-neighbour x2, then a 3x3 conv.
struct VQUpsample: Sendable {
    let key: String
    let conv: Conv2dWeights

    init(_ w: WeightScope, channels: Int) {
        key = w.prefix
        conv = Conv2dWeights(w, "conv", inChannels: channels, outChannels: channels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, _ c: Compute) -> Tensor {
        let up = c.upsampleNearest2x(x)  // [B, 2H, 2W, C]
        return c.conv2d(up, conv, padding: 1)
    }
}

/// One resolution level of the encoder (`down[i]`) or decoder (`up[i]`): residual blocks, each followed by an
/// attention block at the attention resolutions, then the resampling step (all levels but one).
struct VQLevel<Resample: Sendable>: Sendable {
    let blocks: [VQResnetBlock]
    let attentions: [VQAttnBlock]
    let resample: Resample?
}

/// taming `Encoder` (double_z false): image [B, H, W, 3] in [-1, 1] -> [B, H/f, W/f, z_channels].
struct VQEncoder: Sendable {
    let key: String
    let convIn: Conv2dWeights
    let down: [VQLevel<VQDownsample>]
    let midBlock1: VQResnetBlock, midAttention: VQAttnBlock?, midBlock2: VQResnetBlock
    let normOut: VQNorm?, convOut: Conv2dWeights

    init(_ w: WeightScope, _ config: VQGANConfig) {
        key = w.prefix
        let ch = config.ch, levels = config.chMult.count
        let inChMult = [1] + config.chMult
        convIn = Conv2dWeights(w, "conv_in", inChannels: config.inChannels, outChannels: ch, kernel: 3)
        var currentResolution = config.resolution
        var blockIn = ch
        var down: [VQLevel<VQDownsample>] = []
        for level in 0..<levels {
            let scope = w.scope("down").scope(String(level))
            blockIn = ch * inChMult[level]
            let blockOut = ch * config.chMult[level]
            var blocks: [VQResnetBlock] = [], attentions: [VQAttnBlock] = []
            for i in 0..<config.numResBlocks {
                blocks.append(VQResnetBlock(scope.scope("block").scope(String(i)), inChannels: blockIn, outChannels: blockOut, config))
                blockIn = blockOut
                if config.attnResolutions.contains(currentResolution) {
                    attentions.append(VQAttnBlock(scope.scope("attn").scope(String(i)), channels: blockIn, config))
                }
            }
            var resample: VQDownsample? = nil
            if level != levels - 1 {
                resample = VQDownsample(scope.scope("downsample"), channels: blockIn)
                currentResolution /= 2
            }
            down.append(VQLevel(blocks: blocks, attentions: attentions, resample: resample))
        }
        self.down = down
        midBlock1 = VQResnetBlock(w.scope("mid.block_1"), inChannels: blockIn, outChannels: blockIn, config)
        midAttention = config.midAttention ? VQAttnBlock(w.scope("mid.attn_1"), channels: blockIn, config) : nil
        midBlock2 = VQResnetBlock(w.scope("mid.block_2"), inChannels: blockIn, outChannels: blockIn, config)
        normOut = VQNorm.make(w, "norm_out", channels: blockIn, config)
        convOut = Conv2dWeights(w, "conv_out", inChannels: blockIn, outChannels: config.zChannels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, _ c: Compute) -> Tensor {
        var h = c.conv2d(x, convIn, padding: 1)  // [B, H, W, ch]
        for level in down {
            for (i, block) in level.blocks.enumerated() {
                h = block(h, c)
                if !level.attentions.isEmpty { h = level.attentions[i](h, c) }
            }
            if let downsample = level.resample { h = downsample(h, c) }  // [B, H/2, W/2, C]
        }
        h = midBlock1(h, c)
        if let midAttention { h = midAttention(h, c) }
        h = midBlock2(h, c)
        h = c.vqNormalize(h, normOut, swish: true)
        return c.conv2d(h, convOut, padding: 1)  // [B, H/f, W/f, z_channels]
    }
}

/// taming `Decoder`: [B, h, w, z_channels] -> image [B, h*f, w*f, 3] (about [-1, 1], not clamped).
struct VQDecoder: Sendable {
    let key: String
    let convIn: Conv2dWeights
    let midBlock1: VQResnetBlock, midAttention: VQAttnBlock?, midBlock2: VQResnetBlock
    /// Indexed by level like upstream's `up` list (level 0 = full resolution); run from the last to the first.
    let up: [VQLevel<VQUpsample>]
    let normOut: VQNorm?, convOut: Conv2dWeights

    init(_ w: WeightScope, _ config: VQGANConfig) {
        key = w.prefix
        let ch = config.ch, levels = config.chMult.count
        var blockIn = ch * config.chMult[levels - 1]
        var currentResolution = config.resolution >> (levels - 1)
        convIn = Conv2dWeights(w, "conv_in", inChannels: config.zChannels, outChannels: blockIn, kernel: 3)
        midBlock1 = VQResnetBlock(w.scope("mid.block_1"), inChannels: blockIn, outChannels: blockIn, config)
        midAttention = config.midAttention ? VQAttnBlock(w.scope("mid.attn_1"), channels: blockIn, config) : nil
        midBlock2 = VQResnetBlock(w.scope("mid.block_2"), inChannels: blockIn, outChannels: blockIn, config)
        var up: [VQLevel<VQUpsample>] = []
        for level in (0..<levels).reversed() {
            let scope = w.scope("up").scope(String(level))
            let blockOut = ch * config.chMult[level]
            var blocks: [VQResnetBlock] = [], attentions: [VQAttnBlock] = []
            for i in 0..<(config.numResBlocks + 1) {
                blocks.append(VQResnetBlock(scope.scope("block").scope(String(i)), inChannels: blockIn, outChannels: blockOut, config))
                blockIn = blockOut
                if config.attnResolutions.contains(currentResolution) {
                    attentions.append(VQAttnBlock(scope.scope("attn").scope(String(i)), channels: blockIn, config))
                }
            }
            var resample: VQUpsample? = nil
            if level != 0 {
                resample = VQUpsample(scope.scope("upsample"), channels: blockIn)
                currentResolution *= 2
            }
            up.insert(VQLevel(blocks: blocks, attentions: attentions, resample: resample), at: 0)
        }
        self.up = up
        normOut = VQNorm.make(w, "norm_out", channels: blockIn, config)
        convOut = Conv2dWeights(w, "conv_out", inChannels: blockIn, outChannels: config.outCh, kernel: 3)
    }

    func callAsFunction(_ z: Tensor, _ c: Compute) -> Tensor {
        var h = c.conv2d(z, convIn, padding: 1)  // [B, h, w, C]
        h = midBlock1(h, c)
        if let midAttention { h = midAttention(h, c) }
        h = midBlock2(h, c)
        for level in up.reversed() {
            for (i, block) in level.blocks.enumerated() {
                h = block(h, c)
                if !level.attentions.isEmpty { h = level.attentions[i](h, c) }
            }
            if let upsample = level.resample { h = upsample(h, c) }  // [B, 2H, 2W, C]
        }
        h = c.vqNormalize(h, normOut, swish: true)
        return c.conv2d(h, convOut, padding: 1)  // [B, H, W, 3]
    }
}
