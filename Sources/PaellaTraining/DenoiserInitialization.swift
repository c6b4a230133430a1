// The initial weights of a new DenoiseUNet as upstream modules.py (dome272/Paella, commit 3671515) gets them:
// PyTorch's default layer initialisation plus the model's own changes. Same distributions, not the same draws.
import Foundation
import PaellaCore
import PaellaModels

extension TrainableParameters {
    /// Fresh denoiser weights for training from scratch: linear and convolution weights and biases uniform in
    /// ±1/sqrt(fan_in) (PyTorch's `kaiming_uniform_(a=sqrt(5))` default; a transposed convolution's fan-in is
    /// `Cout/groups * kH * kW`, as PyTorch computes it), embeddings standard normal, layer norms 1 and 0,
    /// `ModulatedLayerNorm.gamma`/`beta` standard normal, the layer scale `gamma` 1e-6, and every block's last
    /// MLP weight scaled by sqrt(1 / blocks on its path) (`sum(down_levels)` or `sum(up_levels)`).
    public static func newDenoiser(_ config: DenoiserConfig, seed: UInt64) throws -> TrainableParameters {
        var random = SplitMix64(seed: seed)
        let keys = try Denoiser.parameterShapes(config)
        let shapes = Dictionary(keys.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        let named = keys.map { key -> (name: String, tensor: Tensor) in
            let (name, shape) = (key.name, key.shape)
            let count = shape.reduce(1, *)
            func uniform(_ bound: Float) -> Tensor { Tensor((0..<count).map { _ in random.float(-bound, bound) }, shape: shape) }
            func normal() -> Tensor { Tensor((0..<count).map { _ in random.normal() }, shape: shape) }
            typealias Key = DenoiserKeys.Block
            if name == DenoiserKeys.embedding + ".weight" || name.hasSuffix(Key.normGamma) || name.hasSuffix(Key.normBeta) {
                return (name, normal())
            }
            if name.hasSuffix(Key.norm + ".weight") { return (name, Tensor(repeating: 1, shape: shape)) }
            if name.hasSuffix(Key.norm + ".bias") { return (name, Tensor(zeros: shape)) }
            if name.hasSuffix("." + Key.gamma) { return (name, Tensor(repeating: 1e-6, shape: shape)) }
            // Weights and biases of linears and convolutions share the weight's fan-in.
            // PyTorch's fan-in is dimension 1 times the kernel size, for Conv2d [O, I/g, kH, kW] and
            // ConvTranspose2d [I, O/g, kH, kW] alike; Linear [out, in] gives in.
            let weightShape = name.hasSuffix(".bias") ? shapes[String(name.dropLast(4)) + "weight"] ?? shape : shape
            let fanIn = weightShape.dropFirst().reduce(1, *)
            var t = uniform(1 / Float(fanIn).squareRoot())
            if name.hasSuffix(Key.channelwise2 + ".weight") {
                let blocks = name.hasPrefix(DenoiserKeys.downPath + ".") ? config.downLevels.reduce(0, +) : config.upLevels.reduce(0, +)
                let factor = Float((1 / Double(blocks)).squareRoot())
                t.withMutableFloats { for i in 0..<$0.count { $0[i] *= factor } }
            }
            return (name, t)
        }
        return TrainableParameters(named)
    }
}
