// Backward pass of OpenCLIP's text and vision towers (CLIPTransformer.swift, CLIPTextEncoder.swift,
// CLIPVisionEncoder.swift), for CLIPTrainer. Explicit per-layer backward, as DenoiserBackward.swift: each
// block's training forward keeps its input, q/k/v, the attention output, the residual after attention and the
// MLP's hidden pre-activation; layer norms and GELU are recomputed in the backward pass.
import PaellaCore
import PaellaIO

/// What a training forward of one `CLIPResidualBlock` keeps.
struct CLIPBlockRecord: Sendable {
    let input: Tensor        // x [B, L, W]
    let q: Tensor, k: Tensor, v: Tensor  // [B, heads, L, D]
    let attended: Tensor     // attention output before out_proj [B, L, W]
    let afterAttention: Tensor  // x + attn(ln_1(x)) [B, L, W]
    let hidden: Tensor       // mlp.c_fc output before GELU [B, L, mlpWidth]
}

extension CLIPResidualBlock {
    func forwardForTraining(_ x: Tensor, causal: Bool, compute: Compute) -> (output: Tensor, record: CLIPBlockRecord) {
        let (b, l, width) = (x.shape[0], x.shape[1], x.shape[2])
        let d = width / heads
        let qkv = compute.linear(compute.layerNorm(x, ln1), inProjection)            // [B, L, 3W]
            .reshaped([b, l, 3, heads, d]).permuted([2, 0, 3, 1, 4])                 // [3, B, heads, L, D]
        let q = qkv.slice(0 ..< 1).reshaped([b, heads, l, d])
        let k = qkv.slice(1 ..< 2).reshaped([b, heads, l, d])
        let v = qkv.slice(2 ..< 3).reshaped([b, heads, l, d])
        let attended = compute.scaledDotProductAttention(q: q, k: k, v: v, causal: causal)
            .permuted([0, 2, 1, 3]).reshaped([b, l, width])                          // [B, L, W]
        let x1 = compute.add(x, compute.linear(attended, outProjection))
        let hidden = compute.linear(compute.layerNorm(x1, ln2), fc)                  // [B, L, mlpWidth]
        let y = compute.add(x1, compute.linear(compute.gelu(hidden), projection))
        return (y, CLIPBlockRecord(input: x, q: q, k: k, v: v, attended: attended, afterAttention: x1, hidden: hidden))
    }

    /// The input's gradient; parameter gradients go into `grads` under the block's key (OpenCLIP names).
    func backward(_ r: CLIPBlockRecord, outputGradient dy: Tensor, causal: Bool, compute c: Compute,
                  _ grads: inout [String: Tensor]) -> Tensor {
        let name = key
        let (b, l, width) = (r.input.shape[0], r.input.shape[1], r.input.shape[2])
        let d = width / heads
        func store(_ module: String, _ g: LinearGradients) {
            grads[name + "." + module + ".weight"] = g.weight
            if let bias = g.bias { grads[name + "." + module + ".bias"] = bias }
        }
        func store(_ module: String, _ g: LayerNormGradients) {
            if let w = g.weight { grads[name + "." + module + ".weight"] = w }
            if let bias = g.bias { grads[name + "." + module + ".bias"] = bias }
        }
        // y = x1 + c_proj(gelu(c_fc(ln_2(x1))))
        let gProj = c.linearBackward(c.gelu(r.hidden), projection, outputGradient: dy)
        store("mlp.c_proj", gProj)
        let dHidden = c.geluBackward(r.hidden, outputGradient: gProj.input ?? dy)
        let gFc = c.linearBackward(c.layerNorm(r.afterAttention, ln2), fc, outputGradient: dHidden)
        store("mlp.c_fc", gFc)
        let gLn2 = c.layerNormBackward(r.afterAttention, weight: ln2.weight, bias: ln2.bias, eps: ln2.eps,
                                       outputGradient: gFc.input ?? dy)
        store("ln_2", gLn2)
        let dx1 = c.add(dy, gLn2.input)
        // x1 = x + out_proj(attention(in_proj(ln_1(x))))
        let gOut = c.linearBackward(r.attended, outProjection, outputGradient: dx1)
        store("attn.out_proj", gOut)
        let dAttended = (gOut.input ?? dx1).reshaped([b, l, heads, d]).permuted([0, 2, 1, 3])  // [B, heads, L, D]
        let ga = c.scaledDotProductAttentionBackward(q: r.q, k: r.k, v: r.v, outputGradient: dAttended, causal: causal)
        let dqkv = c.concat([ga.q, ga.k, ga.v].map { $0.reshaped([1, b, heads, l, d]) }, axis: 0)  // [3, B, heads, L, D]
            .permuted([1, 3, 0, 2, 4]).reshaped([b, l, 3 * width])                   // [B, L, 3W]
        let gIn = c.linearBackward(c.layerNorm(r.input, ln1), inProjection, outputGradient: dqkv)
        grads[name + ".attn.in_proj_weight"] = gIn.weight
        if let bias = gIn.bias { grads[name + ".attn.in_proj_bias"] = bias }
        let gLn1 = c.layerNormBackward(r.input, weight: ln1.weight, bias: ln1.bias, eps: ln1.eps, outputGradient: gIn.input ?? dqkv)
        store("ln_1", gLn1)
        return c.add(dx1, gLn1.input)
    }
}

