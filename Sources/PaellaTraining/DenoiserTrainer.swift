// The Paella v1 denoiser training step of paella.py (dome272/Paella, commit 3671515): noise the tokens
// (DenoiseUNet.add_noise), drop the conditioning 10% of the time, cross-entropy with label smoothing, backward,
// clip the gradient norm, AdamW + OneCycleLR every `accumulationSteps` batches.
// Changed on purpose: the random draws come from one checkpointable generator (TrainingRandom) instead of
// torch's and numpy's global ones; the gradient is clipped exactly where upstream clips it (after every batch,
// also inside an accumulation window).
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// The settings of the training recipe; `paellaV1` is upstream's.
public struct DenoiserTrainingRecipe: Codable, Sendable, Equatable {
    public var schedule: OneCycleLR
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.01
    public var labelSmoothing: Double = 0.1
    /// `clip_grad_norm_` bound, applied after every batch.
    public var gradientClipNorm: Double = 5
    /// Probability that a batch trains the unconditional model (its conditioning zeroed).
    public var unconditionalProbability: Double = 0.1
    /// Batches whose gradients add up before one optimizer step (`accum_grad`).
    public var accumulationSteps: Int = 1
    /// Decay of an exponential moving average of the weights, updated after every optimizer step (nil: none;
    /// upstream keeps none). Short runs that stop while the learning rate is still high sample much better
    /// from the average than from the last weights. The decay ramps up as `min(decay, (1 + n) / (10 + n))`
    /// after `n` updates, so the first updates do not leave the average stuck on the initial weights.
    public var emaDecay: Double?
    /// Probability that a batch is self-corrected (`DenoiserTrainer.selfCorrected`; nil or 0: never; not upstream).
    public var selfCorrection: Double?

    public init(schedule: OneCycleLR) { self.schedule = schedule }

    /// paella.py: AdamW at PyTorch's defaults, `OneCycleLR.paella`, label smoothing 0.1, clipping at 5, 10%
    /// unconditional batches, no accumulation (lr 3e-4 over 501,000 steps for the released model).
    /// `finalLRFraction` below 1 (not upstream) anneals the rate to that fraction of its peak by the last step.
    public static func paellaV1(totalSteps: Int = 501_000, maxLR: Double = 3e-4, finetune: Bool = false,
                                finalLRFraction: Double = 1) -> DenoiserTrainingRecipe {
        DenoiserTrainingRecipe(schedule: .paella(maxLR: maxLR, totalSteps: totalSteps, finetune: finetune, finalFraction: finalLRFraction))
    }
}

/// Training past the end of the learning-rate schedule (PyTorch's OneCycleLR refuses it too).
public enum TrainingScheduleError: Error, CustomStringConvertible, Equatable {
    case finished(totalSteps: Int)

    public var description: String {
        switch self {
        case .finished(let total):
            return "The learning-rate schedule is over: all \(total) optimizer steps are done; start a new run to train further."
        }
    }
}

/// One training batch after noising: what the network sees and what it must predict.
public struct DenoiserTrainingBatch: Sendable {
    /// Clean tokens `[B, H, W]` (the targets).
    public var targets: Tensor
    /// Noised tokens `[B, H, W]` (the input).
    public var noised: Tensor
    /// Noise levels, one per item.
    public var r: [Float]
    /// `[B, c_clip]`; zeros for an unconditional batch.
    public var conditioning: Tensor
    /// Which part of the global batch these items are (data-parallel training); nil: all of it.
    public var share: BatchShare?

    public init(targets: Tensor, noised: Tensor, r: [Float], conditioning: Tensor, share: BatchShare? = nil) {
        self.targets = targets
        self.noised = noised
        self.r = r
        self.conditioning = conditioning
        self.share = share
    }

