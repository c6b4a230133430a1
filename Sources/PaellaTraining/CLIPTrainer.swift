// Trains OpenCLIP's two towers with CLIP's symmetric contrastive loss (open_clip/loss.py `ClipLoss`, one
// process): features L2-normalised, `logits = exp(logit_scale) * image @ textᵀ`, the loss the mean of the
// cross-entropies of each image over the texts and each text over the images, the targets on the diagonal.
// As open_clip/train.py: `logit_scale` starts at log(1 / 0.07) and is clamped to [0, log 100] after every step;
// AdamW (betas 0.9/0.98, eps 1e-6) decays only the matrices (not gains, biases, embeddings or logit_scale);
// warm-up then cosine (here OneCycleLR). Changed on purpose: the towers start from OpenCLIP's
// `init_parameters` recipe for both (upstream leaves the vision blocks at PyTorch's defaults).
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// The settings of a CLIP training run.
public struct CLIPTrainingRecipe: Codable, Sendable, Equatable {
    public var schedule: OneCycleLR
    public var beta1: Double = 0.9
    public var beta2: Double = 0.98
    public var eps: Double = 1e-6
    public var weightDecay: Double = 0.2
    public var gradientClipNorm: Double = 1
    /// `logit_scale` is clamped to [0, log(maxLogitScale)] after each step (OpenCLIP: 100).
    public var maxLogitScale: Double = 100
    /// Not upstream: the text tower's weights stay as they are (nil in runs from before the option: false), and
    /// only the vision tower and `logit_scale` train, against its fixed caption embeddings. What a denoiser trained
    /// on those embeddings needs when the vision tower alone is improved (LiT's locked tower, on the text side).
    public var frozenText: Bool?

    /// Warm-up over the first 5% of the steps to `maxLR`, then cosine down.
    public init(totalSteps: Int, maxLR: Double = 5e-4) {
        schedule = OneCycleLR(maxLR: maxLR, totalSteps: totalSteps, pctStart: OneCycleLR.warmupFraction(totalSteps),
                              divFactor: 25, finalDivFactor: 100,
                              annealStrategy: .cos, cycleMomentum: false)
    }

    /// OpenCLIP's weight-decay rule: no decay for parameters with fewer than two dimensions or whose name
    /// contains "bn", "ln", "bias", "embedding" or "logit_scale".
    public static func decays(_ name: String, shape: [Int]) -> Bool {
        !(shape.count < 2 || ["bn", "ln", "bias", "embedding", "logit_scale"].contains { name.contains($0) })
    }
}

/// What one step did.
public struct CLIPStepResult: Codable, Sendable {
    public var step: Int
    public var loss: Double
    /// Fraction of images whose best text is their own, and of texts whose best image is their own.
    public var imageToTextAccuracy: Double
    public var textToImageAccuracy: Double
    /// exp(logit_scale) used in this step.
    public var logitScale: Double
    public var gradientNorm: Double
    public var learningRate: Double
    /// With a label head: its weighted loss, and the share of images and captions whose every label it got right.
    public var labelLoss: Double?
    public var labelAccuracy: Double?
}

/// The loss, gradients and retrieval accuracies of one batch.
public struct CLIPBatchLoss: Sendable {
    /// The contrastive loss (the label loss is apart, in `labels`).
    public var loss: Double
    public var imageToTextAccuracy: Double
    public var textToImageAccuracy: Double
    public var gradients: TrainableParameters
    /// With a label head and labels: what the head made of the batch, its gradients included.
    public var labels: CLIPLabelHead.Evaluation?
}

/// Trains both towers of a `CLIPModel` and `logit_scale` on float32 master weights (OpenCLIP names).
public struct CLIPTrainer: Sendable {
    public let config: CLIPConfig
    public let recipe: CLIPTrainingRecipe
    public let compute: Compute
    public internal(set) var parameters: TrainableParameters
    public internal(set) var optimizer: AdamW
    public internal(set) var step = 0
    /// Initialisation and, for the CLI, batch order.
    public var random: TrainingRandom
    /// An auxiliary label classifier on both towers' embeddings or the captions' alone (`CLIPLabelHead`), when the
    /// run has one.
    public internal(set) var labelHead: CLIPLabelHead?
    /// The ranks this trainer shares each batch with (`join`).
    public private(set) var parallel = DataParallel.single

