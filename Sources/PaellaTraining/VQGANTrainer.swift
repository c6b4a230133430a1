// Trains a VQGAN tokenizer whose weights load unchanged into `VQGAN` (ruDALL-E's GumbelVQ layout).
//
// Loss: L1 reconstruction on the [-1, 1] scale (plus an optional L2 term), and the quantizer's own term. No
// perceptual (LPIPS) or adversarial loss: taming adds them for photographic detail; for the flat-coloured
// synthetic images this tokenizer is meant for they cost more than they give, and leaving them out keeps the
// trainer small.
//
// Two quantizers:
// - `.nearest` (the default): a straight-through nearest-neighbour VQ (VQ-VAE; taming's VectorQuantizer loss
//   `|sg(z) - e|² + beta |z - sg(e)|²`) with dead-code restarts. Nearest-neighbour search is argmax of a linear
//   function, `2 z·e_k - |e_k|²`, so the trained codebook is written as ruDALL-E's `quantize.proj`
//   (weight `2 e_k`, bias `-|e_k|²`) and `VQGAN.encode`'s argmax gives exactly the trained assignment. Chosen
//   as the default because it is what the project's calibration (issue 8: 212/256 codes, 29 dB on 64x64
//   shapes) used, and because a restarted code is simply placed on an encoder output, where it is used at once.
// - `.gumbel`: taming's GumbelQuantize: `gumbel_softmax(proj(z), tau, hard=True)` (straight-through hard
//   sampling), `z_q = one_hot @ embed`, plus `kl_weight * mean(sum q log(q * n_embed))`, the KL to the
//   uniform prior; the temperature anneals on a cosine (taming's LambdaWarmUpCosineScheduler shape) from
//   `temperatureStart` to `temperatureEnd`. Restarts there split a used code: the dead code takes a copy of its
//   `proj` row and embedding plus a little noise. Gumbel noise comes from the trainer's generator, not torch's.
//
// Dead-code restarts (both quantizers): the codes picked in the last `restartWindow` steps are counted; at the
// end of each window every code not picked is re-initialised from the current batch (its AdamW moments zeroed).
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// The settings of a VQGAN training run.
public struct VQGANTrainingRecipe: Codable, Sendable, Equatable {
    public enum Quantizer: String, Codable, Sendable, CaseIterable { case nearest, gumbel }

    public var quantizer: Quantizer = .nearest
    public var schedule: OneCycleLR
    public var beta1: Double = 0.9
    public var beta2: Double = 0.99
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0
    public var gradientClipNorm: Double = 1
    /// Loss = `l1Weight` * mean absolute error + `l2Weight` * mean squared error (both on the [-1, 1] scale)
    /// + the quantizer's term.
    public var l1Weight: Double = 1
    public var l2Weight: Double = 0
    /// Extra weight of object pixels in the reconstruction loss: a pixel that differs from its image's
    /// background colour (the most common colour of the border) counts `1 + objectWeight` times. Flat synthetic
    /// scenes are mostly background (objects are about 5% of the pixels), so without it the loss is nearly
    /// blind to the small objects the tokenizer must keep. nil or 0: every pixel weighs the same.
    public var objectWeight: Double?
    /// `.nearest`: the commitment weight beta.
    public var commitment: Double = 0.25
    /// `.gumbel`: weight of the KL to the uniform prior (taming GumbelQuantize's default 5e-4).
    public var klWeight: Double = 5e-4
    /// `.gumbel`: temperature at step 0 and after `temperatureDecaySteps` steps (cosine in between).
    public var temperatureStart: Double = 1
    public var temperatureEnd: Double = 1.0 / 16
    public var temperatureDecaySteps: Int
    /// Steps per dead-code window (0: no restarts).
    public var restartWindow: Int = 50

    /// AdamW (0.9, 0.99, no weight decay) on a one-cycle cosine schedule peaking at `maxLR` after 5% of the steps.
    public init(totalSteps: Int, maxLR: Double = 1e-3, quantizer: Quantizer = .nearest) {
        schedule = OneCycleLR(maxLR: maxLR, totalSteps: totalSteps, pctStart: OneCycleLR.warmupFraction(totalSteps),
                              divFactor: 10, finalDivFactor: 100,
                              annealStrategy: .cos, cycleMomentum: false)
        temperatureDecaySteps = totalSteps
        self.quantizer = quantizer
    }

