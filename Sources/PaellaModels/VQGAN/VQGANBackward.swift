// Backward pass of the VQGAN's two convolutional halves (VQGAN.swift, VQGANBlocks.swift: taming-transformers'
// Encoder/Decoder with ruDALL-E's quant_conv, quantize.proj and post_quant_conv), for VQGANTrainer.
//
// Explicit per-layer backward, as DenoiserBackward.swift: each layer's training forward keeps a small record
// (the inputs of its norms and convolutions, or only its input where recomputing the rest is cheap), and its
// backward walks the same layers in reverse. The quantizer between the halves (Gumbel-softmax or nearest
// neighbour, the KL term, dead-code restarts) belongs to the trainer; this file differentiates everything else.
import PaellaCore
import PaellaIO

/// Gradients keyed by upstream state-dict name, in upstream layouts (OIHW convolutions).
package typealias NamedGradients = [String: Tensor]

extension Dictionary where Key == String, Value == Tensor {
    /// Stores a convolution's weight (OIHW) and bias gradients under `name.weight` / `name.bias`.
    mutating func addConv(_ name: String, _ g: Conv2dGradients) {
        self[name + ".weight"] = g.kernel.permuted([3, 2, 0, 1])
        if let b = g.bias { self[name + ".bias"] = b }
    }

    mutating func addNorm(_ name: String, _ g: GroupNormGradients) {
        if let w = g.weight { self[name + ".weight"] = w }
        if let b = g.bias { self[name + ".bias"] = b }
    }
}

extension Compute {
    /// Backward of `vqNormalize`.
    func vqNormalizeBackward(_ x: Tensor, _ norm: VQNorm?, swish: Bool, outputGradient: Tensor) -> GroupNormGradients {
        guard let norm else {
            return GroupNormGradients(input: swish ? siluBackward(x, outputGradient: outputGradient) : outputGradient,
                                      weight: nil, bias: nil)
        }
        let w = norm.weights
        if norm.perPixel {
            let dy = swish ? siluBackward(layerNorm(x, weight: w.weight, bias: w.bias, eps: w.eps), outputGradient: outputGradient)
                           : outputGradient
            let g = layerNormBackward(x, weight: w.weight, bias: w.bias, eps: w.eps, outputGradient: dy)
            return GroupNormGradients(input: g.input, weight: g.weight, bias: g.bias)
        }
        return groupNormBackward(x, groups: VQGANLayers.normGroups, weight: w.weight, bias: w.bias, eps: w.eps,
                                 fusedSiLU: swish, outputGradient: outputGradient)
    }
}

// MARK: Blocks

/// What a training forward of a `VQResnetBlock` keeps: its input and its first convolution's output (the norms
/// and SiLUs are recomputed in the backward pass).
struct VQResnetRecord: Sendable {
    let input: Tensor
    let conv1Output: Tensor
}

extension VQResnetBlock {
    func forwardForTraining(_ x: Tensor, _ c: Compute) -> (output: Tensor, record: VQResnetRecord) {
        var h = c.vqNormalize(x, norm1, swish: true)
        let a1 = c.conv2d(h, conv1, padding: 1)  // [B, H, W, Cout]
        h = c.vqNormalize(a1, norm2, swish: true)
        h = c.conv2d(h, conv2, padding: 1)
        c.addInPlace(&h, ninShortcut.map { c.conv2d(x, $0) } ?? x)  // x + h
        return (h, VQResnetRecord(input: x, conv1Output: a1))
    }

    /// The input's gradient; the parameters' gradients go into `grads` under the block's key.
    func backward(_ r: VQResnetRecord, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        let h2 = c.vqNormalize(r.conv1Output, norm2, swish: true)
        let g2 = c.conv2dBackward(h2, conv2, outputGradient: dy, padding: 1)
        grads.addConv(key + ".conv2", g2)
        let n2 = c.vqNormalizeBackward(r.conv1Output, norm2, swish: true, outputGradient: g2.input)
        grads.addNorm(key + ".norm2", n2)
        let h1 = c.vqNormalize(r.input, norm1, swish: true)
        let g1 = c.conv2dBackward(h1, conv1, outputGradient: n2.input, padding: 1)
        grads.addConv(key + ".conv1", g1)
        let n1 = c.vqNormalizeBackward(r.input, norm1, swish: true, outputGradient: g1.input)
        grads.addNorm(key + ".norm1", n1)
        var dx = n1.input
        if let nin = ninShortcut {
            let gs = c.conv2dBackward(r.input, nin, outputGradient: dy)
            grads.addConv(key + ".nin_shortcut", gs)
            c.addInPlace(&dx, gs.input)
        } else {
            c.addInPlace(&dx, dy)  // the residual
        }
        return dx
    }
}

