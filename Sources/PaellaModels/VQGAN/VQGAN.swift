// Port of ruDALL-E 1.1.3 `rudalle/vae/model.py` (GumbelVQ, GumbelQuantize, VQGanGumbelVAE's encode/decode);
// on purpose: channels-last, inference only (no gumbel-softmax relaxation, KL term or DWT decoder), any token
// grid shape (upstream decode assumes a square), and images checked for sides that are multiples of 8.
import PaellaCore
import PaellaIO

/// ruDALL-E's Gumbel-VQGAN (taming-transformers Encoder/Decoder, 1x1 `quant_conv`/`post_quant_conv`, a Gumbel
/// quantizer whose 1x1 `proj` gives one logit per codebook entry), as used by Paella v1 to turn images into token
/// grids and back. Images are channels-last `[B, H, W, 3]` float32 in [0, 1]; tokens are int32 `[B, H/f, W/f]`.
public final class VQGAN: Sendable {
    public let config: VQGANConfig
    public let compute: Compute
    let encoder: VQEncoder
    let decoder: VQDecoder
    let quantConv: Conv2dWeights
    let postQuantConv: Conv2dWeights
    /// `quantize.proj`: 1x1 conv from z_channels to n_embed logits.
    let quantizeProj: Conv2dWeights
    /// `quantize.embed.weight`: the codebook, float32 `[n_embed, embed_dim]`.
    public let codebook: Tensor

    /// How `encode` treats an image whose sides are not multiples of the downsampling factor.
    public enum Fit: Sendable, Equatable {
        /// Throw `VQGANError.imageSizeNotMultiple` (the default: never change the caller's image silently).
        case exact
        /// Resize (antialiased bicubic) each side to the nearest multiple of the factor (at least one factor).
        case resize
        /// Keep the centred region whose sides are the largest multiples of the factor that fit.
        case centerCrop
    }

    /// Builds the model from `weights` (upstream key names and layouts) and checks that they fit exactly: every
    /// key used, none missing or misshapen, except the training-only `loss.*` entries of a Lightning checkpoint.
    public init(config: VQGANConfig = .rudalleF8, weights: WeightLoader, compute: Compute) throws {
        try config.validate()
        self.config = config
        self.compute = compute
        let w = weights.scope("")
        encoder = VQEncoder(w.scope("encoder"), config)
        decoder = VQDecoder(w.scope("decoder"), config)
        quantConv = Conv2dWeights(w, "quant_conv", inChannels: config.zChannels, outChannels: config.embedDim, kernel: 1)
        postQuantConv = Conv2dWeights(w, "post_quant_conv", inChannels: config.embedDim, outChannels: config.zChannels, kernel: 1)
        quantizeProj = Conv2dWeights(w, "quantize.proj", inChannels: config.zChannels, outChannels: config.nEmbed, kernel: 1)
        codebook = w.float32("quantize.embed.weight", shape: [config.nEmbed, config.embedDim])
        try weights.finish(skipping: VQGAN.isTrainingOnlyKey)
    }

    /// The same weights computing on `compute` (another thread count or GEMM backend), without loading them again.
    public func using(_ compute: Compute) -> VQGAN { VQGAN(sharing: self, compute: compute) }

    private init(sharing other: VQGAN, compute: Compute) {
        config = other.config
        self.compute = compute
        encoder = other.encoder
        decoder = other.decoder
        quantConv = other.quantConv
        postQuantConv = other.postQuantConv
        quantizeProj = other.quantizeProj
        codebook = other.codebook
    }

    /// Loads a safetensors file or a `torch.save` checkpoint (the released Lightning `.ckpt`: its `state_dict`).
    /// Convolution kernels load at `precision`.
    public convenience init(contentsOf path: String, config: VQGANConfig = .rudalleF8, compute: Compute,
                            precision: Precision = .fp32) throws {
        let weights = try WeightLoader.open(path: path)
        weights.precision = precision
        try self.init(config: config, weights: weights, compute: compute)
    }

    /// Keys the released Lightning checkpoint carries for training only (the discriminator and perceptual loss,
    /// `loss.*`); loading skips them by this rule and nothing else.
    public static func isTrainingOnlyKey(_ key: String) -> Bool { key.hasPrefix("loss.") }

    // MARK: Encode

    /// The quantizer's logits for images `[B, H, W, 3]` in [0, 1] whose sides are multiples of the factor:
    /// `quantize.proj(quant_conv(encoder(2x - 1)))`, `[B, H/f, W/f, n_embed]`.
    public func quantizerLogits(_ images: Tensor) throws -> Tensor {
        try checkImages(images)
        var x = affine(images, scale: 2, shift: -1)  // [0, 1] -> [-1, 1]
        x = encoder(x, compute)  // [B, h, w, z_channels]
        x = compute.conv2d(x, quantConv)  // [B, h, w, embed_dim]
        return compute.conv2d(x, quantizeProj)  // [B, h, w, n_embed]
    }

    /// Tokens for images `[B, H, W, 3]` in [0, 1]: int32 `[B, H/f, W/f]`.
    ///
    /// By default each position takes the codebook entry with the largest logit (upstream
    /// `disable_gumbel_softmax=True`, deterministic). With `gumbelUniforms`, upstream's default encoding: the
    /// argmax of logits plus Gumbel noise `-log(-log(u))`, where `gumbelUniforms(shape)` returns float32 draws
    /// in [0, 1) of the logits' shape `[B, h, w, n_embed]` (pass the sampler's random source here).
    public func encode(_ images: Tensor, fit: Fit = .exact,
                       gumbelUniforms: ((_ shape: [Int]) -> Tensor)? = nil) throws -> Tensor {
        let logits = try quantizerLogits(try fitted(images, fit))
        guard let gumbelUniforms else { return compute.argmax(logits) }  // [B, h, w]
        let uniforms = gumbelUniforms(logits.shape)
        precondition(uniforms.shape == logits.shape && uniforms.dtype == .float32,
                     "VQGAN.encode: gumbelUniforms returned \(uniforms) for logits of shape \(logits.shape)")
        // gumbel_softmax(hard=True) picks argmax((logits + g) / tau) = argmax(logits + g) for any tau > 0.
        return compute.gumbelArgmax(logits: logits, uniforms: uniforms, temperature: 1)
    }