    /// The item at `position` of these items, as a batch of one (no copy).
    public func item(_ position: Int) -> DenoiserTrainingBatch {
        let one = position..<(position + 1)
        return DenoiserTrainingBatch(targets: targets.slice(one), noised: noised.slice(one), r: Array(r[one]),
                                     conditioning: conditioning.slice(one))
    }
}

/// What one batch did.
public struct DenoiserStepResult: Codable, Sendable {
    /// Batches trained before this one (upstream's `step`).
    public var step: Int
    public var loss: Double
    public var accuracy: Double
    /// Gradient norm before clipping.
    public var gradientNorm: Double
    /// The learning rate of the optimizer step this batch belongs to.
    public var learningRate: Double
    /// Whether this batch ended an accumulation window (the weights changed).
    public var updated: Bool
}

/// Trains a `Denoiser` with the Paella recipe on float32 master weights.
public struct DenoiserTrainer: Sendable {
    public let config: DenoiserConfig
    public let recipe: DenoiserTrainingRecipe
    public let compute: Compute
    /// The master weights, under upstream's state-dict names.
    public internal(set) var parameters: TrainableParameters
    public internal(set) var optimizer: AdamW
    /// Batches trained so far.
    public internal(set) var step = 0
    /// The generator of noise levels, noise and unconditional batches.
    public var random: TrainingRandom
    /// Gradients summed over the current accumulation window (nil right after an update).
    public internal(set) var accumulated: TrainableParameters?
    /// The moving average of the weights when `recipe.emaDecay` is set.
    public internal(set) var averaged: TrainableParameters?
    /// The ranks that train together (their gradients are summed every batch); one process by default.
    public private(set) var parallel = DataParallel.single
    /// Sum the batch's gradient from per-item gradients in `SampleTree`'s fixed order (`--exact-sums`), so that
    /// any number of ranks whose shares are subtrees gets one process's bits; else each rank's share goes
    /// through the network as one batch and the ranks' gradients are all-reduced. Not saved in checkpoints: a
    /// run may be resumed either way.
    public var exactSums = false

    /// Starts from `parameters` (every key of the configuration, upstream layouts).
    public init(config: DenoiserConfig, parameters: TrainableParameters, recipe: DenoiserTrainingRecipe,
                compute: Compute, seed: UInt64 = 0) throws {
        // Every key of the configuration, with its shape, and nothing else (a WeightLoadingError names the rest).
        _ = try Denoiser(config: config, weights: parameters.loader(), compute: compute)
        precondition(recipe.accumulationSteps >= 1, "DenoiserTrainer: accumulationSteps must be at least 1")
        self.config = config
        self.recipe = recipe
        self.compute = compute
        self.parameters = parameters
        optimizer = AdamW(parameters: parameters, beta1: recipe.beta1, beta2: recipe.beta2, eps: recipe.eps,
                          weightDecay: recipe.weightDecay)
        random = TrainingRandom(seed: seed)
        if let decay = recipe.emaDecay {
            precondition((0..<1).contains(decay), "DenoiserTrainer: emaDecay must be in [0, 1)")
            averaged = parameters
        }
    }

    /// Starts from a model file (safetensors or the released `torch.save` checkpoint): fine-tuning.
    public init(config: DenoiserConfig, weightsPath: String, recipe: DenoiserTrainingRecipe, compute: Compute,
                seed: UInt64 = 0) throws {
        try self.init(config: config, parameters: TrainableParameters(path: weightsPath, keys: try Denoiser.parameterShapes(config)),
                      recipe: recipe, compute: compute, seed: seed)
    }

    /// Trains as one of `parallel`'s ranks from now on, from rank 0's weights and optimizer moments.
    public mutating func join(_ parallel: DataParallel) {
        self.parallel = parallel
        parallel.broadcast(&parameters, &optimizer)
    }

    /// The learning rate of the next optimizer step.
    public var learningRate: Double { recipe.schedule.learningRate(at: optimizer.step) }

    /// The model at the current weights.
    public func model() throws -> Denoiser {
        try Denoiser(config: config, weights: parameters.loader(), compute: compute)
    }