extension VQAttnBlock {
    /// The input's gradient (the forward is recomputed from the input `x`: four 1x1 convolutions and one head).
    func backward(_ x: Tensor, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        let (b, height, width, ch) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let heads = [b, 1, height * width, ch], image = [b, height, width, ch]
        let h = c.vqNormalize(x, norm, swish: false)
        let query = c.conv2d(h, q).reshaped(heads), key = c.conv2d(h, k).reshaped(heads), value = c.conv2d(h, v).reshaped(heads)
        let attended = c.scaledDotProductAttention(q: query, k: key, v: value).reshaped(image)
        let gp = c.conv2dBackward(attended, projOut, outputGradient: dy)
        grads.addConv(self.key + ".proj_out", gp)
        let ga = c.scaledDotProductAttentionBackward(q: query, k: key, v: value, outputGradient: gp.input.reshaped(heads))
        let gq = c.conv2dBackward(h, q, outputGradient: ga.q.reshaped(image))
        let gk = c.conv2dBackward(h, k, outputGradient: ga.k.reshaped(image))
        let gv = c.conv2dBackward(h, v, outputGradient: ga.v.reshaped(image))
        grads.addConv(self.key + ".q", gq)
        grads.addConv(self.key + ".k", gk)
        grads.addConv(self.key + ".v", gv)
        var dh = gq.input
        c.addInPlace(&dh, gk.input)
        c.addInPlace(&dh, gv.input)
        let gn = c.vqNormalizeBackward(x, norm, swish: false, outputGradient: dh)
        grads.addNorm(self.key + ".norm", gn)
        var dx = gn.input
        c.addInPlace(&dx, dy)  // the residual
        return dx
    }
}

extension VQDownsample {
    func backward(_ x: Tensor, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        let g = c.conv2dBackward(x, conv, outputGradient: dy, stride: 2, padding: Padding2d(top: 0, bottom: 1, left: 0, right: 1))
        grads.addConv(key + ".conv", g)
        return g.input
    }
}

extension VQUpsample {
    func backward(_ x: Tensor, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        let g = c.conv2dBackward(c.upsampleNearest2x(x), conv, outputGradient: dy, padding: 1)
        grads.addConv(key + ".conv", g)
        return c.upsampleNearest2xBackward(outputGradient: g.input)
    }
}

// MARK: Encoder and decoder

/// One level's records: per residual block its record and the input of the attention block after it (if any),
/// then the resampling step's input.
struct VQLevelRecord: Sendable {
    var blocks: [VQResnetRecord] = []
    var attentionInputs: [Tensor] = []
    var resampleInput: Tensor?
}

/// What a training forward of the encoder or decoder keeps for its backward pass.
package struct VQStackRecord: Sendable {
    var convInInput = Tensor(zeros: [0])
    var levels: [VQLevelRecord] = []
    var mid1 = VQResnetRecord(input: Tensor(zeros: [0]), conv1Output: Tensor(zeros: [0]))
    var midAttentionInput = Tensor(zeros: [0])
    var mid2 = VQResnetRecord(input: Tensor(zeros: [0]), conv1Output: Tensor(zeros: [0]))
    var normOutInput = Tensor(zeros: [0])
}

extension VQLevel where Resample == VQDownsample {
    func forwardForTraining(_ x: Tensor, _ c: Compute) -> (Tensor, VQLevelRecord) {
        var h = x, record = VQLevelRecord()
        for (i, block) in blocks.enumerated() {
            let b = block.forwardForTraining(h, c)
            record.blocks.append(b.record)
            h = b.output
            if !attentions.isEmpty { record.attentionInputs.append(h); h = attentions[i](h, c) }
        }
        if let resample { record.resampleInput = h; h = resample(h, c) }  // [B, H/2, W/2, C]
        return (h, record)
    }
}

extension VQLevel where Resample == VQUpsample {
    func forwardForTraining(_ x: Tensor, _ c: Compute) -> (Tensor, VQLevelRecord) {
        var h = x, record = VQLevelRecord()
        for (i, block) in blocks.enumerated() {
            let b = block.forwardForTraining(h, c)
            record.blocks.append(b.record)
            h = b.output
            if !attentions.isEmpty { record.attentionInputs.append(h); h = attentions[i](h, c) }
        }
        if let resample { record.resampleInput = h; h = resample(h, c) }  // [B, 2H, 2W, C]
        return (h, record)
    }
}

