// Backward pass of `groupNorm` (channels-last, optionally with the fused SiLU), as the gradient of
// torch.nn.functional.group_norm (then F.silu): the statistics are recomputed from the input, so a training
// forward runs the same fast inference op and keeps only its input.
import CPaellaKernels

/// Gradients of `groupNorm` with respect to its input, weight and bias, shaped like those arguments.
public struct GroupNormGradients: Sendable {
    public var input: Tensor
    /// `[C]`, or nil when the forward had no weight.
    public var weight: Tensor?
    /// `[C]`, or nil when the forward had no bias.
    public var bias: Tensor?

    public init(input: Tensor, weight: Tensor?, bias: Tensor?) {
        self.input = input
        self.weight = weight
        self.bias = bias
    }
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
        let groupCount = Double(hw * cg)
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
                let count = hw * c
                let xb = xp + b * count, gb = gp + b * count, db = dp + b * count
                // Work buffers: n = normalized x, dy (the gradient at the norm's output), and n * dy.
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 3 * count + 8 * c)
                let doubles = UnsafeMutablePointer<Double>.allocate(capacity: 2 * c)
                defer { buffer.deallocate(); doubles.deallocate() }
                let n = buffer, dyBuffer = buffer + count, product = buffer + 2 * count
                let scale = buffer + 3 * count, shift = scale + c, center = shift + c, wScale = center + c
                let wShift = wScale + c, aC = wShift + c, bC = aC + c
                let sums = doubles, sums2 = doubles + c
                // Statistics per group with the forward's kernels: the mean, then the variance around it.
                sums.initialize(repeating: 0, count: 2 * c)
                pk_channel_sums(xb, hw, c, sums)
                var mean = [Double](repeating: 0, count: groups), variance = [Double](repeating: 0, count: groups)
                for j in 0..<c { mean[j / cg] += sums[j] }
                for g in 0..<groups { mean[g] /= groupCount }
                for j in 0..<c { center[j] = Float(mean[j / cg]) }
                sums.initialize(repeating: 0, count: c)
                pk_channel_centered_squares(xb, hw, c, center, sums)
                for j in 0..<c { variance[j / cg] += sums[j] }
                var rstd = [Double](repeating: 0, count: groups)
                for g in 0..<groups {
                    let off = mean[g] - Double(Float(mean[g]))  // the centre was the float-rounded mean
                    rstd[g] = 1 / (max(variance[g] / groupCount - off * off, 0) + Double(eps)).squareRoot()
                }
                for j in 0..<c {
                    let r = rstd[j / cg]
                    scale[j] = Float(r)
                    shift[j] = Float(-mean[j / cg] * r)
                    wScale[j] = Float(r * Double(w[j]))
                    wShift[j] = Float(-mean[j / cg] * r * Double(w[j]) + Double(bv[j]))
                }
                pk_channel_affine(xb, n, hw, c, scale, shift, 0)                       // n
                var dy = UnsafePointer(gb)
                if fusedSiLU {
                    pk_channel_affine(xb, dyBuffer, hw, c, wScale, wShift, 0)          // y = n w + b
                    pk_silu_backward(dyBuffer, gb, dyBuffer, count)                     // dy = ds silu'(y)
                    dy = UnsafePointer(dyBuffer)
                }
                for i in 0..<count { product[i] = dy[i] * n[i] }
                sums.initialize(repeating: 0, count: 2 * c)
                pk_channel_sums(product, hw, c, sums)                                  // sum dy n per channel
                pk_channel_sums(dy, hw, c, sums2)                                       // sum dy per channel
                // With g = dy w: mean(g) and mean(g n) per group from the per-channel sums.
                var meanG = [Double](repeating: 0, count: groups), meanGN = [Double](repeating: 0, count: groups)
                for j in 0..<c {
                    pwp[b * c + j] = sums[j]
                    pbp[b * c + j] = sums2[j]
                    meanG[j / cg] += Double(w[j]) * sums2[j] / groupCount
                    meanGN[j / cg] += Double(w[j]) * sums[j] / groupCount
                }
                // dx = rstd (g - mean(g) - n mean(g n)) = dy (rstd w) - n (rstd mean(g n)) - rstd mean(g).
                for j in 0..<c {
                    aC[j] = Float(-rstd[j / cg] * meanGN[j / cg])
                    bC[j] = Float(-rstd[j / cg] * meanG[j / cg])
                    wScale[j] = Float(rstd[j / cg] * Double(w[j]))
                }
                pk_channel_affine(n, db, hw, c, aC, bC, 0)
                for p in 0..<hw {
                    let o = p * c
                    let dRow = db + o, gRow = dy + o
                    for j in 0..<c { dRow[j] += gRow[j] * wScale[j] }
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
