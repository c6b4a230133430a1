// Backward pass of `groupNorm` (channels-last, optionally with the fused SiLU), as the gradient of
// torch.nn.functional.group_norm (then F.silu): the statistics are recomputed from the input, so a training
// forward runs the same fast inference op and keeps only its input.
import Foundation

/// Gradients of `groupNorm` with respect to its input, weight and bias, shaped like those arguments.
public struct GroupNormGradients: Sendable {
    public var input: Tensor
    /// `[C]`, or nil when the forward had no weight.
    public var weight: Tensor?
    /// `[C]`, or nil when the forward had no bias.
    public var bias: Tensor?
}

extension Compute {
    /// Gradients of `groupNorm(x, groups:, weight:, bias:, eps:, fusedSiLU:)` given the gradient of its output.
    /// With `n = (x - mean) * rstd` per (image, group) and `y = n * w + b` (then `s = silu(y)` when fused):
    /// `dy = ds * silu'(y)`, `dw = sum dy * n`, `db = sum dy`, and with `g = dy * w`,
    /// `dx = rstd * (g - mean(g) - n * mean(g * n))`, the means over the group's positions and channels.
    /// Images run in parallel; the weight and bias sums are added in image order (thread-count independent).
    public func groupNormBackward(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float,
                                  fusedSiLU: Bool = false, outputGradient dOut: Tensor) -> GroupNormGradients {
        precondition(x.rank >= 2 && x.dtype == .float32 && dOut.shape == x.shape,
                     "groupNormBackward: gradient \(dOut.shape) does not fit input \(x.shape)")
        let batch = x.shape[0], c = x.shape[x.rank - 1]
        precondition(groups > 0 && c % groups == 0, "groupNormBackward: \(c) channels do not split into \(groups) groups")
        let hw = batch == 0 || c == 0 ? 0 : x.count / (batch * c)
        let cg = c / groups
        let count = Double(hw * cg)
        let w = weight?.floats ?? [Float](repeating: 1, count: c)
        let bv = bias?.floats ?? [Float](repeating: 0, count: c)
        var dx = Tensor(uninitialized: x.shape)
        var partialW = [Double](repeating: 0, count: batch * c)
        var partialB = [Double](repeating: 0, count: batch * c)
        if x.count == 0 { return GroupNormGradients(input: dx, weight: weight.map { _ in Tensor(zeros: [c]) }, bias: bias.map { _ in Tensor(zeros: [c]) }) }
        x.withFloatPointer { xp in dOut.withFloatPointer { gp in dx.withMutableFloatPointer { dp in
        partialW.withUnsafeMutableBufferPointer { pw in partialB.withUnsafeMutableBufferPointer { pb in
            let pwp = pw.baseAddress!, pbp = pb.baseAddress!
            pool.parallelFor(batch) { b in
                let xb = xp + b * hw * c, gb = gp + b * hw * c, db = dp + b * hw * c
                // Statistics per group, in Double (two passes, as the forward).
                var mean = [Double](repeating: 0, count: groups), rstd = [Double](repeating: 0, count: groups)
                for p in 0..<hw { for j in 0..<c { mean[j / cg] += Double(xb[p * c + j]) } }
                for g in 0..<groups { mean[g] /= count }
                var variance = [Double](repeating: 0, count: groups)
                for p in 0..<hw { for j in 0..<c { let d = Double(xb[p * c + j]) - mean[j / cg]; variance[j / cg] += d * d } }
                for g in 0..<groups { rstd[g] = 1 / (variance[g] / count + Double(eps)).squareRoot() }
                let meanF = mean.map { Float($0) }, rstdF = rstd.map { Float($0) }
                // dy (through the SiLU) into db, per-channel sums, per-group sums of g and g * n.
                var sumG = [Double](repeating: 0, count: groups), sumGN = [Double](repeating: 0, count: groups)
                for p in 0..<hw {
                    for j in 0..<c {
                        let i = p * c + j, grp = j / cg
                        let n = (xb[i] - meanF[grp]) * rstdF[grp]
                        var dy = gb[i]
                        if fusedSiLU {
                            let y = n * w[j] + bv[j]
                            let s = 1 / (1 + Foundation.exp(-y))
                            dy *= s * (1 + y * (1 - s))
                        }
                        pwp[b * c + j] += Double(dy) * Double(n)
                        pbp[b * c + j] += Double(dy)
                        let g = dy * w[j]
                        sumG[grp] += Double(g)
                        sumGN[grp] += Double(g) * Double(n)
                        db[i] = g
                    }
                }
                let meanG = sumG.map { Float($0 / count) }, meanGN = sumGN.map { Float($0 / count) }
                for p in 0..<hw {
                    for j in 0..<c {
                        let i = p * c + j, grp = j / cg
                        let n = (xb[i] - meanF[grp]) * rstdF[grp]
                        db[i] = rstdF[grp] * (db[i] - meanG[grp] - n * meanGN[grp])
                    }
                }
            }
        }}}}}
        func reduce(_ partial: [Double]) -> Tensor {
            var total = [Double](repeating: 0, count: c)
            for b in 0..<batch { for j in 0..<c { total[j] += partial[b * c + j] } }
            return Tensor(total.map { Float($0) }, shape: [c])
        }
        return GroupNormGradients(input: dx, weight: weight == nil ? nil : reduce(partialW),
                                  bias: bias == nil ? nil : reduce(partialB))
    }
}