    /// The Gumbel temperature at `step`.
    public func temperature(at step: Int) -> Double {
        let t = min(1, Double(step) / Double(max(temperatureDecaySteps, 1)))
        return temperatureEnd + 0.5 * (temperatureStart - temperatureEnd) * (1 + cos(Double.pi * t))
    }
}

/// What one step did.
public struct VQGANStepResult: Codable, Sendable {
    /// Steps trained before this one.
    public var step: Int
    /// Total loss: reconstruction + quantizer term.
    public var loss: Double
    /// Weighted L1 + L2 on the [-1, 1] scale.
    public var reconstructionLoss: Double
    /// Commitment + codebook loss (`.nearest`) or the weighted KL (`.gumbel`).
    public var quantizerLoss: Double
    /// PSNR of the reconstruction in dB, images in [0, 1] (decoder output clamped as `VQGAN.decode` does).
    public var psnr: Double
    /// Distinct codes in this batch.
    public var codesInBatch: Int
    /// Distinct codes since the current restart window began (this step included).
    public var codesInWindow: Int
    /// exp(entropy) of this batch's code histogram.
    public var perplexity: Double
    public var gradientNorm: Double
    public var learningRate: Double
    /// `.gumbel` only.
    public var temperature: Double?
    /// Codes re-initialised after this step.
    public var restarted: Int
}

/// The loss, gradients and statistics of one batch (before the optimizer step).
public struct VQGANBatchLoss: Sendable {
    public var loss: Double
    public var reconstructionLoss: Double
    public var quantizerLoss: Double
    public var psnr: Double
    /// The codes picked, `[B, h, w]` int32.
    public var codes: Tensor
    /// The quantizer's input `[B, h, w, embed_dim]` (restarts draw from it).
    public var z: Tensor
    public var gradients: TrainableParameters
}

/// Trains a `VQGAN` on float32 master weights under the upstream state-dict names.
public struct VQGANTrainer: Sendable {
    public let config: VQGANConfig
    public let recipe: VQGANTrainingRecipe
    public let compute: Compute
    public internal(set) var parameters: TrainableParameters
    public internal(set) var optimizer: AdamW
    /// Steps trained so far.
    public internal(set) var step = 0
    /// Gumbel noise, restarts, initialisation (and, for the CLI, batch order).
    public var random: TrainingRandom
    /// How often each code was picked in the current restart window.
    public internal(set) var windowUsage: [Int]
    /// The ranks that train together (their gradients are summed every step); one process by default.
    public private(set) var parallel = DataParallel.single
    /// Sum the batch's gradient from per-image gradients in `SampleTree`'s fixed order (`--exact-sums`), so that
    /// any number of ranks whose shares are subtrees gets one process's bits; else each rank's share goes
    /// through the network as one batch and the ranks' gradients are all-reduced. Not saved in checkpoints.
    public var exactSums = false

    /// Starts from `parameters` (every key of `config`). With the `.nearest` quantizer `quantize.proj` is
    /// rewritten from the codebook at once (fine-tuning a Gumbel-trained model this way changes its encoding).
    public init(config: VQGANConfig, parameters: TrainableParameters, recipe: VQGANTrainingRecipe, compute: Compute,
                seed: UInt64 = 0) throws {
        _ = try VQGAN(config: config, weights: parameters.loader(), compute: compute)  // every key, right shapes
        self.config = config
        self.recipe = recipe
        self.compute = compute
        self.parameters = parameters
        optimizer = AdamW(parameters: parameters, beta1: recipe.beta1, beta2: recipe.beta2, eps: recipe.eps,
                          weightDecay: recipe.weightDecay)
        random = TrainingRandom(seed: seed)
        windowUsage = Array(repeating: 0, count: config.nEmbed)
        if recipe.quantizer == .nearest { syncProjection() }
    }

    /// Starts from PyTorch's default initialisation: convolutions uniform in ±1/sqrt(fan_in) (weights and
    /// biases), group norms 1 and 0, the codebook N(0, 1) (`.gumbel`: nn.Embedding) or uniform in ±1/n_embed
    /// (`.nearest`: taming's VectorQuantizer).
    public init(config: VQGANConfig, recipe: VQGANTrainingRecipe, compute: Compute, seed: UInt64 = 0) throws {
        var random = TrainingRandom(seed: seed ^ 0x5647_414E)
        let shapes = try VQGAN.parameterShapes(config)
        let fanIn = Dictionary(uniqueKeysWithValues: shapes.filter { $0.shape.count == 4 }.map {
            (String($0.name.dropLast(".weight".count)), $0.shape[1...].reduce(1, *))
        })
        let named = shapes.map { key -> (name: String, tensor: Tensor) in
            let module = String(key.name[..<(key.name.lastIndex(of: ".") ?? key.name.endIndex)])
            if key.name == "quantize.embed.weight" {
                return (key.name, recipe.quantizer == .gumbel ? random.normal(key.shape)
                                                               : random.symmetric(key.shape, bound: 1 / Float(config.nEmbed)))
            }
            if let fan = fanIn[module] { return (key.name, random.symmetric(key.shape, bound: 1 / Float(fan).squareRoot())) }
            return (key.name, key.name.hasSuffix(".weight") ? Tensor(repeating: 1, shape: key.shape) : Tensor(zeros: key.shape))
        }
        try self.init(config: config, parameters: TrainableParameters(named), recipe: recipe, compute: compute, seed: seed)
    }

