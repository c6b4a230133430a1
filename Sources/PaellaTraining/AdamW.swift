// torch.optim.AdamW (decoupled weight decay), single-tensor update in PyTorch's order of operations.

import Foundation
import PaellaCore

/// AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01) and its exact update order:
/// `p *= 1 - lr * wd; m = lerp(m, g, 1 - beta1); v = v * beta2 + (1 - beta2) g²;
/// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`.
public struct AdamW: Sendable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    /// Updates done so far (PyTorch's per-parameter `step`, the same for every parameter here).
    public var step: Int = 0
    /// First and second moments, shaped like the parameters.
    public var expAvg: TrainableParameters
    public var expAvgSq: TrainableParameters

    public init(parameters: TrainableParameters, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8,
                weightDecay: Double = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        expAvg = TrainableParameters(zerosLike: parameters)
        expAvgSq = TrainableParameters(zerosLike: parameters)
    }

    /// One update of `parameters` with `gradients` (same names and shapes) at learning rate `lr`; `beta1`
    /// overrides the stored one for this and later steps (a cycling-momentum schedule sets it every step).
    /// With a `pool`, each tensor's elements are split over its threads (the result is the same: every element
    /// is updated on its own).
    public mutating func update(_ parameters: inout TrainableParameters, gradients: TrainableParameters, lr: Double,
                                beta1 newBeta1: Double? = nil, pool: ThreadPool? = nil) {
        precondition(parameters.names == gradients.names && parameters.names == expAvg.names,
                     "AdamW: gradients and parameters do not have the same names")
        if let newBeta1 { beta1 = newBeta1 }
        step += 1
        let decay = Float(1 - lr * weightDecay)
        let oneMinusBeta1 = Float(1 - beta1), beta2f = Float(beta2), oneMinusBeta2 = Float(1 - beta2)
        let stepSize = Float(lr / (1 - Foundation.pow(beta1, Double(step))))
        let bc2Sqrt = Float((1 - Foundation.pow(beta2, Double(step))).squareRoot())
        let epsf = Float(eps)
        for i in parameters.tensors.indices {
            precondition(parameters.tensors[i].shape == gradients.tensors[i].shape,
                         "AdamW: gradient of \(parameters.names[i]) has shape \(gradients.tensors[i].shape)")
            gradients.tensors[i].withFloats { g in
                parameters.tensors[i].withMutableFloats { p in
                    expAvg.tensors[i].withMutableFloats { m in
                        expAvgSq.tensors[i].withMutableFloats { v in
                            if p.isEmpty { return }
                            let (pp, mp, vp, gp) = (p.baseAddress!, m.baseAddress!, v.baseAddress!, g.baseAddress!)
                            func run(_ range: Range<Int>) {
                                // Eight lanes at a time (the same operations per element as the scalar tail).
                                var j = range.lowerBound
                                while j + 8 <= range.upperBound {
                                    let g8 = UnsafeRawPointer(gp + j).loadUnaligned(as: SIMD8<Float>.self)
                                    var p8 = UnsafeRawPointer(pp + j).loadUnaligned(as: SIMD8<Float>.self)
                                    var m8 = UnsafeRawPointer(mp + j).loadUnaligned(as: SIMD8<Float>.self)
                                    var v8 = UnsafeRawPointer(vp + j).loadUnaligned(as: SIMD8<Float>.self)
                                    p8 *= decay
                                    m8 += oneMinusBeta1 * (g8 - m8)
                                    v8 = v8 * beta2f + oneMinusBeta2 * g8 * g8
                                    let denom = v8.squareRoot() / bc2Sqrt + epsf
                                    p8 += -stepSize * (m8 / denom)
                                    UnsafeMutableRawPointer(pp + j).storeBytes(of: p8, as: SIMD8<Float>.self)
                                    UnsafeMutableRawPointer(mp + j).storeBytes(of: m8, as: SIMD8<Float>.self)
                                    UnsafeMutableRawPointer(vp + j).storeBytes(of: v8, as: SIMD8<Float>.self)
                                    j += 8
                                }
                                for j in j..<range.upperBound {
                                    pp[j] *= decay
                                    mp[j] += oneMinusBeta1 * (gp[j] - mp[j])             // lerp, weight < 0.5 branch
                                    vp[j] = vp[j] * beta2f + oneMinusBeta2 * gp[j] * gp[j]
                                    let denom = vp[j].squareRoot() / bc2Sqrt + epsf
                                    pp[j] += -stepSize * (mp[j] / denom)
                                }
                            }
                            if let pool, p.count >= 1 << 16 { pool.parallelChunks(p.count, minChunk: 1 << 14, run) } else { run(0..<p.count) }
                        }
                    }
                }
            }
        }
    }
}