    /// The weights a trained model is made of: the moving average when there is one, else the current weights.
    public var exportedParameters: TrainableParameters { averaged ?? parameters }

    /// The model at `exportedParameters` (for samples during training and for the model file).
    public func exportedModel() throws -> Denoiser {
        try Denoiser(config: config, weights: exportedParameters.loader(), compute: compute)
    }

    /// Upstream's batch preparation for clean tokens `[B, H, W]` and conditionings `[B, c_clip]`:
    /// `r ~ U[0, 1)`, each token replaced by a uniformly random one with probability `cos(r pi / 2)`
    /// (`add_noise`: mask = u < gamma(r), then the random tokens), and with probability
    /// `unconditionalProbability` the whole batch's conditioning zeroed. Draws in that order.
    ///
    /// Data-parallel, `tokens` are the items `share.range` of a global batch: the draws are made for the whole
    /// batch (the same on every rank and in one process) and this rank keeps its items' draws.
    public mutating func prepareBatch(tokens: Tensor, conditioning: Tensor, share: BatchShare? = nil) -> DenoiserTrainingBatch {
        precondition(tokens.rank == 3 && conditioning.shape == [tokens.shape[0], config.cClip],
                     "prepareBatch: tokens \(tokens.shape) and conditioning \(conditioning.shape) do not fit c_clip \(config.cClip)")
        let part = share ?? .whole(tokens.shape[0])
        precondition(part.range.count == tokens.shape[0], "prepareBatch: \(tokens.shape[0]) items for a share of \(part.range.count)")
        var globalShape = tokens.shape
        globalShape[0] = part.total
        let perItem = tokens.count / max(tokens.shape[0], 1), first = part.range.lowerBound
        let r = Array(random.uniform([part.total]).floats[part.range])
        let u = Array(random.uniform(globalShape).floats[(first * perItem)...].prefix(tokens.count))
        let randomTokens = Array(random.randint(config.numLabels, globalShape).integers()[(first * perItem)...].prefix(tokens.count))
        let clean = tokens.integers()
        let noised = clean.indices.map { i -> Int32 in
            u[i] < Foundation.cos(r[i / perItem] * Float.pi / 2) ? Int32(randomTokens[i]) : Int32(clean[i])
        }
        let unconditional = Double(random.uniform()) < recipe.unconditionalProbability
        return DenoiserTrainingBatch(targets: Tensor(int32: clean.map { Int32($0) }, shape: tokens.shape),
                                     noised: Tensor(int32: noised, shape: tokens.shape), r: r,
                                     conditioning: unconditional ? Tensor(zeros: conditioning.shape) : conditioning.toFloat32(),
                                     share: share)
    }