    /// Trains as one of `parallel`'s ranks from now on, from rank 0's weights and optimizer moments.
    public mutating func join(_ parallel: DataParallel) {
        self.parallel = parallel
        parallel.broadcast(&parameters, &optimizer)
    }

    /// The learning rate of the next step.
    public var learningRate: Double { recipe.schedule.learningRate(at: optimizer.step) }

    /// The model at the current weights.
    public func model() throws -> VQGAN {
        try VQGAN(config: config, weights: parameters.loader(), compute: compute)
    }

    // MARK: Loss and gradients

    /// The loss and gradients of one batch of images `[B, H, W, 3]` in [0, 1] at the current weights.
    /// `.gumbel` draws its noise from `uniforms` (`[B, h, w, n_embed]` in [0, 1)); `hardGumbel: false` uses the
    /// relaxed one-hot itself (no straight-through), which makes the loss differentiable for gradient checks.
    /// `backward: false` only evaluates the loss (the gradients come back empty). `model`: the model at the
    /// current weights when the caller has made it already.
    public func lossAndGradients(images: Tensor, uniforms: Tensor? = nil, hardGumbel: Bool = true,
                                 backward: Bool = true, model given: VQGAN? = nil) throws -> VQGANBatchLoss {
        let model = try given ?? model()
        let (z, encoderRecord) = model.encodeForTraining(images)                    // [B, h, w, D]
        let (b, h, w, d) = (z.shape[0], z.shape[1], z.shape[2], z.shape[3])
        let n = b * h * w, k = config.nEmbed
        guard let codebook = parameters["quantize.embed.weight"] else { preconditionFailure("VQGANTrainer: no codebook") }
        let flatZ = z.reshaped([n, d])
        var grads = NamedGradients()
        // Quantize.
        var quantized: Tensor, codes: Tensor, quantizerLoss = 0.0
        var gumbel: (logits: Tensor, soft: Tensor, weights: Tensor, tau: Float)? = nil
        switch recipe.quantizer {
        case .nearest:
            // argmax of z·e - |e|²/2 = the nearest codebook entry.
            let halfNorms = codebook.reshaped([k, d]).floats.chunked(d).map { -0.5 * $0.reduce(0) { $0 + $1 * $1 } }
            codes = compute.argmax(compute.linear(flatZ, LinearWeights(weight: codebook, layout: .outIn, bias: Tensor(halfNorms, shape: [k]))))
            quantized = compute.embedding(codes, table: codebook)                   // [n, D]
        case .gumbel:
            let logits = model.quantizerLogits(z: z).reshaped([n, k])
            let u = uniforms ?? Tensor(zeros: [0])
            precondition(u.count == n * k, "VQGANTrainer: Gumbel uniforms \(u.shape) do not fit \(n) x \(k) logits")
            let tau = Float(recipe.temperature(at: step))
            var noisy = logits
            u.withFloats { uv in noisy.withMutableFloats { x in
                for i in 0..<x.count { x[i] = (x[i] - Foundation.log(-Foundation.log(uv[i] + 1e-20) + 1e-20)) / tau }
            }}
            let soft = compute.softmax(noisy)                                       // gumbel_softmax's y_soft
            codes = compute.argmax(soft)
            var weights = soft
            if hardGumbel {                                                         // y_hard, straight-through
                weights = Tensor(zeros: [n, k])
                let picked = codes.integers()
                weights.withMutableFloats { v in for i in 0..<n { v[i * k + picked[i]] = 1 } }
            }
            quantized = compute.linear(weights, LinearWeights(weight: codebook, layout: .inOut, bias: nil))  // one_hot @ embed
            gumbel = (logits, soft, weights, tau)
        }
        // The quantizer's loss: (1 + beta) |e - z|² (.nearest, forward value), or the KL to the uniform prior,
        // kl_weight * mean over positions of sum q log(q K + 1e-10) (.gumbel).
        var diff = Tensor(zeros: [0]), qy = Tensor(zeros: [0])
        switch recipe.quantizer {
        case .nearest:
            diff = compute.sub(quantized, flatZ)                                    // e - z
            var sq = 0.0
            diff.withFloats { v in for x in v { sq += Double(x) * Double(x) } }
            quantizerLoss = (1 + recipe.commitment) * sq / Double(n * d)
        case .gumbel:
            qy = compute.softmax(gumbel?.logits ?? Tensor(zeros: [0]))
            var kl = 0.0
            let kf = Float(k)
            qy.withFloats { q in for x in q { kl += Double(x) * Double(Foundation.log(x * kf + 1e-10)) } }
            quantizerLoss = recipe.klWeight * kl / Double(n)
        }
        codes = codes.reshaped([b, h, w])
        quantized = quantized.reshaped([b, h, w, d])
        // Decode and compare.
        let (reconstruction, decoderRecord) = model.decodeForTraining(quantized)    // [B, H, W, 3]
        let rec = reconstructionLoss(reconstruction, images: images)
        if !backward {
            return VQGANBatchLoss(loss: rec.loss + quantizerLoss, reconstructionLoss: rec.loss, quantizerLoss: quantizerLoss,
                                  psnr: rec.psnr, codes: codes, z: z, gradients: TrainableParameters([]))
        }
        let decoded = model.decoderBackward(decoderRecord, imagesGradient: rec.gradient)
        grads.merge(decoded.grads) { a, _ in a }
        // Back through the quantizer.
        var dz: Tensor
        switch recipe.quantizer {
        case .nearest:
            // Straight-through: dz = dzq + 2 beta (z - e) / (n d); the codebook gets 2 (e - z) / (n d).
            let scale = 2 / Float(n * d), beta = Float(recipe.commitment)
            dz = compute.add(decoded.quantized.reshaped([n, d]), compute.scale(diff, by: -beta * scale))
            grads["quantize.embed.weight"] = compute.embeddingBackward(codes.reshaped([n]), outputGradient: compute.scale(diff, by: scale), rows: k)
        case .gumbel:
            guard let g = gumbel else { preconditionFailure("VQGANTrainer: no Gumbel record") }
            let lin = compute.linearBackward(g.weights, LinearWeights(weight: codebook, layout: .inOut, bias: nil),
                                             outputGradient: decoded.quantized.reshaped([n, d]))
            guard let dWeights = lin.input else { preconditionFailure("VQGANTrainer: no gradient of the code weights") }
            grads["quantize.embed.weight"] = lin.weight
            var dLogits = compute.scale(compute.softmaxBackward(g.soft, outputGradient: dWeights, output: g.soft), by: 1 / g.tau)
            // d KL / d q = kl_weight / n * (log(q K + 1e-10) + q K / (q K + 1e-10)), then through the softmax.
            var dq = Tensor(uninitialized: [n, k])
            let klw = Float(recipe.klWeight / Double(n)), kf = Float(k)
            qy.withFloats { q in dq.withMutableFloats { dv in
                for i in 0..<(n * k) {
                    let t = q[i] * kf
                    dv[i] = klw * (Foundation.log(t + 1e-10) + t / (t + 1e-10))
                }
            }}
            dLogits = compute.add(dLogits, compute.softmaxBackward(g.logits, outputGradient: dq, output: qy))
            dz = model.quantizerLogitsBackward(z: z, logitsGradient: dLogits.reshaped([b, h, w, k]), &grads)
        }
        grads.merge(model.encoderBackward(encoderRecord, zGradient: dz.reshaped([b, h, w, d]))) { a, _ in a }
        let tensors = zip(parameters.names, parameters.tensors).map { name, p in grads[name] ?? Tensor(zeros: p.shape) }
        return VQGANBatchLoss(loss: rec.loss + quantizerLoss, reconstructionLoss: rec.loss, quantizerLoss: quantizerLoss,
                              psnr: rec.psnr, codes: codes, z: z,
                              gradients: TrainableParameters(names: parameters.names, tensors: tensors))
    }

