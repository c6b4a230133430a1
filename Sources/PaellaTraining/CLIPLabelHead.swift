// An auxiliary multi-label classifier on CLIP's normalised embeddings, trained with the towers (not an upstream
// part: OpenCLIP trains with the contrastive loss alone). Where the data says what each image holds (the shapes
// dataset's scenes), the label loss asks both towers to put every attribute in the embedding, which the
// contrastive loss only asks for when a batch happens to hold two images that differ in that attribute alone.
// The head is shared by the two towers, so an attribute points the same way in image and text embeddings. It is
// dropped from the model file: the towers are what a model folder keeps.
//
// For an embedding x (L2-normalised, E values) and labels y in {0, 1}^K:
//   z = s W x + b            (W [K, E], b [K], s = `logitScale`, a fixed temperature so that unit-length inputs
//                             reach confident logits with small weights)
//   loss = w / N  Σ_rows Σ_k  softplus(z_k) - y_k z_k      (binary cross-entropy, summed over labels, averaged
//                                                             over the N rows: images and captions alike)
//   dz = w / N (σ(z) - y);   dx = s Wᵀ dz;   dW = s dz xᵀ;   db = dz.
import Foundation
import PaellaCore

/// A linear multi-label head over CLIP embeddings, with its own AdamW state.
public struct CLIPLabelHead: Sendable {
    /// Multiplies `W x` (see the file comment).
    public static let logitScale: Float = 10
    /// The label loss's weight against the contrastive loss.
    public let lossWeight: Double
    public let labelCount: Int
    public let embedDim: Int
    /// The head reads the caption embeddings alone, not the images' too. The text tower then must name every
    /// attribute the caption states, while the image tower is left to the contrastive loss: where the vision tower
    /// cannot see an attribute (small shapes at 8x8 patches), the shared head otherwise lets the text embedding
    /// stay as vague about it as the image one, and a denoiser conditioned on text cannot draw it.
    public let textOnly: Bool
    /// "weight" `[K, E]` and "bias" `[K]`, starting at zero.
    public internal(set) var parameters: TrainableParameters
    var optimizer: AdamW

    /// A head for `labelCount` labels over `embedDim`-wide embeddings, with the recipe's AdamW betas and eps and
    /// no weight decay.
    public init(labelCount: Int, embedDim: Int, lossWeight: Double, textOnly: Bool = false, recipe: CLIPTrainingRecipe) {
        precondition(labelCount > 0 && embedDim > 0, "CLIPLabelHead: no labels or no embedding")
        self.textOnly = textOnly
        self.labelCount = labelCount
        self.embedDim = embedDim
        self.lossWeight = lossWeight
        parameters = TrainableParameters([(name: "weight", tensor: Tensor(zeros: [labelCount, embedDim])),
                                          (name: "bias", tensor: Tensor(zeros: [labelCount]))])
        optimizer = AdamW(parameters: parameters, beta1: recipe.beta1, beta2: recipe.beta2, eps: recipe.eps, weightDecay: 0)
    }

    /// What the head made of a batch of rows.
    public struct Evaluation: Sendable {
        /// The weighted loss (`lossWeight` included).
        public var loss: Double
        /// Rows whose every label is predicted right (logit above 0 exactly where the label is 1).
        public var exactRows: Int
        /// d loss / d x, `[N, E]` row-major.
        public var inputGradient: [Float]
        public var gradients: TrainableParameters
    }