    /// Trains as one of `parallel`'s ranks from now on, from rank 0's weights and optimizer moments. The contrastive
    /// loss compares every image of the global batch with every caption, so the ranks exchange their embeddings
    /// (a few kilobytes), not only their gradients.
    public mutating func join(_ parallel: DataParallel) {
        self.parallel = parallel
        parallel.broadcast(&parameters, &optimizer)
    }

    /// Adds a label head for `count` labels whose loss is weighted `lossWeight` (a new run; a resumed run gets
    /// its head back from the checkpoint).
    public mutating func addLabelHead(count: Int, lossWeight: Double, textOnly: Bool = false) {
        labelHead = CLIPLabelHead(labelCount: count, embedDim: config.embedDim, lossWeight: lossWeight, textOnly: textOnly, recipe: recipe)
    }

    /// The tower parameters (OpenCLIP order) and `logit_scale`, as training holds them.
    public static func parameterShapes(_ config: CLIPConfig) throws -> [(name: String, shape: [Int])] {
        try CLIPModel.parameterShapes(config) + [(name: "logit_scale", shape: [])]
    }

    /// Starts from `parameters` (every tower key of `config` plus `logit_scale`).
    public init(config: CLIPConfig, parameters: TrainableParameters, recipe: CLIPTrainingRecipe, compute: Compute,
                seed: UInt64 = 0) throws {
        _ = try CLIPModel(weights: parameters.loader(), config: config, towers: .both)
        precondition(parameters["logit_scale"]?.count == 1, "CLIPTrainer: the parameters have no scalar logit_scale")
        self.config = config
        self.recipe = recipe
        self.compute = compute
        self.parameters = parameters
        // Weight decay is applied by the trainer to the matrices only (OpenCLIP's parameter groups).
        optimizer = AdamW(parameters: parameters, beta1: recipe.beta1, beta2: recipe.beta2, eps: recipe.eps, weightDecay: 0)
        random = TrainingRandom(seed: seed)
    }

    /// Starts from OpenCLIP's initialisation (`CLIP.init_parameters`, `VisionTransformer`): token embedding
    /// N(0, 0.02), text positions N(0, 0.01); per block in_proj N(0, W^-0.5), out_proj and c_proj
    /// N(0, W^-0.5 (2 layers)^-0.5), c_fc N(0, (2W)^-0.5), biases 0; text_projection N(0, W^-0.5); vision class
    /// embedding, positions and proj N(0, W^-0.5); the patch conv uniform in ±1/sqrt(fan_in); norms 1 and 0;
    /// logit_scale log(1 / 0.07).
    public init(config: CLIPConfig, recipe: CLIPTrainingRecipe, compute: Compute, seed: UInt64 = 0) throws {
        var random = TrainingRandom(seed: seed ^ 0x434C_4950)
        let named = try Self.parameterShapes(config).map { key -> (name: String, tensor: Tensor) in
            let vision = key.name.hasPrefix("visual.")
            let width = Float(vision ? config.vision.width : config.text.width)
            let layers = Float(vision ? config.vision.layers : config.text.layers)
            let attnStd = 1 / width.squareRoot(), projStd = attnStd / (2 * layers).squareRoot(), fcStd = 1 / (2 * width).squareRoot()
            let n = key.name
            func normal(_ std: Float) -> Tensor { random.normal(key.shape, std: std) }
            switch true {
            case n == "logit_scale": return (n, Tensor([Float(Foundation.log(1 / 0.07))], shape: []))
            case n == "token_embedding.weight": return (n, normal(0.02))
            case n == "positional_embedding": return (n, normal(0.01))
            case n == "text_projection": return (n, normal(attnStd))
            case n == "visual.class_embedding" || n == "visual.positional_embedding" || n == "visual.proj": return (n, normal(attnStd))
            case n == "visual.conv1.weight":
                return (n, random.symmetric(key.shape, bound: 1 / Float(key.shape[1...].reduce(1, *)).squareRoot()))
            case n.hasSuffix("attn.in_proj_weight"): return (n, normal(attnStd))
            case n.hasSuffix("attn.out_proj.weight") || n.hasSuffix("mlp.c_proj.weight"): return (n, normal(projStd))
            case n.hasSuffix("mlp.c_fc.weight"): return (n, normal(fcStd))
            case n.contains("ln") && n.hasSuffix(".weight"): return (n, Tensor(repeating: 1, shape: key.shape))
            default: return (n, Tensor(zeros: key.shape))  // biases
            }
        }
        try self.init(config: config, parameters: TrainableParameters(named), recipe: recipe, compute: compute, seed: seed)
    }