    /// `l1Weight` L1 + `l2Weight` L2 between the decoder output and `2 images - 1` (each pixel weighted by
    /// `pixelWeights`), its gradient, and the unweighted PSNR in [0, 1].
    func reconstructionLoss(_ x: Tensor, images: Tensor) -> (loss: Double, gradient: Tensor, psnr: Double) {
        precondition(x.shape == images.shape, "VQGANTrainer: reconstruction \(x.shape) differs from images \(images.shape)")
        let m = x.count, l1 = Float(recipe.l1Weight), l2 = Float(recipe.l2Weight)
        let weights = Self.pixelWeights(images, objectWeight: Float(recipe.objectWeight ?? 0))
        var gradient = Tensor(uninitialized: x.shape)
        var absolute = 0.0, se = 0.0, clampedSE = 0.0
        x.withFloats { xv in images.withFloats { iv in gradient.withMutableFloats { g in
            for i in 0..<m {
                let diff = xv[i] - (2 * iv[i] - 1), weight = weights.isEmpty ? 1 : weights[i / 3]
                absolute += Double(weight * abs(diff))
                se += Double(weight * diff * diff)
                let shown = (min(max(xv[i], -1), 1) + 1) / 2 - iv[i]
                clampedSE += Double(shown) * Double(shown)
                g[i] = weight * (l1 * (diff > 0 ? 1 : diff < 0 ? -1 : 0) + 2 * l2 * diff) / Float(m)
            }
        }}}
        let mse = clampedSE / Double(max(m, 1))
        return ((Double(l1) * absolute + Double(l2) * se) / Double(max(m, 1)), gradient, 10 * log10(1 / max(mse, 1e-12)))
    }

