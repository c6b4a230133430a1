import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// The VQGAN trainer on a tiny configuration with every layer kind: residual blocks with and without the 1x1
/// shortcut, attention blocks in a level and in the middle, the padded stride-2 downsampling, nearest
/// upsampling, quant_conv / quantize.proj / post_quant_conv and the codebook.
@Suite struct VQGANTrainerTests {
    static let config = VQGANConfig(ch: 32, chMult: [1, 2], numResBlocks: 1, attnResolutions: [8], zChannels: 4,
                                    embedDim: 4, nEmbed: 8, resolution: 8)

    static func compute() -> Compute { Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()) }

    /// Images of a few flat-coloured squares, `[B, 8, 8, 3]` in [0, 1].
    static func images(_ batch: Int, seed: UInt64) -> Tensor {
        var rng = TestRandom(seed: seed)
        var v = [Float](repeating: 0, count: batch * 8 * 8 * 3)
        for b in 0..<batch {
            let background = (0..<3).map { _ in rng.float(0, 1) }, colour = (0..<3).map { _ in rng.float(0, 1) }
            let (y0, x0) = (rng.int(0...4), rng.int(0...4))
            for y in 0..<8 { for x in 0..<8 { for c in 0..<3 {
                v[((b * 8 + y) * 8 + x) * 3 + c] = (y0..<(y0 + 4)).contains(y) && (x0..<(x0 + 4)).contains(x) ? colour[c] : background[c]
            }}}
        }
        return Tensor(v, shape: [batch, 8, 8, 3])
    }

    /// Checks the trainer's gradients of the parameters `names` against central differences of its own loss:
    /// each tensor's largest-gradient element, and one random element when `randomElements`. Step 1e-2 with the loss in Double: the
    /// truncation error (h² f''' / 6) and float32 rounding of the loss (about 1e-7 / h) stay near 1e-5.
    static func checkGradients(_ trainer: VQGANTrainer, images: Tensor, uniforms: Tensor?, names: [String],
                               randomElements: Bool = true) throws {
        let analytic = try trainer.lossAndGradients(images: images, uniforms: uniforms, hardGumbel: false).gradients
        var rng = TestRandom(seed: 9)
        let h: Float = 1e-2
        var worst = 0.0, checked = 0
        for name in names {
            let i = try #require(trainer.parameters.names.firstIndex(of: name))
            let g = analytic.tensors[i].floats
            let largest = g.indices.max { abs(g[$0]) < abs(g[$1]) } ?? 0
            let random = rng.int(0...(g.count - 1))
            for j in Set(randomElements ? [largest, random] : [largest]) {
                func loss(_ delta: Float) throws -> Double {
                    var t = trainer
                    t.parameters.tensors[i].withMutableFloats { $0[j] += delta }
                    return try t.lossAndGradients(images: images, uniforms: uniforms, hardGumbel: false, backward: false).loss
                }
                let fd = (try loss(h) - loss(-h)) / Double(2 * h)
                worst = max(worst, abs(fd - Double(g[j])) / (1e-3 + abs(Double(g[j]))))
                checked += 1
                #expect(abs(fd - Double(g[j])) <= 1e-4 + 2e-2 * abs(Double(g[j])), "\(name)[\(j)]: finite difference \(fd), backward \(g[j])")
            }
        }
        print("VQGAN gradient vs finite differences: \(checked) elements, worst |fd - g| / (1e-3 + |g|) = \(worst)")
    }

    /// The relaxed Gumbel path (soft one-hot, fixed noise) is differentiable end to end: every parameter,
    /// the KL term included. L2 reconstruction (L1's kink would break the central differences).
    @Test func gumbelGradientsMatchFiniteDifferences() throws {
        var recipe = VQGANTrainingRecipe(totalSteps: 10, quantizer: .gumbel)
        recipe.l1Weight = 0
        recipe.l2Weight = 1
        recipe.klWeight = 0.1
        recipe.temperatureStart = 2
        var trainer = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 1)
        // Larger proj logits than the default initialisation, so the softmax is not flat.
        let p = try #require(trainer.parameters.names.firstIndex(of: "quantize.proj.weight"))
        trainer.parameters.tensors[p] = Tensor(trainer.parameters.tensors[p].floats.map { $0 * 4 }, shape: trainer.parameters.tensors[p].shape)
        let images = Self.images(1, seed: 2)
        var rng = TestRandom(seed: 3)
        let uniforms = rng.tensor([1, 4, 4, Self.config.nEmbed], 0, 1)
        try Self.checkGradients(trainer, images: images, uniforms: uniforms, names: trainer.parameters.names, randomElements: false)
    }

    /// The nearest-neighbour path: the decoder half has true gradients (the codes do not move under small
    /// changes); the encoder gets the straight-through gradient, the codebook the codebook-loss gradient.
    @Test func nearestDecoderGradientsMatchFiniteDifferences() throws {
        var recipe = VQGANTrainingRecipe(totalSteps: 10, quantizer: .nearest)
        recipe.l1Weight = 0
        recipe.l2Weight = 1
        let trainer = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 4)
        let images = Self.images(1, seed: 5)
        let names = trainer.parameters.names.filter { $0.hasPrefix("decoder.") || $0.hasPrefix("post_quant_conv.") }
        try Self.checkGradients(trainer, images: images, uniforms: nil, names: names)
        let g = try trainer.lossAndGradients(images: images).gradients
        #expect(try #require(g["encoder.conv_in.weight"]).floats.contains { $0 != 0 })
        #expect(try #require(g["quantize.embed.weight"]).floats.contains { $0 != 0 })
    }

    /// The tiny config without any attention and with `normalization` instead of GroupNorm.
    static func localConfig(_ normalization: VQGANNormalization) -> VQGANConfig {
        var config = config
        config.attnResolutions = []
        config.midAttention = false
        config.normalization = normalization
        return config
    }

    /// The local variants (no middle attention; per-pixel LayerNorm or no normalisation): their gradients, every
    /// parameter, match central differences of the loss; without normalisation there are no norm weights.
    @Test(arguments: [VQGANNormalization.pixel, .none])
    func localVariantGradientsMatchFiniteDifferences(_ normalization: VQGANNormalization) throws {
        let config = Self.localConfig(normalization)
        var recipe = VQGANTrainingRecipe(totalSteps: 10, quantizer: .gumbel)
        recipe.l1Weight = 0
        recipe.l2Weight = 1
        recipe.temperatureStart = 2
        var trainer = try VQGANTrainer(config: config, recipe: recipe, compute: Self.compute(), seed: 12)
        #expect(!trainer.parameters.names.contains { $0.contains("attn") })
        #expect(trainer.parameters.names.contains { $0.contains("norm") } == (normalization == .pixel))
        let p = try #require(trainer.parameters.names.firstIndex(of: "quantize.proj.weight"))
        trainer.parameters.tensors[p] = Tensor(trainer.parameters.tensors[p].floats.map { $0 * 4 }, shape: trainer.parameters.tensors[p].shape)
        var rng = TestRandom(seed: 13)
        try Self.checkGradients(trainer, images: Self.images(1, seed: 14), uniforms: rng.tensor([1, 4, 4, config.nEmbed], 0, 1),
                                names: trainer.parameters.names, randomElements: false)
    }

    /// What the variants are for: a token depends only on the pixels near it. Changing one corner pixel of a 32x32
    /// image leaves the encoder output of the far corner bit-identical without attention and GroupNorm, and
    /// changes it everywhere with them (their statistics and attention span the whole image).
    @Test(arguments: [VQGANNormalization.pixel, .none])
    func localVariantTokensAreLocal(_ normalization: VQGANNormalization) throws {
        let local = Self.localConfig(normalization)
        var rng = TestRandom(seed: 15)
        let image = rng.tensor([1, 32, 32, 3], 0, 1)
        var changed = image.floats
        for c in 0..<3 { changed[c] = 1 - changed[c] }  // pixel (0, 0)
        for (config, isLocal) in [(local, true), (Self.config, false)] {
            let model = try VQGANTrainer(config: config, recipe: VQGANTrainingRecipe(totalSteps: 1), compute: Self.compute(), seed: 16).model()
            let a = model.encodeForTraining(image).z, b = model.encodeForTraining(Tensor(changed, shape: image.shape)).z
            let d = a.shape[3]
            let farCorner = { (z: Tensor) in Array(z.floats[((15 * 16) + 15) * d..<((15 * 16) + 16) * d]) }  // token (15, 15)
            #expect((farCorner(a) == farCorner(b)) == isLocal, "midAttention \(config.midAttention), \(config.normalization)")
        }
        // The config file names the variant; a taming config without the keys is the upstream network.
        let json = String(decoding: try JSONEncoder().encode(local), as: UTF8.self)
        #expect(json.contains("\"mid_attention\":false") && json.contains("\"normalization\":\"\(normalization.rawValue)\""))
        #expect(!String(decoding: try JSONEncoder().encode(Self.config), as: UTF8.self).contains("mid_attention"))
        #expect(try JSONDecoder().decode(VQGANConfig.self, from: JSONEncoder().encode(local)) == local)
        #expect(try JSONDecoder().decode(VQGANConfig.self, from: JSONEncoder().encode(Self.config)) == Self.config)
    }

    /// Object pixels (those unlike the border's most common colour) weigh `1 + objectWeight`; the weighted loss
    /// keeps exact decoder gradients.
    @Test func objectPixelsWeighMore() throws {
        let images = Self.images(2, seed: 11)
        let weights = VQGANTrainer.pixelWeights(images, objectWeight: 3)
        let v = images.floats
        for b in 0..<2 {
            // The background covers 48 of the 64 pixels (a 4x4 square inside 8x8), most of the border too.
            let colours = (0..<64).map { Array(v[(b * 64 + $0) * 3..<(b * 64 + $0) * 3 + 3]) }
            let background = try #require(Dictionary(grouping: colours, by: { $0 }).max { $0.value.count < $1.value.count }?.key)
            for p in 0..<64 {
                let unlike = (0..<3).contains { abs(colours[p][$0] - background[$0]) > 8 / 255 }
                #expect(weights[b * 64 + p] == (unlike ? 4 : 1), "image \(b) pixel \(p)")
            }
        }
        #expect(weights.filter { $0 == 4 }.count >= 16 && VQGANTrainer.pixelWeights(images, objectWeight: 0).isEmpty)
        var recipe = VQGANTrainingRecipe(totalSteps: 10, quantizer: .nearest)
        recipe.l1Weight = 0
        recipe.l2Weight = 1
        recipe.objectWeight = 3
        let trainer = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 4)
        try Self.checkGradients(trainer, images: Self.images(1, seed: 5), uniforms: nil,
                                names: ["decoder.conv_out.weight", "decoder.conv_out.bias", "post_quant_conv.weight"])
    }

    @Test func trainingForwardEqualsInferenceForward() throws {
        let trainer = try VQGANTrainer(config: Self.config, recipe: VQGANTrainingRecipe(totalSteps: 10), compute: Self.compute(), seed: 6)
        let model = try trainer.model()
        let images = Self.images(2, seed: 7)
        let (z, _) = model.encodeForTraining(images)
        // encode's logits are proj(z); with the nearest quantizer's proj they pick the trainer's codes.
        #expect(maxAbsDifference(model.quantizerLogits(z: z).floats, try model.quantizerLogits(images).floats) < 1e-5)
        let codes = try trainer.lossAndGradients(images: images).codes
        #expect(try model.encode(images).integers() == codes.integers())
        let decoded = model.decodeForTraining(model.compute.embedding(codes, table: model.codebook)).images
        let reference = try model.decode(codes)
        let clamped = decoded.floats.map { (min(max($0, -1), 1) + 1) / 2 }
        #expect(maxAbsDifference(clamped, reference.floats) < 1e-5)
    }

    @Test(arguments: VQGANTrainingRecipe.Quantizer.allCases)
    func aFewStepsLowerTheLoss(_ quantizer: VQGANTrainingRecipe.Quantizer) throws {
        var recipe = VQGANTrainingRecipe(totalSteps: 20, maxLR: 3e-3, quantizer: quantizer)
        recipe.restartWindow = 10
        var trainer = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 8)
        let images = Self.images(4, seed: 9)
        var results: [VQGANStepResult] = []
        for _ in 0..<20 { results.append(try trainer.train(images: images)) }
        let first = results.prefix(3).map(\.reconstructionLoss).reduce(0, +) / 3
        let last = results.suffix(3).map(\.reconstructionLoss).reduce(0, +) / 3
        print("VQGAN \(quantizer): reconstruction loss \(first) -> \(last), PSNR \(results[0].psnr) -> \(results[19].psnr) dB, codes in window \(results[19].codesInWindow), restarted \(results.map(\.restarted).reduce(0, +))")
        #expect(last < 0.85 * first)
        #expect(results[19].psnr > results[0].psnr + 1)
    }

    /// Stopping after step 3 (inside a restart window, after one restart) and resuming gives bit-identical
    /// weights, moments, usage counts and random state to an uninterrupted run.
    @Test(arguments: VQGANTrainingRecipe.Quantizer.allCases)
    func resumeIsBitIdentical(_ quantizer: VQGANTrainingRecipe.Quantizer) throws {
        var recipe = VQGANTrainingRecipe(totalSteps: 6, quantizer: quantizer)
        recipe.restartWindow = 2
        let batches = (0..<6).map { Self.images(2, seed: 20 + UInt64($0)) }
        var straight = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 10)
        for b in batches { _ = try straight.train(images: b) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vqgan-resume-\(quantizer)-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var first = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 10)
        for b in batches.prefix(3) { _ = try first.train(images: b) }
        try first.saveCheckpoint(to: directory)
        var resumed = try VQGANTrainer(resumingFrom: directory, compute: Self.compute())
        #expect(resumed.step == 3 && resumed.windowUsage == first.windowUsage && resumed.random == first.random)
        for b in batches.suffix(3) { _ = try resumed.train(images: b) }
        #expect(resumed.parameters.names == straight.parameters.names)
        for (a, b) in zip(resumed.parameters.tensors, straight.parameters.tensors) { #expect(a.floats == b.floats) }
        for (a, b) in zip(resumed.optimizer.expAvgSq.tensors, straight.optimizer.expAvgSq.tensors) { #expect(a.floats == b.floats) }
        #expect(resumed.random == straight.random)
        // The written model file loads into VQGAN as it is.
        _ = try VQGAN(contentsOf: directory + "/vqgan.safetensors", config: Self.config, compute: Self.compute())
        let config = try JSONDecoder().decode(VQGANConfig.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/vqgan.json")))
        #expect(config == Self.config)
    }

    /// A codebook where most codes are never picked gets them back after one window.
    @Test func deadCodesAreRestarted() throws {
        var recipe = VQGANTrainingRecipe(totalSteps: 4)
        recipe.restartWindow = 2
        var trainer = try VQGANTrainer(config: Self.config, recipe: recipe, compute: Self.compute(), seed: 11)
        // Put every code but 0 far away: only code 0 is picked.
        let e = try #require(trainer.parameters.names.firstIndex(of: "quantize.embed.weight"))
        trainer.parameters.tensors[e] = Tensor((0..<(8 * 4)).map { $0 < 4 ? 0 : 100 }, shape: [8, 4])
        trainer.syncProjection()
        let images = Self.images(4, seed: 12)
        let r0 = try trainer.train(images: images)
        #expect(r0.codesInBatch == 1 && r0.restarted == 0)
        let r1 = try trainer.train(images: images)
        #expect(r1.restarted == 7)
        let r2 = try trainer.train(images: images)
        #expect(r2.codesInBatch > 1)
    }

    /// Restarts draw positions in proportion to their squared distance from their code, without replacement.
    @Test func restartPositionsFavourTheWorstServed() {
        var random = TrainingRandom(seed: 3)
        let weights: [Double] = [1, 0, 3, 0, 6]
        var firstPicks = [Int](repeating: 0, count: weights.count)
        for _ in 0..<6000 {
            let picks = VQGANTrainer.weightedSampleWithoutReplacement(weights: weights, count: 5,
                                                                      uniforms: random.uniform([5]).floats)
            #expect(Set(picks).count == 5 && Array(picks.suffix(2)) == [1, 3])
            firstPicks[picks[0]] += 1
        }
        // P(first = i) = w_i / 10.
        #expect(firstPicks[1] == 0 && firstPicks[3] == 0)
        for (i, w) in weights.enumerated() where w > 0 {
            #expect(abs(Double(firstPicks[i]) / 6000 - w / 10) < 0.03, "index \(i): \(firstPicks[i]) of 6000")
        }
        // More dead codes than positions: positions repeat rather than fail.
        #expect(VQGANTrainer.weightedSampleWithoutReplacement(weights: [0, 2], count: 3, uniforms: [0.5, 0.5]) == [1, 0, 1])
    }

    /// Where 5% of the steps is exactly one step, PyTorch's OneCycleLR formula divides by zero: two steps instead.
    @Test func schedulesAreFiniteForEveryLength() {
        for steps in 1...60 {
            for schedule in [VQGANTrainingRecipe(totalSteps: steps).schedule, CLIPTrainingRecipe(totalSteps: steps).schedule] {
                #expect((0..<steps).allSatisfy { schedule.learningRate(at: $0).isFinite }, "\(steps) steps")
            }
        }
    }

    @Test func smallF4ConfigIsExpressible() throws {
        let f4 = VQGANConfig(ch: 64, chMult: [1, 2, 2], numResBlocks: 1, attnResolutions: [], zChannels: 64, embedDim: 64,
                             nEmbed: 256, resolution: 64)
        try f4.validate()
        #expect(f4.downsamplingFactor == 4)
        let shapes = try VQGAN.parameterShapes(f4)
        #expect(!shapes.contains { $0.name.contains(".attn.") })
        #expect(shapes.contains { $0.name == "encoder.mid.attn_1.q.weight" })
    }
}