    public var learningRate: Double { recipe.schedule.learningRate(at: optimizer.step) }

    /// The towers at the current weights.
    public func model() throws -> CLIPModel {
        try CLIPModel(weights: parameters.loader(), config: config, towers: .both)
    }

    // MARK: Loss and gradients

    /// The loss, accuracies and gradients of a batch of matching pairs: `images` `[B, S, S, 3]` normalised as
    /// the vision tower expects (`CLIPImagePreprocessing.normalized`) and `tokens` `[B, L]`
    /// (`CLIPTokenizer.contextTokens`); item i of each is a pair. With a label head, `labels` `[B, K]` (0 or 1) says
    /// what each pair shows, and the head's loss on both embeddings of a pair joins the towers' gradients.
    /// `backward: false` only evaluates the loss.
    ///
    /// Data-parallel, `images` and `tokens` are the pairs `share.range` of the global batch (`labels` stays the
    /// global batch's): the ranks gather their normalised embeddings, every rank computes the whole batch's loss
    /// and the gradient of its own embeddings, and backpropagates through its own pairs only. The tower gradients
    /// are then this rank's part of the sum (`train` adds the parts up); `logit_scale`'s and the label head's,
    /// which come from the gathered batch, are whole on every rank.
    public func lossAndGradients(images: Tensor, tokens: Tensor, labels: Tensor? = nil, share: BatchShare? = nil,
                                 backward: Bool = true) throws -> CLIPBatchLoss {
        let model = try model()
        guard let text = model.text, let vision = model.vision, let logScale = parameters["logit_scale"]?.floats.first else {
            preconditionFailure("CLIPTrainer: both towers and logit_scale are needed")
        }
        let part = share ?? .whole(images.shape[0])
        precondition(images.shape[0] == part.range.count && tokens.shape.first == part.range.count,
                     "CLIPTrainer: \(images.shape[0]) images and \(tokens.shape.first ?? 0) captions for a share of \(part.range.count)")
        let batch = part.total
        let textFrozen = recipe.frozenText == true
        let (imageEmbeddings, visionRecord) = vision.forwardForTraining(images, compute: compute)  // [b, E]
        let textEmbeddings: Tensor, textRecord: CLIPTextRecord?                                    // [b, E]
        if textFrozen {
            (textEmbeddings, textRecord) = (text(tokens, compute: compute), nil)
        } else {
            let forward = text.forwardForTraining(tokens, compute: compute)
            (textEmbeddings, textRecord) = (forward.embeddings, forward.record)
        }
        let (ownU, imageNorms) = normalizedRows(imageEmbeddings), (ownT, textNorms) = normalizedRows(textEmbeddings)
        let u = parallel.gather(ownU, share: part), t = parallel.gather(ownT, share: part)        // [B, E]
        let scale = Foundation.exp(logScale)
        // logits[i, j] = scale * u_i · t_j  [B, B]
        let similarity = compute.linear(u, LinearWeights(weight: t, layout: .outIn, bias: nil)).floats
        var loss = 0.0, imageCorrect = 0, textCorrect = 0
        var dLogits = [Float](repeating: 0, count: batch * batch)
        for direction in 0..<2 {  // 0: each image over the texts (rows); 1: each text over the images (columns)
            for i in 0..<batch {
                let row = (0..<batch).map { j in Double(scale * (direction == 0 ? similarity[i * batch + j] : similarity[j * batch + i])) }
                let m = row.max() ?? 0
                let sum = row.reduce(0) { $0 + Foundation.exp($1 - m) }
                loss += (m + Foundation.log(sum) - row[i]) / Double(2 * batch)
                if row.indices.max(by: { row[$0] < row[$1] }) == i { if direction == 0 { imageCorrect += 1 } else { textCorrect += 1 } }
                for j in 0..<batch {
                    let g = (Foundation.exp(row[j] - m) / sum - (i == j ? 1 : 0)) / Double(2 * batch)
                    dLogits[direction == 0 ? i * batch + j : j * batch + i] += Float(g)
                }
            }
        }
        // The label head sees the image rows then the caption rows, each pair with its labels twice (or the caption
        // rows alone).
        var labelEvaluation: CLIPLabelHead.Evaluation?
        if let labelHead, let labels {
            precondition(labels.shape == [batch, labelHead.labelCount], "CLIPTrainer: labels of shape \(labels.shape) for \(batch) pairs and \(labelHead.labelCount) labels")
            labelEvaluation = labelHead.textOnly ? labelHead.evaluate(rows: t.floats, labels: labels.floats)
                : labelHead.evaluate(rows: u.floats + t.floats, labels: labels.floats + labels.floats)
        }
        let result = { (g: TrainableParameters) in
            CLIPBatchLoss(loss: loss, imageToTextAccuracy: Double(imageCorrect) / Double(batch),
                          textToImageAccuracy: Double(textCorrect) / Double(batch), gradients: g, labels: labelEvaluation)
        }
        if !backward { return result(TrainableParameters([])) }
        // d logit_scale = scale * sum(dLogits * similarity); du = scale dLogits t; dt = scale dLogitsᵀ u.
        let dLogitScale = Double(scale) * zip(dLogits, similarity).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let dl = compute.scale(Tensor(dLogits, shape: [batch, batch]), by: scale)
        var du = compute.linear(dl, LinearWeights(weight: t, layout: .inOut, bias: nil))                     // [B, E]
        var dt = compute.linear(dl.permuted([1, 0]), LinearWeights(weight: u, layout: .inOut, bias: nil))     // [B, E]
        if let dLabels = labelEvaluation?.inputGradient, labelHead?.textOnly == true {
            dt = compute.add(dt, Tensor(dLabels, shape: dt.shape))
        } else if let dLabels = labelEvaluation?.inputGradient {
            let half = dLabels.count / 2
            du = compute.add(du, Tensor(Array(dLabels[..<half]), shape: du.shape))
            dt = compute.add(dt, Tensor(Array(dLabels[half...]), shape: dt.shape))
        }
        // This rank's rows: the gradient of its own embeddings through the whole batch's loss.
        let own = part.range
        (du, dt) = (du.slice(own.lowerBound..<own.upperBound), dt.slice(own.lowerBound..<own.upperBound))
        var grads = vision.backward(visionRecord, outputGradient: normalizedRowsBackward(ownU, imageNorms, du), compute: compute)
        if let textRecord {  // a frozen text tower's gradients stay zero
            grads.merge(text.backward(textRecord, outputGradient: normalizedRowsBackward(ownT, textNorms, dt), compute: compute)) { a, _ in a }
        }
        // Whole on every rank: rank 0 alone contributes it to the sum over ranks (x + 0 = x exactly).
        grads["logit_scale"] = Tensor([parallel.isMain ? Float(dLogitScale) : 0], shape: [])
        let tensors = zip(parameters.names, parameters.tensors).map { name, p in grads[name] ?? Tensor(zeros: p.shape) }
        return result(TrainableParameters(names: parameters.names, tensors: tensors))
    }