    /// One weight per pixel of `images` `[B, H, W, 3]`: `1 + objectWeight` where a channel differs by more than
    /// 8/255 from the image's background, 1 elsewhere; empty when `objectWeight` is 0. The background is the
    /// most common colour of the image's border, which objects rarely cover more than a little of.
    static func pixelWeights(_ images: Tensor, objectWeight: Float) -> [Float] {
        guard objectWeight != 0 else { return [] }
        precondition(images.shape.count == 4 && images.shape[3] == 3, "VQGANTrainer: images must be [B, H, W, 3]")
        let (b, h, w) = (images.shape[0], images.shape[1], images.shape[2])
        let v = images.floats
        var weights = [Float](repeating: 1, count: b * h * w)
        for image in 0..<b {
            let base = image * h * w
            // A pixel's colour as one key: the three channels' bit patterns (exact equality, as the flat colours are).
            func colour(_ p: Int) -> SIMD3<UInt32> {
                let i = (base + p) * 3
                return SIMD3(v[i].bitPattern, v[i + 1].bitPattern, v[i + 2].bitPattern)
            }
            var counts: [SIMD3<UInt32>: Int] = [:]
            for x in 0..<w { counts[colour(x), default: 0] += 1; counts[colour((h - 1) * w + x), default: 0] += 1 }
            for y in 1..<max(h - 1, 1) { counts[colour(y * w), default: 0] += 1; counts[colour(y * w + w - 1), default: 0] += 1 }
            // The most common border colour; ties go to the largest channel values, so the choice is deterministic.
            func channels(_ k: SIMD3<UInt32>) -> (Float, Float, Float) { (Float(bitPattern: k.x), Float(bitPattern: k.y), Float(bitPattern: k.z)) }
            guard let key = counts.max(by: { a, b in a.value != b.value ? a.value < b.value : channels(a.key) < channels(b.key) })?.key
            else { continue }
            let background = channels(key)
            for p in 0..<(h * w) {
                let i = (base + p) * 3
                if abs(v[i] - background.0) > 8 / 255 || abs(v[i + 1] - background.1) > 8 / 255 || abs(v[i + 2] - background.2) > 8 / 255 {
                    weights[base + p] = 1 + objectWeight
                }
            }
        }
        return weights
    }

    // MARK: Training