    /// Not upstream: with probability `recipe.selfCorrection`, the batch as the sampler would leave it one step
    /// later. The model (current weights, no guidance) predicts the noised tokens at their level `r`, every
    /// position is drawn from that prediction at a temperature of 0.8 at full noise falling linearly to 0.3 (the
    /// sampling defaults of the bundled model when this was written; fixed, so a recipe's run does not depend on a
    /// model folder's settings), and the draw is renoised with fresh random tokens to a later
    /// level `r' = r + (1 - r) v`, `v ~ U[0, 1)`; the targets stay the clean tokens.
    ///
    /// Why: in upstream's noising every token the network sees is either right or uniformly random, so it learns
    /// to trust any token that looks plausible. While sampling, its own early draws are plausible and often wrong
    /// (a ragged blob where the prompt asks for a square), and it keeps them. Trained on its own draws, it must
    /// correct them, and for that it has to read the attribute from the prompt.
    ///
    /// Draws in this order, for the whole batch (data-parallel ranks keep their items' draws): the choice, the
    /// Gumbel uniforms, `v`, the renoising uniforms, the random tokens.
    public mutating func selfCorrected(_ batch: DenoiserTrainingBatch) throws -> DenoiserTrainingBatch {
        guard let probability = recipe.selfCorrection, probability > 0, Double(random.uniform()) < probability else { return batch }
        let share = batch.share ?? .whole(batch.r.count)
        let (items, labels) = (batch.r.count, config.numLabels)
        let perItem = batch.noised.count / max(items, 1), first = share.range.lowerBound
        var globalShape = batch.noised.shape
        globalShape[0] = share.total
        let gumbel = random.uniform(globalShape + [labels]).floats[(first * perItem * labels)...].prefix(batch.noised.count * labels)
        let v = Array(random.uniform([share.total]).floats[share.range])
        let u = Array(random.uniform(globalShape).floats[(first * perItem)...].prefix(batch.noised.count))
        let randomTokens = Array(random.randint(labels, globalShape).integers()[(first * perItem)...].prefix(batch.noised.count))
        let logits = try model()(batch.noised, conditioning: batch.conditioning, r: batch.r).reshaped([items, perItem, labels])
        let uniforms = Tensor(Array(gumbel), shape: [items, perItem, labels])
        var drawn = [Int32]()
        drawn.reserveCapacity(batch.noised.count)
        for item in 0..<items {
            let temperature = 0.8 - 0.5 * batch.r[item]
            let one = item..<(item + 1)
            let tokens = compute.gumbelArgmax(logits: logits.slice(one).reshaped([perItem, labels]),
                                              uniforms: uniforms.slice(one).reshaped([perItem, labels]), temperature: temperature)
            drawn += tokens.integers().map { Int32(truncatingIfNeeded: $0) }
        }
        let later = batch.r.indices.map { batch.r[$0] + (1 - batch.r[$0]) * v[$0] }
        let noised = drawn.indices.map { i -> Int32 in
            u[i] < Foundation.cos(later[i / perItem] * Float.pi / 2) ? Int32(randomTokens[i]) : drawn[i]
        }
        return DenoiserTrainingBatch(targets: batch.targets, noised: Tensor(int32: noised, shape: batch.noised.shape), r: later,
                                     conditioning: batch.conditioning, share: batch.share)
    }

    /// The loss, accuracy and gradients (upstream names and layouts) of one batch at the current weights,
    /// with the loss scaled by `scale` for the gradient.
    public func lossAndGradients(_ batch: DenoiserTrainingBatch, scale: Double = 1) throws -> (loss: TokenLoss, gradients: TrainableParameters) {
        try lossAndGradients(batch, scale: scale, model: try model())
    }

    func lossAndGradients(_ batch: DenoiserTrainingBatch, scale: Double, model: Denoiser) throws -> (loss: TokenLoss, gradients: TrainableParameters) {
        let (logits, activations) = model.forwardForTraining(batch.noised, conditioning: batch.conditioning, r: batch.r)
        let loss = compute.tokenCrossEntropy(logits: logits, targets: batch.targets, labelSmoothing: recipe.labelSmoothing, scale: scale)
        let grads = model.backward(activations, logitsGradient: loss.logitsGradient)
        let tensors = parameters.names.map { name -> Tensor in
            guard let g = grads[name] else { preconditionFailure("DenoiserTrainer: the backward pass gave no gradient for \(name)") }
            return g
        }
        return (loss, TrainableParameters(names: parameters.names, tensors: tensors))
    }

    /// `--exact-sums`: the sum over this rank's items (all of them in one process) of each item's gradient of
    /// its own mean loss, with its loss and accuracy, each item alone through `lossAndGradients`, added in the
    /// batch's `SampleTree`. The items' tokens all count the same, so the batch's mean loss is the items' mean.
    public func sampleSums(_ batch: DenoiserTrainingBatch) throws -> SampleSums {
        let model = try model()
        let share = batch.share ?? .whole(batch.r.count)
        return try SampleSums.tree(over: share) { position in
            let (loss, gradients) = try lossAndGradients(batch.item(position - share.range.lowerBound), scale: 1, model: model)
            return SampleSums(gradients: gradients, statistics: [loss.loss, loss.accuracy])
        }
    }