    /// The loss of `rows` (`[N, E]` row-major, normally unit length) against `labels` (`[N, K]`, 0 or 1), and its
    /// gradients.
    public func evaluate(rows x: [Float], labels y: [Float]) -> Evaluation {
        let (k, e) = (labelCount, embedDim)
        let n = x.count / e
        precondition(x.count == n * e && y.count == n * k, "CLIPLabelHead: \(x.count) inputs and \(y.count) labels for \(k) labels over \(e) values")
        let w = parameters.tensors[0].floats, b = parameters.tensors[1].floats
        let s = Self.logitScale
        var loss = 0.0, exact = 0
        var dx = [Float](repeating: 0, count: n * e), dw = [Float](repeating: 0, count: k * e), db = [Float](repeating: 0, count: k)
        let perRow = lossWeight / Double(n)
        for r in 0..<n {
            var allRight = true
            for j in 0..<k {
                var dot: Float = 0
                for i in 0..<e { dot += w[j * e + i] * x[r * e + i] }
                let z = Double(s * dot + b[j]), label = Double(y[r * k + j])
                // softplus(z) - y z, computed without overflow for large |z|.
                loss += perRow * (max(z, 0) + Foundation.log1p(Foundation.exp(-abs(z))) - label * z)
                if (z > 0) != (label > 0.5) { allRight = false }
                let dz = Float(perRow * (1 / (1 + Foundation.exp(-z)) - label))
                db[j] += dz
                for i in 0..<e {
                    dx[r * e + i] += s * w[j * e + i] * dz
                    dw[j * e + i] += s * dz * x[r * e + i]
                }
            }
            if allRight { exact += 1 }
        }
        let gradients = TrainableParameters([(name: "weight", tensor: Tensor(dw, shape: [k, e])), (name: "bias", tensor: Tensor(db, shape: [k]))])
        return Evaluation(loss: loss, exactRows: exact, inputGradient: dx, gradients: gradients)
    }

    /// One AdamW step of the head.
    public mutating func update(_ gradients: TrainableParameters, lr: Double) {
        optimizer.update(&parameters, gradients: gradients, lr: lr)
    }
}

/// The head as a checkpoint's `trainer.json` keeps it (a few thousand values: small enough for JSON, which
/// round-trips floats exactly).
public struct CLIPLabelHeadState: Codable, Sendable, Equatable {
    public var lossWeight: Double
    /// Absent in checkpoints written before the option existed: both towers.
    public var textOnly: Bool?
    public var labelCount: Int
    public var embedDim: Int
    public var weight: [Float], bias: [Float]
    public var expAvg: [Float], expAvgSq: [Float]
    public var optimizerStep: Int

    init(_ head: CLIPLabelHead) {
        (lossWeight, labelCount, embedDim) = (head.lossWeight, head.labelCount, head.embedDim)
        textOnly = head.textOnly
        (weight, bias) = (head.parameters.tensors[0].floats, head.parameters.tensors[1].floats)
        expAvg = head.optimizer.expAvg.tensors.flatMap(\.floats)
        expAvgSq = head.optimizer.expAvgSq.tensors.flatMap(\.floats)
        optimizerStep = head.optimizer.step
    }

    /// The head again; throws when the sizes disagree (a damaged or hand-edited checkpoint).
    func head(recipe: CLIPTrainingRecipe, path: String) throws -> CLIPLabelHead {
        let (k, e) = (labelCount, embedDim)
        guard k > 0, e > 0, k <= 1 << 16, e <= 1 << 16, weight.count == k * e, bias.count == k,
              expAvg.count == k * e + k, expAvgSq.count == k * e + k, optimizerStep >= 0 else {
            throw TrainingCheckpointError.unreadable(path: path, reason: "its label head has inconsistent sizes")
        }
        var head = CLIPLabelHead(labelCount: k, embedDim: e, lossWeight: lossWeight, textOnly: textOnly ?? false, recipe: recipe)
        head.parameters.tensors = [Tensor(weight, shape: [k, e]), Tensor(bias, shape: [k])]
        head.optimizer.expAvg.tensors = [Tensor(Array(expAvg[..<(k * e)]), shape: [k, e]), Tensor(Array(expAvg[(k * e)...]), shape: [k])]
        head.optimizer.expAvgSq.tensors = [Tensor(Array(expAvgSq[..<(k * e)]), shape: [k, e]), Tensor(Array(expAvgSq[(k * e)...]), shape: [k])]
        head.optimizer.step = optimizerStep
        return head
    }
}

/// What a CLIP checkpoint holds besides the towers' weights and moments.
public struct CLIPCheckpointExtra: Codable, Sendable, Equatable {
    public var labelHead: CLIPLabelHeadState?
}