    /// One step on images `[B, H, W, 3]` in [0, 1]: loss, backward, clipping, AdamW, usage counting and, at the
    /// end of a restart window, dead-code restarts.
    ///
    /// Data-parallel, `images` are the items `share.range` of the global batch: Gumbel noise is drawn for the
    /// whole batch (this rank keeps its items'), the gradient weighted by the share is summed over the ranks, and
    /// the statistics, the code usage and (for restarts) the encoder outputs are the whole batch's, so every rank
    /// makes the same update as one process would.
    public mutating func train(images: Tensor, share: BatchShare? = nil) throws -> VQGANStepResult {
        let part = share ?? .whole(images.shape[0])
        precondition(part.range.count == images.shape[0], "VQGANTrainer: \(images.shape[0]) images for a share of \(part.range.count)")
        let lr = learningRate
        let temperature = recipe.quantizer == .gumbel ? recipe.temperature(at: step) : nil
        var uniforms: Tensor? = nil
        if recipe.quantizer == .gumbel {
            let f = config.downsamplingFactor
            let item = [images.shape[1] / f, images.shape[2] / f, config.nEmbed]
            let perItem = item.reduce(1, *)
            let all = random.uniform([part.total] + item).floats
            uniforms = Tensor(Array(all[(part.range.lowerBound * perItem)..<(part.range.upperBound * perItem)]), shape: [part.range.count] + item)
        }
        var batch = exactSums ? try exactBatch(images: images, uniforms: uniforms, share: part)
                              : try allReducedBatch(images: images, uniforms: uniforms, share: part)
        let norm = batch.gradients.clipNorm(recipe.gradientClipNorm)
        optimizer.update(&parameters, gradients: batch.gradients, lr: lr)
        if recipe.quantizer == .nearest { syncProjection() }
        let histogram = batch.histogram
        for (i, c) in histogram.enumerated() { windowUsage[i] += c }
        let total = Double(histogram.reduce(0, +))
        let entropy = histogram.reduce(0.0) { h, c in c == 0 ? h : h - Double(c) / total * log(Double(c) / total) }
        let codesInWindow = windowUsage.filter { $0 > 0 }.count
        var restarted = 0
        if recipe.restartWindow > 0 && (step + 1) % recipe.restartWindow == 0 {
            restarted = restartDeadCodes(z: parallel.gather(batch.z, share: part), codes: parallel.gather(batch.codes, share: part))
            windowUsage = Array(repeating: 0, count: config.nEmbed)
        }
        defer { step += 1 }
        return VQGANStepResult(step: step, loss: batch.loss, reconstructionLoss: batch.reconstructionLoss,
                               quantizerLoss: batch.quantizerLoss, psnr: batch.psnr,
                               codesInBatch: histogram.filter { $0 > 0 }.count, codesInWindow: codesInWindow,
                               perplexity: exp(entropy), gradientNorm: norm, learningRate: lr, temperature: temperature,
                               restarted: restarted)
    }

    /// What a step needs of the whole batch: its gradient and statistics on every rank, this rank's codes and
    /// encoder outputs (gathered for restarts).
    struct WholeBatch {
        var gradients: TrainableParameters
        var loss: Double, reconstructionLoss: Double, quantizerLoss: Double, psnr: Double
        /// How often each code was picked in the whole batch.
        var histogram: [Int]
        /// This rank's codes `[b, h, w]` and encoder outputs `[b, h, w, D]`.
        var codes: Tensor, z: Tensor
    }

    /// This rank's share through the network as one batch; its gradient, weighted by the share, and its
    /// statistics are all-reduced (one process: the batch's own).
    func allReducedBatch(images: Tensor, uniforms: Tensor?, share: BatchShare) throws -> WholeBatch {
        var batch = try lossAndGradients(images: images, uniforms: uniforms)
        parallel.sum(&batch.gradients, weight: share.fraction)
        // Usage (over the whole batch) and the batch's statistics (means over its images; PSNR from the mean error).
        let localHistogram = batch.codes.integers().reduce(into: [Double](repeating: 0, count: config.nEmbed)) { h, code in h[code] += 1 }
        let mse = Foundation.pow(10, -batch.psnr / 10) * share.fraction
        let means = [batch.loss, batch.reconstructionLoss, batch.quantizerLoss].map { $0 * share.fraction } + [mse]
        let summed = parallel.sum(localHistogram + means)
        let k = config.nEmbed
        return WholeBatch(gradients: batch.gradients, loss: summed[k], reconstructionLoss: summed[k + 1], quantizerLoss: summed[k + 2],
                          psnr: parallel.size == 1 ? batch.psnr : 10 * log10(1 / max(summed[k + 3], 1e-12)),
                          histogram: summed.prefix(k).map { Int($0) }, codes: batch.codes, z: batch.z)
    }

