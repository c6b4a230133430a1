// open_clip/transformer.py `VisionTransformer` (class-token pooling, no attention pooling or patch dropout);
// changed on purpose: channels-last images [B, H, W, 3], ln_post applied to the class token only (the same values).
import PaellaCore
import PaellaIO

/// OpenCLIP's vision tower: normalized images `[B, S, S, 3]` -> image embeddings `[B, embedDim]`.
public struct CLIPVisionEncoder: Sendable {
    public let config: CLIPConfig
    let patchEmbedding: Conv2dWeights    // conv1: patch x patch, stride patch, no bias
    let classEmbedding: Tensor           // [W]
    let positionalEmbedding: Tensor      // [1 + grid^2, W]
    let lnPre: NormWeights
    let transformer: CLIPTransformer
    let lnPost: NormWeights
    let projection: LinearWeights        // [W, embed], applied as x @ proj

    /// Loads the vision tower from an OpenCLIP state dict's `visual` module (`w` = `loader.scope("visual")`).
    public init(_ w: WeightScope, config: CLIPConfig) {
        let c = config.vision
        self.config = config
        patchEmbedding = Conv2dWeights(w, "conv1", inChannels: 3, outChannels: c.width, kernel: c.patchSize, bias: false)
        classEmbedding = w.float32("class_embedding", shape: [c.width])
        positionalEmbedding = w.float32("positional_embedding", shape: [c.grid * c.grid + 1, c.width])
        lnPre = NormWeights(w, "ln_pre", features: c.width, eps: 1e-5)
        transformer = CLIPTransformer(w.scope("transformer"), width: c.width, layers: c.layers, heads: c.heads,
                                      mlpWidth: c.mlpWidth)
        lnPost = NormWeights(w, "ln_post", features: c.width, eps: 1e-5)
        projection = LinearWeights(weight: w.float32("proj", shape: [c.width, config.embedDim]), layout: .inOut, bias: nil)
    }

    /// Embeddings of `images`, float32 `[B, imageSize, imageSize, 3]` normalized with CLIP's mean and std
    /// (`CLIPImagePreprocessing`). Returns `[B, embedDim]`.
    public func callAsFunction(_ images: Tensor, compute: Compute) -> Tensor {
        let c = config.vision
        precondition(images.rank == 4 && images.shape[1] == c.imageSize && images.shape[2] == c.imageSize && images.shape[3] == 3,
                     "CLIPVisionEncoder: images \(images.shape) are not [B, \(c.imageSize), \(c.imageSize), 3]")
        let batch = images.shape[0]
        var x = compute.conv2d(images, patchEmbedding, stride: c.patchSize)          // [B, grid, grid, W]
        x = x.reshaped([batch, c.grid * c.grid, c.width])                            // [B, grid^2, W]
        let classTokens = compute.add(Tensor(zeros: [batch, 1, c.width]), classEmbedding)
        x = compute.concat([classTokens, x], axis: 1)                                // [B, 1 + grid^2, W]
        x = compute.add(x, positionalEmbedding)
        x = compute.layerNorm(x, lnPre)
        x = transformer(x, causal: false, compute: compute)
        x = pooledRows(x, positions: Array(repeating: 0, count: batch))              // [B, W] class token
        x = compute.layerNorm(x, lnPost)
        return compute.linear(x, projection)                                         // [B, embed]
    }
}

/// CLIP's image preprocessing (open_clip/transform.py `image_transform` for evaluation, OpenAI mean and std).
public enum CLIPImagePreprocessing {
    /// OPENAI_DATASET_MEAN and OPENAI_DATASET_STD (open_clip/constants.py).
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// Images resized (bicubic, shorter side to `size`), center-cropped to `size` x `size` and normalized:
    /// `[B, size, size, 3]` float32, ready for `CLIPVisionEncoder`.
    public static func tensor(_ images: [PixelImage], size: Int = 224) throws -> Tensor {
        normalized(try PixelImage.batchTensor(images.map { $0.rgb().clipPreprocessed(size: size) }))
    }

    /// `(x - mean) / std` per channel of `[..., 3]` values in [0, 1] (torchvision `Normalize`).
    public static func normalized(_ x: Tensor) -> Tensor {
        precondition(x.dtype == .float32 && x.rank >= 1 && x.shape[x.rank - 1] == 3,
                     "CLIPImagePreprocessing.normalized: expected float32 [..., 3], got \(x)")
        var out = x
        out.withMutableFloats { v in
            for i in v.indices { v[i] = (v[i] - mean[i % 3]) / std[i % 3] }
        }
        return out
    }
}