extension VQLevel {
    /// Backward of the blocks (and attention blocks) of one level, after its resampling step.
    func blocksBackward(_ r: VQLevelRecord, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        var dh = dy
        for (i, block) in blocks.enumerated().reversed() {
            if !attentions.isEmpty {
                dh = attentions[i].backward(r.attentionInputs[i], outputGradient: dh, c, &grads)
            }
            dh = block.backward(r.blocks[i], outputGradient: dh, c, &grads)
        }
        return dh
    }
}

extension VQEncoder {
    func forwardForTraining(_ x: Tensor, _ c: Compute) -> (output: Tensor, record: VQStackRecord) {
        var record = VQStackRecord()
        record.convInInput = x
        var h = c.conv2d(x, convIn, padding: 1)  // [B, H, W, ch]
        for level in down {
            let l = level.forwardForTraining(h, c)
            record.levels.append(l.1)
            h = l.0
        }
        let m1 = midBlock1.forwardForTraining(h, c)
        record.mid1 = m1.record
        record.midAttentionInput = m1.output
        h = midAttention.map { $0(m1.output, c) } ?? m1.output
        let m2 = midBlock2.forwardForTraining(h, c)
        record.mid2 = m2.record
        record.normOutInput = m2.output
        h = c.vqNormalize(m2.output, normOut, swish: true)
        return (c.conv2d(h, convOut, padding: 1), record)  // [B, H/f, W/f, z_channels]
    }

    /// Parameter gradients under the encoder's key (`encoder.*`) (the input's gradient is not needed: images are not trained).
    func backward(_ r: VQStackRecord, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) {
        let gOut = c.conv2dBackward(c.vqNormalize(r.normOutInput, normOut, swish: true), convOut, outputGradient: dy, padding: 1)
        grads.addConv(key + ".conv_out", gOut)
        let gNorm = c.vqNormalizeBackward(r.normOutInput, normOut, swish: true, outputGradient: gOut.input)
        grads.addNorm(key + ".norm_out", gNorm)
        var dh = midBlock2.backward(r.mid2, outputGradient: gNorm.input, c, &grads)
        if let midAttention { dh = midAttention.backward(r.midAttentionInput, outputGradient: dh, c, &grads) }
        dh = midBlock1.backward(r.mid1, outputGradient: dh, c, &grads)
        for (i, level) in down.enumerated().reversed() {
            let record = r.levels[i]
            if let downsample = level.resample, let input = record.resampleInput {
                dh = downsample.backward(input, outputGradient: dh, c, &grads)
            }
            dh = level.blocksBackward(record, outputGradient: dh, c, &grads)
        }
        grads.addConv(key + ".conv_in", c.conv2dBackward(r.convInInput, convIn, outputGradient: dh, padding: 1))
    }
}

extension VQDecoder {
    func forwardForTraining(_ z: Tensor, _ c: Compute) -> (output: Tensor, record: VQStackRecord) {
        var record = VQStackRecord()
        record.convInInput = z
        var h = c.conv2d(z, convIn, padding: 1)  // [B, h, w, C]
        let m1 = midBlock1.forwardForTraining(h, c)
        record.mid1 = m1.record
        record.midAttentionInput = m1.output
        h = midAttention.map { $0(m1.output, c) } ?? m1.output
        let m2 = midBlock2.forwardForTraining(h, c)
        record.mid2 = m2.record
        h = m2.output
        record.levels = Array(repeating: VQLevelRecord(), count: up.count)
        for (i, level) in up.enumerated().reversed() {
            let l = level.forwardForTraining(h, c)
            record.levels[i] = l.1
            h = l.0
        }
        record.normOutInput = h
        h = c.vqNormalize(h, normOut, swish: true)
        return (c.conv2d(h, convOut, padding: 1), record)  // [B, H, W, 3]
    }

    /// The input's gradient; parameter gradients under the decoder's key (`decoder.*`).
    func backward(_ r: VQStackRecord, outputGradient dy: Tensor, _ c: Compute, _ grads: inout NamedGradients) -> Tensor {
        let gOut = c.conv2dBackward(c.vqNormalize(r.normOutInput, normOut, swish: true), convOut, outputGradient: dy, padding: 1)
        grads.addConv(key + ".conv_out", gOut)
        let gNorm = c.vqNormalizeBackward(r.normOutInput, normOut, swish: true, outputGradient: gOut.input)
        grads.addNorm(key + ".norm_out", gNorm)
        var dh = gNorm.input
        for (i, level) in up.enumerated() {  // the forward ran the levels from the last to the first
            let record = r.levels[i]
            if let upsample = level.resample, let input = record.resampleInput {
                dh = upsample.backward(input, outputGradient: dh, c, &grads)
            }
            dh = level.blocksBackward(record, outputGradient: dh, c, &grads)
        }
        dh = midBlock2.backward(r.mid2, outputGradient: dh, c, &grads)
        if let midAttention { dh = midAttention.backward(r.midAttentionInput, outputGradient: dh, c, &grads) }
        dh = midBlock1.backward(r.mid1, outputGradient: dh, c, &grads)
        let gIn = c.conv2dBackward(r.convInInput, convIn, outputGradient: dh, padding: 1)
        grads.addConv(key + ".conv_in", gIn)
        return gIn.input
    }
}

