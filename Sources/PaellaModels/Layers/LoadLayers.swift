// Loading PyTorch modules' parameters (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.LayerNorm, nn.GroupNorm,
// nn.Embedding) by their state-dict names, with the shapes PyTorch gives them. One place for the key suffixes
// (".weight", ".bias") and the layout conversions, so model files only name modules.
import PaellaCore
import PaellaIO

extension LinearWeights {
    /// `nn.Linear(inFeatures, outFeatures, bias:)` stored under `name` (`name.weight` [out, in], `name.bias` [out]),
    /// kept in PyTorch's layout so a float32 checkpoint is used in place (or packed, at the loader's `precision`).
    public init(_ w: WeightScope, _ name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        let m = w.scope(name)
        self.init(weight: m.tensor("weight", shape: [outFeatures, inFeatures]), layout: .outIn,
                  bias: bias ? m.float32("bias", shape: [outFeatures]) : nil, precision: w.loader.precision)
    }
}

extension Conv2dWeights {
    /// `nn.Conv2d(inChannels, outChannels, kernel, groups:, bias:)` stored under `name` (OIHW weight).
    public init(_ w: WeightScope, _ name: String, inChannels: Int, outChannels: Int, kernel: Int,
                groups: Int = 1, bias: Bool = true) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d \(w.key(name)): channels \(inChannels)->\(outChannels) not divisible by \(groups) groups")
        let m = w.scope(name)
        self.init(pytorchOIHW: m.tensor("weight", shape: [outChannels, inChannels / groups, kernel, kernel]),
                  bias: bias ? m.float32("bias", shape: [outChannels]) : nil, groups: groups, precision: w.loader.precision)
    }
}

extension ConvTranspose2dWeights {
    /// `nn.ConvTranspose2d(inChannels, outChannels, kernel, groups:, bias:)` stored under `name`
    /// (weight [in, out/groups, kH, kW]).
    public init(_ w: WeightScope, _ name: String, inChannels: Int, outChannels: Int, kernel: Int,
                groups: Int = 1, bias: Bool = true) {
        let m = w.scope(name)
        self.init(pytorch: m.tensor("weight", shape: [inChannels, outChannels / groups, kernel, kernel]),
                  bias: bias ? m.float32("bias", shape: [outChannels]) : nil, groups: groups)
    }
}

/// The affine parameters of `nn.LayerNorm` / `nn.GroupNorm` (absent when `elementwise_affine=False`).
public struct NormWeights: Sendable {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    /// `nn.LayerNorm(features, eps:, elementwise_affine: affine)` or `nn.GroupNorm(_, features, eps:, affine:)`
    /// stored under `name`.
    public init(_ w: WeightScope, _ name: String, features: Int, eps: Float, affine: Bool = true) {
        let m = w.scope(name)
        weight = affine ? m.float32("weight", shape: [features]) : nil
        bias = affine ? m.float32("bias", shape: [features]) : nil
        self.eps = eps
    }
}

extension Compute {
    /// Layer norm over the last dimension with loaded parameters.
    public func layerNorm(_ x: Tensor, _ n: NormWeights) -> Tensor {
        layerNorm(x, weight: n.weight, bias: n.bias, eps: n.eps)
    }

    /// Group norm over channels-last `x` with loaded parameters, optionally followed by SiLU.
    public func groupNorm(_ x: Tensor, _ n: NormWeights, groups: Int, fusedSiLU: Bool = false) -> Tensor {
        groupNorm(x, groups: groups, weight: n.weight, bias: n.bias, eps: n.eps, fusedSiLU: fusedSiLU)
    }
}
