// Port of DenoiseUNet, ResBlock and ModulatedLayerNorm from dome272/Paella modules.py (commit 3671515).
// Changed on purpose: activations are channels-last; a global conditioning stays [B, 1, 1, C] and modulates by
// broadcasting instead of being expanded to every pixel; a spatial conditioning is resized once per level
// instead of once per block (the same values); the logits come out channels-last [B, H, W, num_labels].
import Foundation
import PaellaCore
import PaellaIO

/// The Paella v1 token denoiser: given noised tokens, a noise level `r` and a conditioning (a CLIP embedding,
/// or a map of them for multi-conditioning), the logits of the clean token at every position.
public struct Denoiser: Sendable {
    public let config: DenoiserConfig
    public private(set) var compute: Compute
    let embedding: Tensor                       // [num_labels, c0], as stored
    let down: [(downsample: Conv2dWeights?, blocks: [ResBlock])]
    let up: [(blocks: [ResBlock], upsample: ConvTranspose2dWeights?)]
    let clf: Conv2dWeights                      // 1x1 conv to the logits
    let keys: DenoiserKeys                      // where each module sits in the upstream state dict

    /// Loads the upstream state dict (its key names) from `weights` and reports every missing, unexpected or
    /// misshapen key in one `WeightLoadingError`.
    public init(config: DenoiserConfig, weights: WeightLoader, compute: Compute) throws {
        self.config = config
        self.compute = compute
        let c = config.levelChannels, cCond = config.conditioningChannels
        let w = weights.scope(""), keys = DenoiserKeys(config)
        self.keys = keys
        embedding = w.scope(DenoiserKeys.embedding).tensor("weight", shape: [config.numLabels, c[0]])
        down = keys.down.enumerated().map { i, level in
            let downsample = level.downsample.map { Conv2dWeights(w, $0, inChannels: c[i - 1], outChannels: c[i], kernel: 4) }
            let blocks = level.blocks.map { ResBlock(w.scope($0), channels: c[i], conditioning: cCond, skip: 0) }
            return (downsample, blocks)
        }
        up = keys.up.enumerated().map { i, level in
            let ci = c[c.count - 1 - i]
            let blocks = level.blocks.enumerated().map { j, key in
                ResBlock(w.scope(key), channels: ci, conditioning: cCond, skip: i > 0 && j == 0 ? ci : 0)
            }
            let upsample = level.upsample.map {
                ConvTranspose2dWeights(w, $0, inChannels: ci, outChannels: c[c.count - 2 - i], kernel: 4)
            }
            return (blocks, upsample)
        }
        clf = Conv2dWeights(w, DenoiserKeys.classifier, inChannels: c[0], outChannels: config.numLabels, kernel: 1)
        try weights.finish()
    }

    /// The same weights computing on `compute` (another thread count or GEMM backend), without loading them again.
    public func using(_ compute: Compute) -> Denoiser {
        var copy = self
        copy.compute = compute
        return copy
    }

    /// Loads a safetensors file or the released `torch.save` checkpoint (`model_600000.pt`), its weight matrices
    /// at `precision`.
    public init(config: DenoiserConfig, path: String, compute: Compute, precision: Precision = .fp32) throws {
        let weights = try WeightLoader.open(path: path)
        weights.precision = precision
        try self.init(config: config, weights: weights, compute: compute)
    }