    /// Rows of `x` `[B, E]` divided by their 2-norms (F.normalize), and the norms.
    func normalizedRows(_ x: Tensor) -> (Tensor, [Float]) {
        let e = x.shape[1]
        let v = x.floats
        let norms = (0..<x.shape[0]).map { i in max(v[(i * e)..<((i + 1) * e)].reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12) }
        return (Tensor(v.indices.map { v[$0] / norms[$0 / e] }, shape: x.shape), norms)
    }

    /// Backward of `normalizedRows`: `dx = (du - u (u · du)) / |x|` per row.
    func normalizedRowsBackward(_ u: Tensor, _ norms: [Float], _ du: Tensor) -> Tensor {
        let e = u.shape[1]
        let uv = u.floats, g = du.floats
        var out = [Float](repeating: 0, count: uv.count)
        for i in 0..<u.shape[0] {
            let r = (i * e)..<((i + 1) * e)
            let dot = r.reduce(0) { $0 + uv[$1] * g[$1] }
            for j in r { out[j] = (g[j] - uv[j] * dot) / norms[i] }
        }
        return Tensor(out, shape: u.shape)
    }

    // MARK: Training

    /// One step on a batch of pairs: loss, backward, the sum over ranks, clipping, weight decay on the matrices,
    /// AdamW, and the logit-scale clamp; with a label head and `labels`, an AdamW step of the head too (unclipped).
    /// Data-parallel, `images` and `tokens` are the pairs `share.range` of the global batch (see `lossAndGradients`).
    public mutating func train(images: Tensor, tokens: Tensor, labels: Tensor? = nil, share: BatchShare? = nil) throws -> CLIPStepResult {
        let lr = learningRate
        let logitScale = Double(parameters["logit_scale"]?.floats.first ?? 0)
        let batch = try lossAndGradients(images: images, tokens: tokens, labels: labels, share: share)
        if let evaluation = batch.labels { labelHead?.update(evaluation.gradients, lr: lr) }
        var gradients = batch.gradients
        parallel.sum(&gradients, weight: 1)
        let norm = gradients.clipNorm(recipe.gradientClipNorm)
        let decay = Float(1 - lr * recipe.weightDecay)
        for (i, name) in parameters.names.enumerated() where CLIPTrainingRecipe.decays(name, shape: parameters.tensors[i].shape)
            && !(recipe.frozenText == true && CLIPModel.isTextKey(name)) {
            parameters.tensors[i].withMutableFloats { p in for j in 0..<p.count { p[j] *= decay } }
        }
        // A frozen tower's gradients and moments are zero, so AdamW leaves it exactly as it is.
        optimizer.update(&parameters, gradients: gradients, lr: lr)
        if let i = parameters.names.firstIndex(of: "logit_scale") {
            let top = Float(Foundation.log(recipe.maxLogitScale))
            parameters.tensors[i].withMutableFloats { p in p[0] = min(max(p[0], 0), top) }
        }
        defer { step += 1 }
        return CLIPStepResult(step: step, loss: batch.loss, imageToTextAccuracy: batch.imageToTextAccuracy,
                              textToImageAccuracy: batch.textToImageAccuracy, logitScale: exp(logitScale),
                              gradientNorm: norm, learningRate: lr, labelLoss: batch.labels?.loss,
                              labelAccuracy: batch.labels.map {
                                  Double($0.exactRows) / Double((labelHead?.textOnly == true ? 1 : 2) * (share?.total ?? images.shape[0])) })
    }

    // MARK: Checkpoints

    public var checkpointExtra: CLIPCheckpointExtra? { labelHead.map { CLIPCheckpointExtra(labelHead: CLIPLabelHeadState($0)) } }
    public mutating func restore(_ state: ResumedTraining<CLIPCheckpointExtra>) throws {
        (optimizer, step, random) = (state.optimizer, state.step, state.random)
        labelHead = try state.extra?.labelHead?.head(recipe: recipe, path: state.statePath)
    }
}

extension CLIPTrainer: CheckpointedTrainer {
    public static let checkpointKind = "clip"
}