    /// `--exact-sums`: the whole batch's mean loss and accuracy and its gradient (scaled for accumulation, as
    /// `lossAndGradients` scales it), on every rank with the bits of one process.
    func exactLossAndGradients(_ batch: DenoiserTrainingBatch) throws -> (statistics: [Double], gradients: TrainableParameters) {
        let share = batch.share ?? .whole(batch.r.count)
        var sums = try sampleSums(batch)
        parallel.combineExactly(&sums, share: share)
        sums.gradients.scale(by: Float(1 / (Double(share.total) * Double(recipe.accumulationSteps))))
        return (sums.statistics.map { $0 / Double(share.total) }, sums.gradients)
    }

    /// Trains on one batch: forward, loss, backward, clipping; every `accumulationSteps` batches an AdamW step
    /// at the schedule's learning rate (and beta1). Data-parallel, the batch is this rank's share: its gradient,
    /// weighted by the share, is summed over the ranks before clipping, so every rank clips and updates with
    /// the whole batch's gradient; loss and accuracy are the whole batch's too. With `exactSums` the gradient is
    /// added up item by item in a fixed tree instead (`exactLossAndGradients`).
    public mutating func train(_ batch: DenoiserTrainingBatch) throws -> DenoiserStepResult {
        guard optimizer.step < recipe.schedule.totalSteps else {
            throw TrainingScheduleError.finished(totalSteps: recipe.schedule.totalSteps)
        }
        let lr = learningRate
        var total: TrainableParameters  // the only reference to these gradients: clipping scales them in place
        let whole: [Double]  // the batch's loss and accuracy
        if exactSums {
            (whole, total) = try exactLossAndGradients(batch)
        } else {
            let fraction = batch.share?.fraction ?? 1
            let loss: TokenLoss
            (loss, total) = try lossAndGradients(batch, scale: 1 / Double(recipe.accumulationSteps))
            parallel.sum(&total, weight: fraction)
            whole = parallel.sum([loss.loss * fraction, loss.accuracy * fraction])
        }
        if let previous = accumulated {
            accumulated = nil
            total.add(previous)
        }
        let norm = total.clipNorm(recipe.gradientClipNorm)
        let update = (step + 1) % recipe.accumulationSteps == 0
        if update {
            optimizer.update(&parameters, gradients: total, lr: lr, beta1: recipe.schedule.beta1(at: optimizer.step),
                             pool: compute.pool)
            accumulated = nil
            if let decay = recipe.emaDecay, var average = averaged {
                averaged = nil  // the only reference while it is updated in place
                let n = Double(optimizer.step - 1)
                average.moveTowards(parameters, keeping: Float(min(decay, (1 + n) / (10 + n))))
                averaged = average
            }
        } else {
            accumulated = total
        }
        defer { step += 1 }
        return DenoiserStepResult(step: step, loss: whole[0], accuracy: whole[1], gradientNorm: norm,
                                  learningRate: lr, updated: update)
    }
}

extension TrainableParameters {
    /// `self = keeping * self + (1 - keeping) * other`, tensor by tensor (same names and shapes).
    mutating func moveTowards(_ other: TrainableParameters, keeping: Float) {
        precondition(names == other.names, "TrainableParameters: moving average over different parameters")
        for i in tensors.indices {
            other.tensors[i].withFloats { o in
                tensors[i].withMutableFloats { t in for j in 0..<t.count { t[j] = keeping * t[j] + (1 - keeping) * o[j] } }
            }
        }
    }

    /// Wraps tensors without copying (they must be float32 and owned by the caller).
    init(names: [String], tensors: [Tensor]) {
        precondition(names.count == tensors.count, "TrainableParameters: \(names.count) names for \(tensors.count) tensors")
        self.names = names
        self.tensors = tensors
    }
}
