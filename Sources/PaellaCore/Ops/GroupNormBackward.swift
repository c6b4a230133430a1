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
                // Per-channel sums (vectorised over channels), flushed to Double every `block` rows.
                let block = 64
                let acc = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
                defer { acc.deallocate() }
                let accA = acc, accB = acc + c
                var sumA = [Double](repeating: 0, count: c), sumB = [Double](repeating: 0, count: c)
                func flush() {
                    for j in 0..<c { sumA[j] += Double(accA[j]); sumB[j] += Double(accB[j]); accA[j] = 0; accB[j] = 0 }
                }
                // Statistics per group, as the forward: the mean, then the variance around it.
                accA.initialize(repeating: 0, count: 2 * c)
                for p in 0..<hw {
                    let row = xb + p * c
                    for j in 0..<c { accA[j] += row[j] }
                    if p % block == block - 1 { flush() }
                }
                flush()
                var mean = [Double](repeating: 0, count: groups)
                for j in 0..<c { mean[j / cg] += sumA[j] }
                for g in 0..<groups { mean[g] /= count }
                let meanC = (0..<c).map { Float(mean[$0 / cg]) }
                for j in 0..<c { sumA[j] = 0; sumB[j] = 0 }
                for p in 0..<hw {
                    let row = xb + p * c
                    for j in 0..<c { let d = row[j] - meanC[j]; accA[j] += d * d }
                    if p % block == block - 1 { flush() }
                }
                flush()
                var variance = [Double](repeating: 0, count: groups)
                for j in 0..<c { variance[j / cg] += sumA[j] }
                let rstd = variance.map { 1 / ($0 / count + Double(eps)).squareRoot() }
                // n = x * scale + shift per channel.
                let scale = (0..<c).map { Float(rstd[$0 / cg]) }
                let shift = (0..<c).map { -Float(mean[$0 / cg] * rstd[$0 / cg]) }
                // Pass 1: dy (through the SiLU); per-channel sums of dy * n and dy; db holds dy * w for now.
                for j in 0..<c { sumA[j] = 0; sumB[j] = 0 }
                scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { sh in
                w.withUnsafeBufferPointer { wv in bv.withUnsafeBufferPointer { bb in
                    let sc = sc.baseAddress!, sh = sh.baseAddress!, wv = wv.baseAddress!, bb = bb.baseAddress!
                    for p in 0..<hw {
                        let o = p * c
                        if fusedSiLU {
                            for j in 0..<c {
                                let n = xb[o + j] * sc[j] + sh[j]
                                let y = n * wv[j] + bb[j]
                                let s = 1 / (1 + Foundation.exp(-y))
                                let dy = gb[o + j] * (s * (1 + y * (1 - s)))
                                accA[j] += dy * n
                                accB[j] += dy
                                db[o + j] = dy * wv[j]
                            }
                        } else {
                            for j in 0..<c {
                                let n = xb[o + j] * sc[j] + sh[j]
                                let dy = gb[o + j]
                                accA[j] += dy * n
                                accB[j] += dy
                                db[o + j] = dy * wv[j]
                            }
                        }
                        if p % block == block - 1 { flush() }
                    }
                    flush()
                    // Sums of g = dy * w and of g * n per group come from the per-channel sums.
                    var meanG = [Double](repeating: 0, count: groups), meanGN = [Double](repeating: 0, count: groups)
                    for j in 0..<c {
                        pwp[b * c + j] = sumA[j]
                        pbp[b * c + j] = sumB[j]
                        meanG[j / cg] += Double(wv[j]) * sumB[j] / count
                        meanGN[j / cg] += Double(wv[j]) * sumA[j] / count
                    }
                    // Pass 2: dx = rstd * (g - mean(g) - n * mean(g n)) = rstd g - a - n b per channel.
                    let a = (0..<c).map { Float(rstd[$0 / cg] * meanG[$0 / cg]) }
                    let bq = (0..<c).map { Float(rstd[$0 / cg] * meanGN[$0 / cg]) }
                    a.withUnsafeBufferPointer { ap in bq.withUnsafeBufferPointer { bp in
                        let ap = ap.baseAddress!, bp = bp.baseAddress!
                        for p in 0..<hw {
                            let o = p * c
                            for j in 0..<c {
                                let n = xb[o + j] * sc[j] + sh[j]
                                db[o + j] = sc[j] * db[o + j] - ap[j] - n * bp[j]
                            }
                        }
                    }}
                }}}}
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