    /// `--exact-sums`: each image of this rank's share alone through `lossAndGradients` (with its own Gumbel
    /// noise), the images' gradients (of their own mean losses) and statistics added in the batch's `SampleTree`,
    /// the ranks' sums combined over the tree's top, then divided by the batch: every rank gets one process's
    /// bits. Every image has as many pixels and positions as the others, so the batch's mean losses are the
    /// images' means, and the batch's PSNR comes from the images' mean squared error. Nothing else spans the
    /// batch: the group norms are per image and there is no discriminator or batch statistic.
    func exactBatch(images: Tensor, uniforms: Tensor?, share: BatchShare) throws -> WholeBatch {
        var sums: SampleSums, codes: [Int32], z: [Float]
        (sums, codes, z) = try sampleSums(images: images, uniforms: uniforms, share: share)
        parallel.combineExactly(&sums, share: share)
        let count = Double(share.total)
        sums.gradients.scale(by: Float(1 / count))
        let localHistogram = codes.reduce(into: [Double](repeating: 0, count: config.nEmbed)) { h, code in h[Int(code)] += 1 }
        let histogram = parallel.sum(localHistogram).map { Int($0) }  // counts: exact in any order
        let means = sums.statistics.map { $0 / count }
        let (b, f) = (share.range.count, config.downsamplingFactor)
        let grid = [b, images.shape[1] / f, images.shape[2] / f]
        return WholeBatch(gradients: sums.gradients, loss: means[0], reconstructionLoss: means[1], quantizerLoss: means[2],
                          psnr: 10 * log10(1 / max(means[3], 1e-12)), histogram: histogram,
                          codes: Tensor(int32: codes, shape: grid), z: Tensor(z, shape: grid + [config.embedDim]))
    }

    /// `--exact-sums`: the sum over this rank's images `share.range` (`images`, `uniforms`: those images') of
    /// each image's gradient of its own mean loss, with its losses and squared error, each image alone through
    /// `lossAndGradients`, added in the batch's `SampleTree`; and the images' codes and encoder outputs.
    public func sampleSums(images: Tensor, uniforms: Tensor?, share: BatchShare) throws -> (sums: SampleSums, codes: [Int32], z: [Float]) {
        let model = try model()
        var codes: [Int32] = [], z: [Float] = []
        let sums = try SampleSums.tree(over: share) { position in
            let one = (position - share.range.lowerBound)..<(position - share.range.lowerBound + 1)
            let item = try lossAndGradients(images: images.slice(one), uniforms: uniforms?.slice(one), model: model)
            codes += item.codes.integers().map { Int32($0) }  // leaves come in order of position
            z += item.z.floats
            return SampleSums(gradients: item.gradients,
                              statistics: [item.loss, item.reconstructionLoss, item.quantizerLoss, Foundation.pow(10, -item.psnr / 10)])
        }
        return (sums, codes, z)
    }

    /// Re-initialises every code unused in the window: `.nearest` puts it on an encoder output of this batch;
    /// `.gumbel` copies the code picked at such a position (its `proj` row, bias and embedding, plus noise of 1%
    /// of the row's scale). Returns how many codes were restarted.
    ///
    /// The positions are drawn without replacement with probability proportional to the squared distance
    /// between the encoder output and its code (k-means++ seeding). Uniform draws land where the batch is
    /// mostly alike, such as the flat backgrounds of the shapes dataset, and never reach the few positions the
    /// codebook serves worst (small objects, edges), so those stayed stuck on a background code.
    mutating func restartDeadCodes(z: Tensor, codes: Tensor) -> Int {
        let dead = windowUsage.indices.filter { windowUsage[$0] == 0 }
        if dead.isEmpty { return 0 }
        let d = config.embedDim, positions = codes.count
        let rows = z.reshaped([positions, d]).floats, picked = codes.integers()
        let codebook = parameters["quantize.embed.weight"]?.floats ?? []
        let weights = (0..<positions).map { p -> Double in
            // `.gumbel`'s codebook lives in another space than z: there every position weighs the same.
            guard recipe.quantizer == .nearest, codebook.count == config.nEmbed * d else { return 1 }
            return (0..<d).reduce(0.0) { s, j in
                let t = Double(rows[p * d + j] - codebook[picked[p] * d + j]); return s + t * t
            }
        }
        let sources = Self.weightedSampleWithoutReplacement(weights: weights, count: dead.count,
                                                            uniforms: random.uniform([positions]).floats)
        func edit(_ name: String, _ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
            guard let i = parameters.names.firstIndex(of: name) else { return }
            parameters.tensors[i].withMutableFloats { body($0) }
            // Fresh moments for the edited rows: zero them all for simplicity of the rows' bookkeeping.
            for row in dead {
                let width = parameters.tensors[i].count / config.nEmbed
                optimizer.expAvg.tensors[i].withMutableFloats { m in for j in 0..<width { m[row * width + j] = 0 } }
                optimizer.expAvgSq.tensors[i].withMutableFloats { v in for j in 0..<width { v[row * width + j] = 0 } }
            }
        }
        switch recipe.quantizer {
        case .nearest:
            edit("quantize.embed.weight") { e in
                for (code, source) in zip(dead, sources) { for j in 0..<d { e[code * d + j] = rows[source * d + j] } }
            }
            syncProjection()
        case .gumbel:
            let noise = random.normal([dead.count, d])
            let zc = config.zChannels
            let projNoise = random.normal([dead.count, zc])
            let donors = zip(dead, sources).map { ($0, picked[$1]) }
            for (name, width, noiseRows) in [("quantize.embed.weight", d, noise), ("quantize.proj.weight", zc, projNoise)] {
                let n = noiseRows.floats
                edit(name) { p in
                    for (r, (code, donor)) in donors.enumerated() {
                        var scale: Float = 0
                        for j in 0..<width { scale = max(scale, abs(p[donor * width + j])) }
                        for j in 0..<width { p[code * width + j] = p[donor * width + j] + 0.01 * scale * n[r * width + j] }
                    }
                }
            }
            edit("quantize.proj.bias") { p in for (code, donor) in donors { p[code] = p[donor] } }
        }
        return dead.count
    }

