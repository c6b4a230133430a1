// open_clip/model.py `CLIP.encode_text` (text tower, argmax pooling, no normalization); changed on purpose: the
// positions after the last end-of-text token are not computed (the causal mask makes them irrelevant to the result).
import PaellaCore
import PaellaIO

/// OpenCLIP's text tower: token ids `[B, context]` -> text embeddings `[B, embedDim]`.
public struct CLIPTextEncoder: Sendable {
    public let config: CLIPConfig
    let tokenEmbedding: Tensor          // [vocab, W]
    let positionalEmbedding: Tensor     // [context, W]
    let transformer: CLIPTransformer
    let lnFinal: NormWeights
    let textProjection: LinearWeights   // [W, embed], applied as x @ text_projection

    /// Loads the text tower from the top level of an OpenCLIP state dict (`w` = `loader.scope("")`).
    public init(_ w: WeightScope, config: CLIPConfig) {
        let c = config.text
        self.config = config
        tokenEmbedding = w.tensor("token_embedding.weight", shape: [c.vocabSize, c.width])
        positionalEmbedding = w.float32("positional_embedding", shape: [c.contextLength, c.width])
        transformer = CLIPTransformer(w.scope("transformer"), width: c.width, layers: c.layers, heads: c.heads,
                                      mlpWidth: c.mlpWidth)
        lnFinal = NormWeights(w, "ln_final", features: c.width, eps: 1e-5)
        textProjection = LinearWeights(weight: w.float32("text_projection", shape: [c.width, config.embedDim]), layout: .inOut, bias: nil)
    }

    /// Embeddings of `tokens` (int32 or int64 `[B, L]`, L <= context length, as `CLIPTokenizer.contextTokens`
    /// gives), taken at each row's end-of-text token (its largest id, first occurrence). Returns `[B, embedDim]`.
    /// `trimmed`: skip the positions after the last end-of-text token (same result; `false` runs all of them,
    /// as upstream does, for benchmarks).
    public func callAsFunction(_ tokens: Tensor, compute: Compute, trimmed: Bool = true) -> Tensor {
        precondition(tokens.rank == 2 && tokens.shape[1] <= config.text.contextLength,
                     "CLIPTextEncoder: tokens \(tokens.shape) are not [B, L <= \(config.text.contextLength)]")
        let (batch, length) = (tokens.shape[0], tokens.shape[1])
        let ids = tokens.integers()
        let pooled = (0 ..< batch).map { b in
            let row = ids[b * length ..< (b + 1) * length]
            return row.firstIndex(of: row.max() ?? 0).map { $0 - b * length } ?? 0
        }
        // Position i only sees positions <= i, so nothing after the last pooled position changes the result.
        let used = trimmed ? (pooled.max() ?? 0) + 1 : length
        let kept = (0 ..< batch).flatMap { b in ids[b * length ..< b * length + used].map { Int32($0) } }

        var x = compute.embedding(Tensor(int32: kept, shape: [batch, used]), table: tokenEmbedding)  // [B, L, W]
        x = compute.add(x, positionalEmbedding.slice(0 ..< used))
        x = transformer(x, causal: true, compute: compute)
        x = pooledRows(x, positions: pooled)                                                        // [B, W]
        x = compute.layerNorm(x, lnFinal)   // per position, so normalizing only the pooled rows is the same
        return compute.linear(x, textProjection)                                                    // [B, embed]
    }
}

/// Row `positions[b]` of each batch entry of `x` `[B, L, W]`: `[B, W]`.
func pooledRows(_ x: Tensor, positions: [Int]) -> Tensor {
    let (batch, length, width) = (x.shape[0], x.shape[1], x.shape[2])
    precondition(positions.count == batch && positions.allSatisfy { (0 ..< length).contains($0) },
                 "pooledRows: positions \(positions) do not fit \(x.shape)")
    var out = Tensor(uninitialized: [batch, width])
    x.withFloats { src in
        out.withMutableFloats { dst in
            for b in 0 ..< batch {
                for c in 0 ..< width { dst[b * width + c] = src[(b * length + positions[b]) * width + c] }
            }
        }
    }
    return out
}