    /// Tokens for decoded images of one size (PNG/JPEG: alpha dropped, gray replicated), int32 `[B, H/f, W/f]`.
    public func encode(_ images: [PixelImage], fit: Fit = .exact,
                       gumbelUniforms: ((_ shape: [Int]) -> Tensor)? = nil) throws -> Tensor {
        let prepared = try images.map { image -> PixelImage in
            let rgb = image.rgb()
            let (w, h) = try targetSize(width: rgb.width, height: rgb.height, fit)
            if w == rgb.width && h == rgb.height { return rgb }
            return fit == .resize ? rgb.resized(width: w, height: h) : rgb.centerCropped(width: w, height: h)
        }
        return try encode(try PixelImage.batchTensor(prepared), fit: .exact, gumbelUniforms: gumbelUniforms)  // .exact: sizes checked there
    }

    // MARK: Decode

    /// Images for tokens `[B, h, w]` (any integer dtype): `(clamp(decoder(post_quant_conv(embed[tokens])), -1, 1)
    /// + 1) / 2`, float32 `[B, h*f, w*f, 3]` in [0, 1].
    public func decode(_ tokens: Tensor) throws -> Tensor {
        guard tokens.rank == 3, [.int32, .int64, .int16, .uint8].contains(tokens.dtype) else {
            throw VQGANError.badTokenShape(tokens.shape)
        }
        if let bad = tokens.integers().first(where: { $0 < 0 || $0 >= config.nEmbed }) {
            throw VQGANError.tokenOutOfRange(token: bad, codebookSize: config.nEmbed)
        }
        var z = compute.embedding(tokens, table: codebook)  // [B, h, w, embed_dim]
        z = compute.conv2d(z, postQuantConv)  // [B, h, w, z_channels]
        let x = decoder(z, compute)  // [B, H, W, 3], about [-1, 1]
        return toUnitRange(x)
    }

    /// `decode` as 8-bit RGB images.
    public func decodeImages(_ tokens: Tensor) throws -> [PixelImage] {
        PixelImage.images(from: try decode(tokens))
    }

    // MARK: Helpers

    private func checkImages(_ images: Tensor) throws {
        guard images.rank == 4, images.shape[3] == config.inChannels, images.dtype == .float32,
              images.shape[0] > 0, images.shape[1] > 0, images.shape[2] > 0 else {
            throw VQGANError.badImageShape(images.shape)
        }
        let f = config.downsamplingFactor
        if images.shape[1] % f != 0 || images.shape[2] % f != 0 {
            throw VQGANError.imageSizeNotMultiple(width: images.shape[2], height: images.shape[1], factor: f)
        }
    }

    /// The size `fit` gives a `width` x `height` image.
    private func targetSize(width: Int, height: Int, _ fit: Fit) throws -> (width: Int, height: Int) {
        let f = config.downsamplingFactor
        switch fit {
        case .exact:
            return (width, height)
        case .resize:
            func nearest(_ side: Int) -> Int { max(f, (side + f / 2) / f * f) }
            return (nearest(width), nearest(height))
        case .centerCrop:
            guard width >= f && height >= f else {
                throw VQGANError.imageSizeNotMultiple(width: width, height: height, factor: f)
            }
            return (width / f * f, height / f * f)
        }
    }

    private func fitted(_ images: Tensor, _ fit: Fit) throws -> Tensor {
        guard images.rank == 4, images.dtype == .float32 else { throw VQGANError.badImageShape(images.shape) }
        let (b, h, w, c) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let target = try targetSize(width: w, height: h, fit)
        if target.width == w && target.height == h { return images }
        if fit == .resize { return resizeImages(images, height: target.height, width: target.width) }
        // Centre crop: copy the kept rows of each image.
        let top = (h - target.height) / 2, left = (w - target.width) / 2
        var out = Tensor(uninitialized: [b, target.height, target.width, c])
        images.withFloats { src in out.withMutableFloats { dst in
            for n in 0..<b {
                for y in 0..<target.height {
                    let s = ((n * h + top + y) * w + left) * c, d = (n * target.height + y) * target.width * c
                    for i in 0..<(target.width * c) { dst[d + i] = src[s + i] }
                }
            }
        }}
        return out
    }

    /// `x * scale + shift`, elementwise.
    private func affine(_ x: Tensor, scale: Float, shift: Float) -> Tensor {
        var y = Tensor(uninitialized: x.shape)
        x.withFloats { xs in y.withMutableFloats { ys in
            let s = xs.baseAddress!, d = ys.baseAddress!
            compute.pool.parallelChunks(xs.count, minChunk: 1 << 14) { r in for i in r { d[i] = s[i] * scale + shift } }
        }}
        return y
    }

    /// `(clamp(x, -1, 1) + 1) / 2`, in place.
    private func toUnitRange(_ x: Tensor) -> Tensor {
        var y = x
        y.withMutableFloats { ys in
            let d = ys.baseAddress!
            compute.pool.parallelChunks(ys.count, minChunk: 1 << 14) { r in
                for i in r { d[i] = (min(max(d[i], -1), 1) + 1) * 0.5 }
            }
        }
        return y
    }
}
