// Backward pass of the Paella v1 denoiser (Denoiser.swift: DenoiseUNet of dome272/Paella modules.py, commit
// 3671515), for training with a global conditioning vector (what paella.py trains with).
//
// Explicit per-layer backward rather than a tape: the network is a fixed UNet made of one block type, so a
// forward that keeps each block's intermediate tensors in a small struct, and a backward that walks the same
// layers in reverse, read like the forward they differentiate, need no graph machinery or dynamic dispatch,
// and leave every op a plain function of PaellaCore with its own finite-difference test.
import PaellaCore

/// What a training forward of one `ResBlock` keeps for its backward pass (channels-last tensors).
struct ResBlockActivations: Sendable {
    let input: Tensor             // x [B, H, W, C]
    let depthwiseOutput: Tensor   // the norm's input [B, H, W, C]
    let statistics: LayerNormStatistics
    let normalized: Tensor        // ln(x) with the norm's own weight and bias
    let modulation: Tensor        // w = cond_mapper(s) [B, 1, 1, C]
    let mlpInput: Tensor          // concat(gamma w ln + beta w, skip) [B, H, W, C (+ C_skip)]
    let hidden: Tensor            // channelwise.0 output, before GELU [B, H, W, 4C]
    let activated: Tensor         // after GELU
    let mlpOutput: Tensor         // channelwise.2 output, before the layer scale [B, H, W, C]
}

/// What a training forward of the denoiser keeps for `backward`: every block's activations and the inputs of
/// the strided convolutions, the embedding and the classifier.
public struct DenoiserActivations: Sendable {
    struct DownLevel: Sendable { var downsampleInput: Tensor?; var blocks: [ResBlockActivations] = [] }
    struct UpLevel: Sendable { var blocks: [ResBlockActivations] = []; var upsampleInput: Tensor? }
    let tokens: Tensor
    let conditioning: Tensor      // s = concat(c, r embedding) [B, 1, 1, c_clip + c_r]
    var down: [DownLevel] = []
    var up: [UpLevel] = []
    var classifierInput = Tensor(zeros: [0])
}

extension Denoiser {
    /// The forward pass of `callAsFunction` for a global conditioning `c` `[B, c_clip]`, also returning what
    /// `backward` needs. The logits `[B, H, W, num_labels]` equal the inference forward's.
    public func forwardForTraining(_ x: Tensor, conditioning c: Tensor, r: [Float]) -> (logits: Tensor, activations: DenoiserActivations) {
        let batch = x.shape.first ?? 0, m = config.sideMultiple
        precondition(x.rank == 3 && x.shape[1] % m == 0 && x.shape[2] % m == 0 && min(x.shape[1], x.shape[2]) >= 2 * m,
                     "Denoiser: tokens must be [B, H, W] with H and W multiples of \(m), at least \(2 * m), got \(x.shape)")
        precondition(c.shape == [batch, config.cClip] && r.count == batch,
                     "Denoiser training: conditioning \(c.shape) and \(r.count) noise levels do not fit \(batch) grids of width \(config.cClip)")
        let s = compute.concat([c.toFloat32(), rEmbedding(r)], axis: 1).reshaped([batch, 1, 1, config.conditioningChannels])
        var acts = DenoiserActivations(tokens: x, conditioning: s)
        var h = compute.embedding(x, table: embedding)                              // [B, H, W, c0]
        var levelOutputs: [Tensor] = []
        for level in down {
            var record = DenoiserActivations.DownLevel()
            if let conv = level.downsample {
                record.downsampleInput = h
                h = compute.conv2d(h, conv, stride: 2, padding: 1)                      // [B, H/2, W/2, C]
            }
            for block in level.blocks {
                let a = block.forwardForTraining(h, s, skip: nil, compute)
                record.blocks.append(a.activations)
                h = a.output
            }
            acts.down.append(record)
            levelOutputs.insert(h, at: 0)
        }
        h = levelOutputs[0]
        for (i, level) in up.enumerated() {
            var record = DenoiserActivations.UpLevel()
            for (j, block) in level.blocks.enumerated() {
                let a = block.forwardForTraining(h, s, skip: i > 0 && j == 0 ? levelOutputs[i] : nil, compute)
                record.blocks.append(a.activations)
                h = a.output
            }
            if let conv = level.upsample {
                record.upsampleInput = h
                h = compute.convTranspose2d(h, conv, stride: 2, padding: 1)              // [B, 2H, 2W, C/2]
            }
            acts.up.append(record)
        }
        acts.classifierInput = h
        return (compute.conv2d(h, clf), acts)                                        // [B, H, W, num_labels]
    }