    /// The checkpoint keys and shapes this configuration loads, in loading order (built without memory:
    /// `WeightLoader(synthetic: .shapesOnly)` hands out read-only zeros whose layout conversions are free).
    public static func parameterShapes(_ config: DenoiserConfig) throws -> [(name: String, shape: [Int])] {
        let loader = WeightLoader(synthetic: .shapesOnly, origin: "parameter shapes")
        _ = try Denoiser(config: config, weights: loader, compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()))
        return loader.requested
    }

    /// Logits `[B, H, W, num_labels]` for tokens `x` `[B, H, W]` (int32 or int64; H and W multiples of
    /// `config.sideMultiple`, at least twice it), a conditioning `c` `[B, c_clip]` (global) or `[B, H', W', c_clip]` (spatial,
    /// channels-last; resized bilinearly to each level) and noise levels `r` (one per batch item, in [0, 1]).
    public func callAsFunction(_ x: Tensor, conditioning c: Tensor, r: [Float]) -> Tensor {
        let batch = x.shape.first ?? 0
        let m = config.sideMultiple  // the deepest level's reflection padding needs at least 2 pixels a side
        precondition(x.rank == 3 && x.shape[1] % m == 0 && x.shape[2] % m == 0 && min(x.shape[1], x.shape[2]) >= 2 * m,
                     "Denoiser: tokens must be [B, H, W] with H and W multiples of \(m), at least \(2 * m), got \(x.shape)")
        precondition(r.count == batch && c.shape.first == batch && c.shape.last == config.cClip && (c.rank == 2 || c.rank == 4),
                     "Denoiser: conditioning \(c.shape) and \(r.count) noise levels do not fit \(batch) token grids of width \(config.cClip)")
        let rEmbed = rEmbedding(r)                                            // [B, c_r]
        var h = compute.embedding(x, table: embedding)                        // [B, H, W, c0]
        let s = conditioning(c, rEmbed)                                       // [B, 1, 1, c_clip + c_r] or [B, H', W', ...]

        var levelOutputs: [Tensor] = []
        for level in down {
            if let conv = level.downsample { h = compute.conv2d(h, conv, stride: 2, padding: 1) }  // [B, H/2, W/2, C]
            let sLevel = resized(s, like: h)
            for block in level.blocks { h = block(h, sLevel, skip: nil, compute) }
            levelOutputs.insert(h, at: 0)
        }
        h = levelOutputs[0]
        for (i, level) in up.enumerated() {
            let sLevel = resized(s, like: h)
            for (j, block) in level.blocks.enumerated() {
                h = block(h, sLevel, skip: i > 0 && j == 0 ? levelOutputs[i] : nil, compute)
            }
            if let conv = level.upsample { h = compute.convTranspose2d(h, conv, stride: 2, padding: 1) }  // [B, 2H, 2W, C/2]
        }
        return compute.conv2d(h, clf)                                         // [B, H, W, num_labels]
    }

    /// The noise-level embedding `[B, c_r]` (upstream `gen_r_embedding`): `r' = cos(r pi/2) * 10000`,
    /// `f_k = exp(-k ln(10000) / (c_r/2 - 1))`, `[sin(r' f), cos(r' f)]`, zero-padded when `c_r` is odd.
    public func rEmbedding(_ r: [Float]) -> Tensor {
        let maxPositions: Float = 10000
        let half = config.cR / 2
        let step = Float(log(Double(maxPositions)) / Double(half - 1))
        let frequencies = (0..<half).map { Foundation.exp(Float($0) * -step) }
        var values = [Float](repeating: 0, count: r.count * config.cR)
        for (b, rb) in r.enumerated() {
            let scaled = Foundation.cos(rb * Float.pi / 2) * maxPositions  // gamma(r) * max_positions
            for k in 0..<half {
                values[b * config.cR + k] = Foundation.sin(scaled * frequencies[k])
                values[b * config.cR + half + k] = Foundation.cos(scaled * frequencies[k])
            }
        }
        return Tensor(values, shape: [r.count, config.cR])
    }

    /// `s = concat(c, r_embedding)`: `[B, 1, 1, c_clip + c_r]` for a global `c`, or `[B, H, W, c_clip + c_r]`
    /// with the r embedding repeated at every position of a spatial `c`.
    private func conditioning(_ c: Tensor, _ rEmbed: Tensor) -> Tensor {
        let (batch, cr) = (rEmbed.shape[0], rEmbed.shape[1])
        let (h, w) = c.rank == 4 ? (c.shape[1], c.shape[2]) : (1, 1)
        let cFlat = c.dtype == .float32 ? c.reshaped([batch, h * w, config.cClip]) : c.toFloat32().reshaped([batch, h * w, config.cClip])
        let rMap = compute.add(Tensor(zeros: [batch, h * w, cr]), rEmbed.reshaped([batch, 1, cr]))  // [B, H*W, c_r]
        return compute.concat([cFlat, rMap], axis: 2).reshaped([batch, h, w, config.cClip + cr])
    }

    /// A spatial conditioning resized (bilinear, align_corners false) to `x`'s grid; a global one as it is.
    private func resized(_ s: Tensor, like x: Tensor) -> Tensor {
        let (h, w) = (s.shape[1], s.shape[2])
        if (h == 1 && w == 1) || (h == x.shape[1] && w == x.shape[2]) { return s }
        return compute.resizeBilinear(s, height: x.shape[1], width: x.shape[2])
    }
}

/// Upstream `ResBlock` with its `ModulatedLayerNorm`: depthwise 3x3 conv (reflection padding), layer norm
/// modulated by the mapped conditioning, optional skip, per-pixel MLP, layer scale, residual.
struct ResBlock: Sendable {
    let depthwise: Conv2dWeights
    let condMapper: LinearWeights         // Linear weights stay [out, in]: a float32 checkpoint is used in place
    let ln: NormWeights
    let lnGamma: Float, lnBeta: Float     // ModulatedLayerNorm's scalar gamma and beta
    let channelwise0: LinearWeights
    let channelwise2: LinearWeights
    let gamma: Tensor                     // layer scale [C]

    init(_ w: WeightScope, channels c: Int, conditioning cCond: Int, skip cSkip: Int) {
        typealias Key = DenoiserKeys.Block
        depthwise = Conv2dWeights(w, Key.depthwise, inChannels: c, outChannels: c, kernel: 3, groups: c)
        ln = NormWeights(w, Key.norm, features: c, eps: 1e-6)
        lnGamma = w.float32(Key.normGamma, shape: [1, 1, 1]).floats[0]
        lnBeta = w.float32(Key.normBeta, shape: [1, 1, 1]).floats[0]
        channelwise0 = LinearWeights(w, Key.channelwise0, inFeatures: c + cSkip, outFeatures: 4 * c)
        channelwise2 = LinearWeights(w, Key.channelwise2, inFeatures: 4 * c, outFeatures: c)
        gamma = w.float32(Key.gamma, shape: [c])
        condMapper = LinearWeights(w, Key.condMapper, inFeatures: cCond, outFeatures: c)
    }

    func callAsFunction(_ x: Tensor, _ s: Tensor, skip: Tensor?, _ compute: Compute) -> Tensor {
        var h = compute.conv2d(x, depthwise, padding: 1, paddingMode: .reflect)  // [B, H, W, C]
        let w = compute.linear(s, condMapper)                                    // [B, 1, 1, C] or [B, H, W, C]
        h = compute.layerNorm(h, ln)
        compute.affineInPlace(&h, scale: compute.scale(w, by: lnGamma), shift: compute.scale(w, by: lnBeta))  // gamma w ln(x) + beta w
        if let skip { h = compute.concat([h, skip], axis: 3) }                   // [B, H, W, 2C]
        h = compute.linear(h, channelwise0)                                      // [B, H, W, 4C]
        h = compute.gelu(h)
        h = compute.linear(h, channelwise2)                                      // [B, H, W, C]
        compute.scaleChannelsAndAdd(&h, channelScale: gamma, residual: x)        // x + gamma * h
        return h
    }
}
