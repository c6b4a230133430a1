// open_clip/transformer.py `Transformer` / `ResidualAttentionBlock` with torch.nn.MultiheadAttention; changed on
// purpose: batch-first activations [B, L, W], linear weights kept in PyTorch's [out, in] layout (no copy at load).
import PaellaCore
import PaellaIO

/// One pre-LayerNorm transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))` with a GELU MLP.
public struct CLIPResidualBlock: Sendable {
    /// The key prefix the weights were loaded under (`transformer.resblocks.3`); gradients go back under it.
    let key: String
    let ln1: NormWeights
    let inProjection: LinearWeights   // q, k and v stacked: [3 * width, width]
    let outProjection: LinearWeights
    let ln2: NormWeights
    let fc: LinearWeights
    let projection: LinearWeights
    let heads: Int

    public init(_ w: WeightScope, width: Int, heads: Int, mlpWidth: Int) {
        precondition(heads > 0 && width % heads == 0, "CLIPResidualBlock: width \(width) is not divisible by \(heads) heads")
        key = w.prefix
        self.heads = heads
        ln1 = NormWeights(w, "ln_1", features: width, eps: 1e-5)
        inProjection = LinearWeights(weight: w.tensor("attn.in_proj_weight", shape: [3 * width, width]), layout: .outIn,
                                     bias: w.float32("attn.in_proj_bias", shape: [3 * width]), precision: w.loader.precision)
        outProjection = LinearWeights(w, "attn.out_proj", inFeatures: width, outFeatures: width)
        ln2 = NormWeights(w, "ln_2", features: width, eps: 1e-5)
        fc = LinearWeights(w, "mlp.c_fc", inFeatures: width, outFeatures: mlpWidth)
        projection = LinearWeights(w, "mlp.c_proj", inFeatures: mlpWidth, outFeatures: width)
    }

    /// `x` `[B, L, W]` -> `[B, L, W]`; `causal` masks later positions (the text tower).
    public func callAsFunction(_ x: Tensor, causal: Bool, compute: Compute) -> Tensor {
        var x = x
        x = compute.add(x, attention(compute.layerNorm(x, ln1), causal: causal, compute: compute))
        var h = compute.linear(compute.layerNorm(x, ln2), fc)  // [B, L, mlpWidth]
        h = compute.gelu(h)
        x = compute.add(x, compute.linear(h, projection))
        return x
    }

    /// nn.MultiheadAttention(x, x, x) without dropout: `[B, L, W]` -> `[B, L, W]`.
    func attention(_ x: Tensor, causal: Bool, compute: Compute) -> Tensor {
        let (b, l, width) = (x.shape[0], x.shape[1], x.shape[2])
        let d = width / heads
        let qkv = compute.linear(x, inProjection)                                     // [B, L, 3W]
            .reshaped([b, l, 3, heads, d]).permuted([2, 0, 3, 1, 4])                 // [3, B, heads, L, D]
        let q = qkv.slice(0 ..< 1).reshaped([b, heads, l, d])
        let k = qkv.slice(1 ..< 2).reshaped([b, heads, l, d])
        let v = qkv.slice(2 ..< 3).reshaped([b, heads, l, d])
        let y = compute.scaledDotProductAttention(q: q, k: k, v: v, causal: causal)   // [B, heads, L, D]
            .permuted([0, 2, 1, 3]).reshaped([b, l, width])                          // [B, L, W]
        return compute.linear(y, outProjection)
    }
}

/// A stack of `CLIPResidualBlock`s stored as `resblocks.N`.
public struct CLIPTransformer: Sendable {
    public let blocks: [CLIPResidualBlock]

    public init(_ w: WeightScope, width: Int, layers: Int, heads: Int, mlpWidth: Int) {
        blocks = (0 ..< layers).map { CLIPResidualBlock(w.scope("resblocks.\($0)"), width: width, heads: heads, mlpWidth: mlpWidth) }
    }

    public func callAsFunction(_ x: Tensor, causal: Bool, compute: Compute) -> Tensor {
        blocks.reduce(x) { x, block in block(x, causal: causal, compute: compute) }
    }
}