    /// Gradients of a loss with respect to every parameter, keyed by the upstream state-dict names and shaped
    /// like the upstream tensors (OIHW convolutions, `[out, in]` linears), given the loss's gradient with
    /// respect to the logits `[B, H, W, num_labels]` of `forwardForTraining`.
    public func backward(_ acts: DenoiserActivations, logitsGradient dLogits: Tensor) -> [String: Tensor] {
        var grads: [String: Tensor] = [:]
        func conv(_ name: String, _ g: Conv2dGradients) {
            grads[name + ".weight"] = g.kernel.permuted([3, 2, 0, 1])
            grads[name + ".bias"] = g.bias
        }
        let levels = down.count
        let c = compute.conv2dBackward(acts.classifierInput, clf, outputGradient: dLogits)
        conv(DenoiserKeys.classifier, c)
        var dh = c.input
        // Gradients of the down levels' outputs arriving through the skip connections (levelOutputs[i]).
        var dSkips = [Tensor?](repeating: nil, count: levels)
        for (i, level) in up.enumerated().reversed() {
            let record = acts.up[i]
            if let upsample = level.upsample, let input = record.upsampleInput, let key = keys.up[i].upsample {
                let g = compute.convTranspose2dBackward(input, upsample, outputGradient: dh, stride: 2, padding: 1)
                grads[key + ".weight"] = g.kernel.permuted([0, 3, 1, 2])
                grads[key + ".bias"] = g.bias
                dh = g.input
            }
            for (j, block) in level.blocks.enumerated().reversed() {
                let g = block.backward(record.blocks[j], acts.conditioning, outputGradient: dh, compute)
                for (name, t) in g.parameters { grads[keys.up[i].blocks[j] + "." + name] = t }
                dh = g.input
                if let skip = g.skip { dSkips[i] = skip }
            }
        }
        // dh is now the gradient of levelOutputs[0], the deepest level's output.
        for (k, level) in down.enumerated().reversed() {
            if let skip = dSkips[levels - 1 - k], levels - 1 - k > 0 { compute.addInPlace(&dh, skip) }
            let record = acts.down[k]
            for (j, block) in level.blocks.enumerated().reversed() {
                let g = block.backward(record.blocks[j], acts.conditioning, outputGradient: dh, compute)
                for (name, t) in g.parameters { grads[keys.down[k].blocks[j] + "." + name] = t }
                dh = g.input
            }
            if let downsample = level.downsample, let input = record.downsampleInput, let key = keys.down[k].downsample {
                let g = compute.conv2dBackward(input, downsample, outputGradient: dh, stride: 2, padding: 1)
                conv(key, g)
                dh = g.input
            }
        }
        grads[DenoiserKeys.embedding + ".weight"] = compute.embeddingBackward(acts.tokens, outputGradient: dh, rows: config.numLabels)
        return grads
    }
}

extension ResBlock {
    /// `callAsFunction` for a global conditioning `s` `[B, 1, 1, C_cond]`, keeping what `backward` needs.
    func forwardForTraining(_ x: Tensor, _ s: Tensor, skip: Tensor?, _ compute: Compute) -> (output: Tensor, activations: ResBlockActivations) {
        let d = compute.conv2d(x, depthwise, padding: 1, paddingMode: .reflect)      // [B, H, W, C]
        let w = compute.linear(s, condMapper)                                        // [B, 1, 1, C]
        let (n, statistics) = compute.layerNormWithStatistics(d, weight: ln.weight, bias: ln.bias, eps: ln.eps)
        var m = n
        compute.affineInPlace(&m, scale: compute.scale(w, by: lnGamma), shift: compute.scale(w, by: lnBeta))  // gamma w ln(x) + beta w
        let mlpInput = skip.map { compute.concat([m, $0], axis: 3) } ?? m            // [B, H, W, C (+ C_skip)]
        let hidden = compute.linear(mlpInput, channelwise0)                          // [B, H, W, 4C]
        let activated = compute.gelu(hidden)
        let mlpOutput = compute.linear(activated, channelwise2)                      // [B, H, W, C]
        var y = mlpOutput
        compute.scaleChannelsAndAdd(&y, channelScale: gamma, residual: x)            // x + gamma * h
        return (y, ResBlockActivations(input: x, depthwiseOutput: d, statistics: statistics, normalized: n, modulation: w,
                                       mlpInput: mlpInput, hidden: hidden, activated: activated, mlpOutput: mlpOutput))
    }