// MARK: The model

/// What `VQGAN.encodeForTraining` keeps for `encoderBackward`.
package struct VQGANEncoderRecord: Sendable {
    let encoder: VQStackRecord
    let encoderOutput: Tensor
}

/// What `VQGAN.decodeForTraining` keeps for `decoderBackward`.
package struct VQGANDecoderRecord: Sendable {
    let quantized: Tensor
    let decoder: VQStackRecord
}

extension VQGAN {
    /// Every parameter's upstream name and shape for `config`, in loading order (what a trainer owns).
    public static func parameterShapes(_ config: VQGANConfig) throws -> [(name: String, shape: [Int])] {
        let loader = WeightLoader(synthetic: .shapesOnly, origin: "parameter shapes")
        _ = try VQGAN(config: config, weights: loader, compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()))
        return loader.requested
    }

    /// The encoder half for training: images `[B, H, W, 3]` in [0, 1] -> `quant_conv(encoder(2x - 1))`
    /// `[B, H/f, W/f, embed_dim]` (the quantizer's input), with what `encoderBackward` needs.
    package func encodeForTraining(_ images: Tensor) -> (z: Tensor, record: VQGANEncoderRecord) {
        precondition(images.rank == 4 && images.shape[3] == config.inChannels && images.shape[1] % config.downsamplingFactor == 0
                     && images.shape[2] % config.downsamplingFactor == 0,
                     "VQGAN training: images \(images.shape) are not [B, H, W, \(config.inChannels)] with sides multiples of \(config.downsamplingFactor)")
        let x = compute.add(compute.scale(images, by: 2), Tensor([-1], shape: [1]))  // [0, 1] -> [-1, 1]
        let (h, record) = encoder.forwardForTraining(x, compute)                        // [B, h, w, z_channels]
        return (compute.conv2d(h, quantConv), VQGANEncoderRecord(encoder: record, encoderOutput: h))
    }

    /// Parameter gradients of the encoder half (`encoder.*`, `quant_conv.*`) given the gradient of its output `z`.
    package func encoderBackward(_ r: VQGANEncoderRecord, zGradient dz: Tensor) -> NamedGradients {
        var grads = NamedGradients()
        let g = compute.conv2dBackward(r.encoderOutput, quantConv, outputGradient: dz)
        grads.addConv("quant_conv", g)
        encoder.backward(r.encoder, outputGradient: g.input, compute, &grads)
        return grads
    }

    /// `quantize.proj(z)`: one logit per codebook entry, `[B, h, w, n_embed]`.
    package func quantizerLogits(z: Tensor) -> Tensor { compute.conv2d(z, quantizeProj) }

    /// Gradients of `quantizerLogits(z:)`: `z`'s, and `quantize.proj.*`'s in `grads`.
    package func quantizerLogitsBackward(z: Tensor, logitsGradient: Tensor, _ grads: inout NamedGradients) -> Tensor {
        let g = compute.conv2dBackward(z, quantizeProj, outputGradient: logitsGradient)
        grads.addConv("quantize.proj", g)
        return g.input
    }

    /// The decoder half for training: quantized vectors `[B, h, w, embed_dim]` (codebook rows, or their
    /// Gumbel-softmax mixture) -> `decoder(post_quant_conv(zq))` `[B, H, W, 3]`, about [-1, 1], not clamped.
    package func decodeForTraining(_ quantized: Tensor) -> (images: Tensor, record: VQGANDecoderRecord) {
        let p = compute.conv2d(quantized, postQuantConv)  // [B, h, w, z_channels]
        let (x, record) = decoder.forwardForTraining(p, compute)
        return (x, VQGANDecoderRecord(quantized: quantized, decoder: record))
    }

    /// The gradient of the decoder half's input and its parameter gradients (`decoder.*`, `post_quant_conv.*`).
    package func decoderBackward(_ r: VQGANDecoderRecord, imagesGradient dx: Tensor) -> (quantized: Tensor, grads: NamedGradients) {
        var grads = NamedGradients()
        let dp = decoder.backward(r.decoder, outputGradient: dx, compute, &grads)
        let g = compute.conv2dBackward(r.quantized, postQuantConv, outputGradient: dp)
        grads.addConv("post_quant_conv", g)
        return (g.input, grads)
    }
}