extension CLIPTransformer {
    func forwardForTraining(_ x: Tensor, causal: Bool, compute: Compute) -> (output: Tensor, records: [CLIPBlockRecord]) {
        var h = x, records: [CLIPBlockRecord] = []
        for block in blocks {
            let (y, r) = block.forwardForTraining(h, causal: causal, compute: compute)
            records.append(r)
            h = y
        }
        return (h, records)
    }

    func backward(_ records: [CLIPBlockRecord], outputGradient dy: Tensor, causal: Bool, compute: Compute,
                  _ grads: inout [String: Tensor]) -> Tensor {
        var dh = dy
        for (i, block) in blocks.enumerated().reversed() {
            dh = block.backward(records[i], outputGradient: dh, causal: causal, compute: compute, &grads)
        }
        return dh
    }
}

/// Rows `positions[b]` of a `[B, W]` gradient scattered into zeros of `[B, L, W]` (the backward of `pooledRows`).
func pooledRowsBackward(_ dy: Tensor, positions: [Int], length: Int) -> Tensor {
    let (batch, width) = (dy.shape[0], dy.shape[1])
    var out = Tensor(zeros: [batch, length, width])
    dy.withFloats { src in out.withMutableFloats { dst in
        for b in 0 ..< batch { for c in 0 ..< width { dst[(b * length + positions[b]) * width + c] = src[b * width + c] } }
    }}
    return out
}

/// Sum over the batch axis of `[B, rest...]`: `[rest...]`.
func sumOverBatch(_ x: Tensor) -> Tensor {
    let batch = x.shape[0], n = x.count / max(batch, 1)
    var sums = [Double](repeating: 0, count: n)
    x.withFloats { v in for b in 0 ..< batch { for i in 0 ..< n { sums[i] += Double(v[b * n + i]) } } }
    return Tensor(sums.map { Float($0) }, shape: Array(x.shape.dropFirst()))
}

/// What `CLIPTextEncoder.forwardForTraining` keeps.
package struct CLIPTextRecord: Sendable {
    let tokens: Tensor        // the kept positions [B, used]
    let pooled: [Int]
    let blocks: [CLIPBlockRecord]
    let pooledRows: Tensor    // transformer output at the pooled positions [B, W]
}

extension CLIPTextEncoder {
    /// `callAsFunction` (trimmed), also returning what `backward` needs.
    package func forwardForTraining(_ tokens: Tensor, compute: Compute) -> (embeddings: Tensor, record: CLIPTextRecord) {
        precondition(tokens.rank == 2 && tokens.shape[1] <= config.text.contextLength,
                     "CLIPTextEncoder: tokens \(tokens.shape) are not [B, L <= \(config.text.contextLength)]")
        let (batch, length) = (tokens.shape[0], tokens.shape[1])
        let ids = tokens.integers()
        let pooled = (0 ..< batch).map { b in
            let row = ids[b * length ..< (b + 1) * length]
            return row.firstIndex(of: row.max() ?? 0).map { $0 - b * length } ?? 0
        }
        let used = (pooled.max() ?? 0) + 1
        let kept = Tensor(int32: (0 ..< batch).flatMap { b in ids[b * length ..< b * length + used].map { Int32($0) } }, shape: [batch, used])
        var x = compute.embedding(kept, table: tokenEmbedding)                                      // [B, L, W]
        x = compute.add(x, positionalEmbedding.slice(0 ..< used))
        let (h, records) = transformer.forwardForTraining(x, causal: true, compute: compute)
        let rows = pooledRows(h, positions: pooled)                                                 // [B, W]
        let y = compute.linear(compute.layerNorm(rows, lnFinal), textProjection)                    // [B, embed]
        return (y, CLIPTextRecord(tokens: kept, pooled: pooled, blocks: records, pooledRows: rows))
    }

    /// Parameter gradients (OpenCLIP names: `token_embedding.weight`, `positional_embedding`, `transformer.*`,
    /// `ln_final.*`, `text_projection`) given the gradient of the embeddings `[B, embed]`.
    package func backward(_ r: CLIPTextRecord, outputGradient dy: Tensor, compute c: Compute) -> [String: Tensor] {
        var grads: [String: Tensor] = [:]
        let normed = c.layerNorm(r.pooledRows, lnFinal)
        let gProj = c.linearBackward(normed, textProjection, outputGradient: dy)
        grads["text_projection"] = gProj.weight
        let gLn = c.layerNormBackward(r.pooledRows, weight: lnFinal.weight, bias: lnFinal.bias, eps: lnFinal.eps, outputGradient: gProj.input ?? dy)
        grads["ln_final.weight"] = gLn.weight
        grads["ln_final.bias"] = gLn.bias
        let used = r.tokens.shape[1]
        var dh = pooledRowsBackward(gLn.input, positions: r.pooled, length: used)
        dh = transformer.backward(r.blocks, outputGradient: dh, causal: true, compute: c, &grads)
        let width = config.text.width
        var positional = Tensor(zeros: [config.text.contextLength, width])
        let dPositions = sumOverBatch(dh).floats
        positional.withMutableFloats { p in for i in 0 ..< dPositions.count { p[i] = dPositions[i] } }
        grads["positional_embedding"] = positional
        grads["token_embedding.weight"] = c.embeddingBackward(r.tokens, outputGradient: dh, rows: config.text.vocabSize)
        return grads
    }
}