    /// `count` indices drawn without replacement, each with probability proportional to its weight
    /// (Efraimidis and Spirakis: the largest keys `log(u) / w`); indices of weight 0 come last, in order, and
    /// repeat when `count` exceeds the indices (a batch with fewer positions than dead codes).
    static func weightedSampleWithoutReplacement(weights: [Double], count: Int, uniforms: [Float]) -> [Int] {
        precondition(weights.count == uniforms.count && !weights.isEmpty, "VQGANTrainer: one uniform per weight")
        let keys = zip(weights, uniforms).map { w, u in w > 0 ? log(max(Double(u), 1e-300)) / w : -Double.infinity }
        let order = keys.indices.sorted { keys[$0] != keys[$1] ? keys[$0] > keys[$1] : $0 < $1 }
        return (0..<count).map { order[$0 % order.count] }
    }

    /// `.nearest`: writes `quantize.proj` as the nearest-neighbour search, weight `2 e_k`, bias `-|e_k|²`.
    mutating func syncProjection() {
        guard let e = parameters["quantize.embed.weight"]?.floats,
              let wi = parameters.names.firstIndex(of: "quantize.proj.weight"),
              let bi = parameters.names.firstIndex(of: "quantize.proj.bias") else { return }
        let d = config.embedDim
        parameters.tensors[wi].withMutableFloats { w in for i in 0..<e.count { w[i] = 2 * e[i] } }
        parameters.tensors[bi].withMutableFloats { b in
            for k in 0..<config.nEmbed { b[k] = -(0..<d).reduce(0) { $0 + e[k * d + $1] * e[k * d + $1] } }
        }
    }

    // MARK: Checkpoints

    /// The restart window's usage counts.
    public var checkpointExtra: VQGANCheckpointExtra? { VQGANCheckpointExtra(windowUsage: windowUsage) }

    public mutating func restore(_ state: ResumedTraining<VQGANCheckpointExtra>) throws {
        (optimizer, step, random) = (state.optimizer, state.step, state.random)
        guard let usage = state.extra?.windowUsage, usage.count == config.nEmbed else {
            throw TrainingCheckpointError.unreadable(path: state.statePath, reason: "it has no usage count for each of the \(config.nEmbed) codes")
        }
        windowUsage = usage
    }
}

/// What a VQGAN checkpoint adds: how often each code was picked in the current restart window.
public struct VQGANCheckpointExtra: Codable, Sendable, Equatable {
    public var windowUsage: [Int]
    enum CodingKeys: String, CodingKey { case windowUsage = "window_usage" }
}

extension VQGANTrainer: CheckpointedTrainer {
    public static let checkpointKind = "vqgan"
    public static func parameterShapes(_ config: VQGANConfig) throws -> [(name: String, shape: [Int])] {
        try VQGAN.parameterShapes(config)
    }
}

extension Array {
    /// Consecutive slices of `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

extension OneCycleLR {
    /// 5% warm-up, or 2 steps where 5% would be exactly one: PyTorch's OneCycleLR divides by
    /// `pct_start * total_steps - 1`, which is then zero (a NaN learning rate here, an error in PyTorch).
    static func warmupFraction(_ totalSteps: Int) -> Double {
        abs(0.05 * Double(totalSteps) - 1) < 1e-9 ? 2 / Double(totalSteps) : 0.05
    }
}
