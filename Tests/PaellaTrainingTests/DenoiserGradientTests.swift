import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import PaellaTraining
import Testing

/// The whole denoiser's backward pass against central differences, on a tiny random configuration that has
/// every layer kind: embedding, strided 4x4 convolution, reflection-padded depthwise convolutions, modulated
/// layer norms, MLPs with GELU, layer scales, a skip concatenation, a transposed convolution, the classifier.
@Suite struct DenoiserGradientTests {
    static let config = DenoiserConfig(numLabels: 7, cHidden: 16, cClip: 5, cR: 6, downLevels: [1, 2], upLevels: [2, 1])

    static func setup(seed: UInt64) throws -> (params: TrainableParameters, x: Tensor, c: Tensor, r: [Float], weights: Tensor) {
        var rng = TestRandom(seed: seed)
        let params = TrainableParameters(try Denoiser.parameterShapes(config).map { (name: $0.name, tensor: rng.tensor($0.shape, -0.5, 0.5)) })
        let x = Tensor(int32: (0..<(2 * 4 * 6)).map { _ in Int32(rng.int(0...(config.numLabels - 1))) }, shape: [2, 4, 6])
        let c = rng.tensor([2, config.cClip])
        let r: [Float] = [0.3, 0.8]
        let weights = rng.tensor([2, 4, 6, config.numLabels])
        return (params, x, c, r, weights)
    }

    @Test func trainingForwardEqualsInferenceForward() throws {
        let s = try Self.setup(seed: 1)
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        let model = try Denoiser(config: Self.config, weights: s.params.loader(), compute: compute)
        #expect(model.forwardForTraining(s.x, conditioning: s.c, r: s.r).logits.floats == model(s.x, conditioning: s.c, r: s.r).floats)
    }

    /// L = sum(logits * w) for fixed random w (its logits gradient is w), in Double. Central differences with
    /// step 1e-2: the truncation error (second order, the network is smooth) and float32 rounding of L (about
    /// 1e-6 relative over a few hundred terms, divided by 2e-2) both stay near 1e-4, inside the bound
    /// 2e-3 + 1e-2 * |gradient|. Three elements per parameter tensor, the largest-gradient one among them.
    @Test func backwardMatchesFiniteDifferences() throws {
        let s = try Self.setup(seed: 2)
        let compute = Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM())
        func loss(_ p: TrainableParameters) throws -> Double {
            let y = try Denoiser(config: Self.config, weights: p.loader(), compute: compute)(s.x, conditioning: s.c, r: s.r)
            return zip(y.floats, s.weights.floats).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let model = try Denoiser(config: Self.config, weights: s.params.loader(), compute: compute)
        let (_, acts) = model.forwardForTraining(s.x, conditioning: s.c, r: s.r)
        let grads = model.backward(acts, logitsGradient: s.weights)
        #expect(Set(grads.keys) == Set(s.params.names))
        var rng = TestRandom(seed: 3)
        let h: Float = 1e-2
        var worst = 0.0
        for (i, name) in s.params.names.enumerated() {
            let g = try #require(grads[name]).floats
            try #require(g.count == s.params.tensors[i].count, "\(name)")
            let largest = g.indices.max { abs(g[$0]) < abs(g[$1]) } ?? 0
            for j in Set([largest, rng.int(0...(g.count - 1)), rng.int(0...(g.count - 1))]) {
                var plus = s.params, minus = s.params
                plus.tensors[i].withMutableFloats { $0[j] += h }
                minus.tensors[i].withMutableFloats { $0[j] -= h }
                let fd = (try loss(plus) - loss(minus)) / Double(2 * h)
                worst = max(worst, abs(fd - Double(g[j])) / (1 + abs(Double(g[j]))))
                #expect(abs(fd - Double(g[j])) <= 2e-3 + 1e-2 * abs(Double(g[j])), "\(name)[\(j)]: finite difference \(fd), backward \(g[j])")
            }
        }
        print("denoiser gradient vs finite differences: worst |fd - g| / (1 + |g|) = \(worst)")
    }
}