/// What `CLIPVisionEncoder.forwardForTraining` keeps.
package struct CLIPVisionRecord: Sendable {
    let images: Tensor
    let lnPreInput: Tensor    // [B, 1 + grid², W]
    let blocks: [CLIPBlockRecord]
    let classRows: Tensor     // transformer output at the class token [B, W]
}

extension CLIPVisionEncoder {
    /// `callAsFunction`, also returning what `backward` needs.
    package func forwardForTraining(_ images: Tensor, compute: Compute) -> (embeddings: Tensor, record: CLIPVisionRecord) {
        let c = config.vision
        precondition(images.rank == 4 && images.shape[1] == c.imageSize && images.shape[2] == c.imageSize && images.shape[3] == 3,
                     "CLIPVisionEncoder: images \(images.shape) are not [B, \(c.imageSize), \(c.imageSize), 3]")
        let batch = images.shape[0]
        var x = compute.conv2d(images, patchEmbedding, stride: c.patchSize)                  // [B, grid, grid, W]
        x = x.reshaped([batch, c.grid * c.grid, c.width])                                    // [B, grid², W]
        let classTokens = compute.add(Tensor(zeros: [batch, 1, c.width]), classEmbedding)
        x = compute.concat([classTokens, x], axis: 1)                                        // [B, 1 + grid², W]
        x = compute.add(x, positionalEmbedding)
        let (h, records) = transformer.forwardForTraining(compute.layerNorm(x, lnPre), causal: false, compute: compute)
        let rows = pooledRows(h, positions: Array(repeating: 0, count: batch))               // [B, W] class token
        let y = compute.linear(compute.layerNorm(rows, lnPost), projection)                  // [B, embed]
        return (y, CLIPVisionRecord(images: images, lnPreInput: x, blocks: records, classRows: rows))
    }

    /// Parameter gradients under `visual.*` given the gradient of the embeddings `[B, embed]`.
    package func backward(_ r: CLIPVisionRecord, outputGradient dy: Tensor, compute c: Compute) -> [String: Tensor] {
        let v = config.vision
        var grads: [String: Tensor] = [:]
        let batch = dy.shape[0], length = v.grid * v.grid + 1
        let gProj = c.linearBackward(c.layerNorm(r.classRows, lnPost), projection, outputGradient: dy)
        grads["visual.proj"] = gProj.weight
        let gPost = c.layerNormBackward(r.classRows, weight: lnPost.weight, bias: lnPost.bias, eps: lnPost.eps, outputGradient: gProj.input ?? dy)
        grads["visual.ln_post.weight"] = gPost.weight
        grads["visual.ln_post.bias"] = gPost.bias
        var dh = pooledRowsBackward(gPost.input, positions: Array(repeating: 0, count: batch), length: length)
        dh = transformer.backward(r.blocks, outputGradient: dh, causal: false, compute: c, &grads)
        let gPre = c.layerNormBackward(r.lnPreInput, weight: lnPre.weight, bias: lnPre.bias, eps: lnPre.eps, outputGradient: dh)
        grads["visual.ln_pre.weight"] = gPre.weight
        grads["visual.ln_pre.bias"] = gPre.bias
        grads["visual.positional_embedding"] = sumOverBatch(gPre.input)
        let pieces = c.split(gPre.input, sizes: [1, v.grid * v.grid], axis: 1)
        grads["visual.class_embedding"] = sumOverBatch(pieces[0]).reshaped([v.width])
        let gConv = c.conv2dBackward(r.images, patchEmbedding, outputGradient: pieces[1].reshaped([batch, v.grid, v.grid, v.width]),
                                     stride: v.patchSize)
        grads["visual.conv1.weight"] = gConv.kernel.permuted([3, 2, 0, 1])
        return grads
    }
}

extension CLIPModel {
    /// Every tower parameter's OpenCLIP name and shape for `config`, in loading order (`logit_scale` not
    /// included: the towers do not read it).
    public static func parameterShapes(_ config: CLIPConfig) throws -> [(name: String, shape: [Int])] {
        let loader = WeightLoader(synthetic: .shapesOnly, origin: "parameter shapes")
        _ = try CLIPModel(weights: loader, config: config, towers: .both)
        return loader.requested
    }
}