    /// Gradients of the block's input, of its skip input (when it had one) and of its parameters (names relative
    /// to the block, upstream layouts), given the gradient of its output.
    func backward(_ a: ResBlockActivations, _ s: Tensor, outputGradient dy: Tensor, _ compute: Compute)
        -> (input: Tensor, skip: Tensor?, parameters: [(String, Tensor)]) {
        typealias Key = DenoiserKeys.Block
        var p: [(String, Tensor)] = []
        // Each layer's gradients under its key (relative to the block): `weight` and `bias`.
        func layer(_ key: String, _ weight: Tensor, _ bias: Tensor?) { p += [(key + ".weight", weight), (key + ".bias", present(bias))] }
        // y = x + gamma * mlpOutput
        let (dGamma, dMlpOutput) = Self.layerScaleBackward(dy, a.mlpOutput, gamma)
        p.append((Key.gamma, dGamma))
        let g2 = compute.linearBackward(a.activated, channelwise2, outputGradient: dMlpOutput)
        layer(Key.channelwise2, g2.weight, g2.bias)
        let dHidden = compute.geluBackward(a.hidden, outputGradient: present(g2.input))
        let g0 = compute.linearBackward(a.mlpInput, channelwise0, outputGradient: dHidden)
        layer(Key.channelwise0, g0.weight, g0.bias)
        let c = a.normalized.shape[3]
        var dModulated = present(g0.input), dSkip: Tensor? = nil
        if a.mlpInput.shape[3] > c {
            let pieces = compute.split(dModulated, sizes: [c, a.mlpInput.shape[3] - c], axis: 3)
            (dModulated, dSkip) = (pieces[0], pieces[1])
        }
        // m = lnGamma * w * n + lnBeta * w
        let mod = Self.modulationBackward(dModulated, a.normalized, a.modulation, lnGamma, lnBeta)
        p += [(Key.normGamma, Tensor([mod.gamma], shape: [1, 1, 1])), (Key.normBeta, Tensor([mod.beta], shape: [1, 1, 1]))]
        let gn = compute.layerNormBackward(a.depthwiseOutput, weight: ln.weight, bias: ln.bias, eps: ln.eps,
                                           outputGradient: mod.normalized, statistics: a.statistics)
        layer(Key.norm, present(gn.weight), gn.bias)
        let gc = compute.linearBackward(s, condMapper, outputGradient: mod.modulation, inputGradient: false)  // s is not trained
        layer(Key.condMapper, gc.weight, gc.bias)
        let gd = compute.conv2dBackward(a.input, depthwise, outputGradient: gn.input, padding: 1, paddingMode: .reflect)
        layer(Key.depthwise, gd.kernel.permuted([3, 2, 0, 1]), gd.bias)
        var dx = gd.input
        compute.addInPlace(&dx, dy)                                                  // the residual
        return (dx, dSkip, p)
    }

    /// A gradient the block's layers always produce (every layer has a bias; input gradients are requested).
    private func present(_ t: Tensor?, _ line: UInt = #line) -> Tensor {
        guard let t else { preconditionFailure("ResBlock.backward: a gradient is missing (line \(line))") }
        return t
    }

    /// y = x + gamma * h (gamma per channel): dgamma = sum over positions of dy * h, dh = dy * gamma.
    static func layerScaleBackward(_ dy: Tensor, _ h: Tensor, _ gamma: Tensor) -> (gamma: Tensor, h: Tensor) {
        let c = gamma.count, rows = dy.count / max(c, 1)
        var sums = [Double](repeating: 0, count: c)
        var dh = Tensor(uninitialized: dy.shape)
        dy.withFloats { g in h.withFloats { hv in gamma.withFloats { gm in dh.withMutableFloats { d in
            for row in 0..<rows {
                for j in 0..<c {
                    let i = row * c + j
                    sums[j] += Double(g[i]) * Double(hv[i])
                    d[i] = g[i] * gm[j]
                }
            }
        }}}}
        return (Tensor(sums.map { Float($0) }, shape: [c]), dh)
    }

    /// m = gammaS * w * n + betaS * w with w `[B, 1, 1, C]` broadcast over positions and scalar gammaS, betaS:
    /// dn = dm * gammaS * w, dw = sum over positions of dm * (gammaS * n + betaS), dgammaS = sum dm * w * n,
    /// dbetaS = sum dm * w.
    static func modulationBackward(_ dm: Tensor, _ n: Tensor, _ w: Tensor, _ gammaS: Float, _ betaS: Float)
        -> (normalized: Tensor, modulation: Tensor, gamma: Float, beta: Float) {
        let batch = dm.shape[0], c = dm.shape[3], positions = dm.count / max(batch * c, 1)
        var dn = Tensor(uninitialized: dm.shape)
        var dw = [Float](repeating: 0, count: batch * c)
        var dGamma = 0.0, dBeta = 0.0
        dm.withFloats { g in n.withFloats { nv in w.withFloats { wv in dn.withMutableFloats { d in
            var sumGN = [Double](repeating: 0, count: c), sumG = [Double](repeating: 0, count: c)
            for b in 0..<batch {
                for j in 0..<c { sumGN[j] = 0; sumG[j] = 0 }
                for p in 0..<positions {
                    let o = (b * positions + p) * c
                    for j in 0..<c {
                        sumGN[j] += Double(g[o + j]) * Double(nv[o + j])
                        sumG[j] += Double(g[o + j])
                        d[o + j] = g[o + j] * gammaS * wv[b * c + j]
                    }
                }
                for j in 0..<c {
                    let wbj = Double(wv[b * c + j])
                    dw[b * c + j] = Float(Double(gammaS) * sumGN[j] + Double(betaS) * sumG[j])
                    dGamma += sumGN[j] * wbj
                    dBeta += sumG[j] * wbj
                }
            }
        }}}}
        return (dn, Tensor(dw, shape: w.shape), Float(dGamma), Float(dBeta))
    }
}
