import CPaellaKernels

// Layer norm (over the last dimension) and group norm (channels-last), as torch.nn.functional.layer_norm and
// torch.nn.functional.group_norm define them: biased variance, eps inside the square root.

/// Per-row statistics of a layer norm forward pass, kept for its backward pass. Both have the input's shape
/// without the last dimension.
public struct LayerNormStatistics: Sendable {
    public var mean: Tensor
    /// `1 / sqrt(variance + eps)`.
    public var rstd: Tensor
}

/// Gradients of `layerNorm` with respect to its input, weight and bias, shaped like those arguments.
public struct LayerNormGradients: Sendable {
    public var input: Tensor
    /// `[n]`, or nil when the forward had no weight.
    public var weight: Tensor?
    /// `[n]`, or nil when the forward had no bias.
    public var bias: Tensor?
}

extension Compute {
    /// Layer norm over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias` per row, with the
    /// biased variance. `weight` and `bias` (length = last dimension) are optional.
    public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        layerNormForward(x, weight: weight, bias: bias, eps: eps, keepStatistics: false).output
    }

    /// `layerNorm` that also returns the per-row mean and rstd its backward pass needs.
    public func layerNormWithStatistics(_ x: Tensor, weight: Tensor?, bias: Tensor?,
                                        eps: Float) -> (output: Tensor, statistics: LayerNormStatistics) {
        let r = layerNormForward(x, weight: weight, bias: bias, eps: eps, keepStatistics: true)
        return (r.output, LayerNormStatistics(mean: r.mean, rstd: r.rstd))
    }

    /// Gradients of `layerNorm` with respect to its input, weight and bias (the latter two nil when the
    /// forward had none), given the same inputs and the gradient of the output. Pass the forward's
    /// statistics to skip recomputing them.
    public func layerNormBackward(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float, outputGradient: Tensor,
                                  statistics: LayerNormStatistics? = nil) -> LayerNormGradients {
        precondition(outputGradient.shape == x.shape, "layerNormBackward: gradient shape \(outputGradient.shape) differs from input shape \(x.shape)")
        let n = x.shape.last ?? 1
        let rows = n == 0 ? 0 : x.count / n
        let stats = statistics ?? layerNormWithStatistics(x, weight: weight, bias: bias, eps: eps).statistics
        precondition(stats.mean.count == rows && stats.rstd.count == rows,
                     "layerNormBackward: statistics hold \(stats.mean.count) rows, the input has \(rows)")
        // Each chunk of rows sums its own weight/bias gradients; the partial sums are added in chunk order so
        // the result does not depend on the thread count.
        let chunkRows = max(1, Compute.elementsPerTask / max(n, 1))
        let chunks = (rows + chunkRows - 1) / chunkRows
        var partialW = [Float](repeating: 0, count: weight == nil ? 0 : chunks * n)
        var partialB = [Float](repeating: 0, count: bias == nil ? 0 : chunks * n)
        var dx = Tensor(uninitialized: x.shape)
        x.withFloatPointer { xp in
            outputGradient.withFloatPointer { gp in
                stats.mean.withFloatPointer { mp in
                    stats.rstd.withFloatPointer { rp in
                        withOptionalFloatPointer(weight) { wp in
                            dx.withMutableFloatPointer { dp in
                                partialW.withUnsafeMutableBufferPointer { pw in
                                    partialB.withUnsafeMutableBufferPointer { pb in
                                        pool.parallelFor(chunks) { c in
                                            let r0 = c * chunkRows, count = min(rows, r0 + chunkRows) - r0
                                            let o = r0 * n
                                            // (an empty array may still have an address: test the optionals)
                                            pk_layer_norm_backward(gp + o, xp + o, mp + r0, rp + r0, wp, count, n, dp + o,
                                                                   weight == nil ? nil : pw.baseAddress.map { $0 + c * n },
                                                                   bias == nil ? nil : pb.baseAddress.map { $0 + c * n })
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        func reduce(_ partial: [Float]) -> Tensor {
            var total = [Float](repeating: 0, count: n)
            for c in 0..<chunks { for j in 0..<n { total[j] += partial[c * n + j] } }
            return Tensor(total, shape: [n])
        }
        return LayerNormGradients(input: dx, weight: weight == nil ? nil : reduce(partialW),
                                  bias: bias == nil ? nil : reduce(partialB))
    }

    private func layerNormForward(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float,
                                  keepStatistics: Bool) -> (output: Tensor, mean: Tensor, rstd: Tensor) {
        precondition(x.rank >= 1, "layerNorm: input must have at least one dimension, has shape \(x.shape)")
        let n = x.shape[x.rank - 1]
        let rows = n == 0 ? 0 : x.count / n
        if let weight { precondition(weight.count == n, "layerNorm: weight has \(weight.count) elements for rows of \(n)") }
        if let bias { precondition(bias.count == n, "layerNorm: bias has \(bias.count) elements for rows of \(n)") }
        var out = Tensor(uninitialized: x.shape)
        let statShape = Array(x.shape.dropLast())
        var mean = Tensor(uninitialized: keepStatistics ? statShape : [0])
        var rstd = Tensor(uninitialized: keepStatistics ? statShape : [0])
        x.withFloatPointer { xp in
            out.withMutableFloatPointer { yp in
                withOptionalFloatPointer(weight) { wp in
                    withOptionalFloatPointer(bias) { bp in
                        mean.withMutableFloatPointer { mp in
                            rstd.withMutableFloatPointer { rp in
                                parallelRows(rows, rowLength: n) { r in
                                    let o = r.lowerBound * n
                                    pk_layer_norm(xp + o, yp + o, r.count, n, wp, bp, eps,
                                                  keepStatistics ? mp + r.lowerBound : nil,
                                                  keepStatistics ? rp + r.lowerBound : nil)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (out, mean, rstd)  // mean and rstd are empty unless keepStatistics
    }

    /// Group norm for channels-last input `[B, ..., C]` (e.g. `[B, H, W, C]` or `[B, L, C]`): the channels
    /// are split into `groups` consecutive groups, each normalized with the mean and biased variance over all
    /// its positions and channels, then scaled and shifted per channel. With `fusedSiLU`, SiLU follows in the
    /// same pass (taming-transformers' VQGAN always applies GroupNorm then swish).
    public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float,
                          fusedSiLU: Bool = false) -> Tensor {
        precondition(x.rank >= 2, "groupNorm: input must be [B, ..., C], has shape \(x.shape)")
        let batch = x.shape[0], c = x.shape[x.rank - 1]
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(c) channels do not split into \(groups) groups")
        if let weight { precondition(weight.count == c, "groupNorm: weight has \(weight.count) elements for \(c) channels") }
        if let bias { precondition(bias.count == c, "groupNorm: bias has \(bias.count) elements for \(c) channels") }
        let hw = batch == 0 || c == 0 ? 0 : x.count / (batch * c)
        var out = Tensor(uninitialized: x.shape)
        if x.count == 0 { return out }
        let cg = c / groups
        let count = Double(hw * cg)
        // Rows of [hw, C] are cut into fixed-size chunks (independent of the thread count, so results are too);
        // each chunk sums per channel in double, and the sums are added in chunk order.
        let chunkRows = max(1, Compute.elementsPerTask / c)
        let chunksPerImage = (hw + chunkRows - 1) / chunkRows
        let tasks = batch * chunksPerImage
        var partial = [Double](repeating: 0, count: tasks * c)
        var center = [Float](repeating: 0, count: batch * c)
        var scale = [Float](repeating: 0, count: batch * c)
        var shift = [Float](repeating: 0, count: batch * c)
        var groupMean = [Double](repeating: 0, count: batch * groups)

        // Adds each task's per-channel partial sums into one value per (image, group).
        func groupTotals() -> [Double] {
            var totals = [Double](repeating: 0, count: batch * groups)
            for b in 0..<batch {
                for t in 0..<chunksPerImage {
                    let base = (b * chunksPerImage + t) * c
                    for j in 0..<c { totals[b * groups + j / cg] += partial[base + j] }
                }
            }
            return totals
        }

        x.withFloatPointer { xp in
            func rows(_ task: Int) -> (offset: Int, count: Int) {
                let b = task / chunksPerImage, t = task % chunksPerImage
                let r0 = t * chunkRows
                return ((b * hw + r0) * c, min(hw, r0 + chunkRows) - r0)
            }
            // Pass 1: means.
            partial.withUnsafeMutableBufferPointer { p in
                pool.parallelFor(tasks) { task in
                    let (o, n) = rows(task)
                    pk_channel_sums(xp + o, n, c, p.baseAddress.map { $0 + task * c })
                }
            }
            let sums = groupTotals()
            for i in 0..<(batch * groups) { groupMean[i] = sums[i] / count }
            for b in 0..<batch { for j in 0..<c { center[b * c + j] = Float(groupMean[b * groups + j / cg]) } }
            // Pass 2: variances around the float-rounded mean m_f; mean((x-m)^2) = mean((x-m_f)^2) - (m-m_f)^2.
            for i in partial.indices { partial[i] = 0 }
            center.withUnsafeBufferPointer { cp in
                partial.withUnsafeMutableBufferPointer { p in
                    pool.parallelFor(tasks) { task in
                        let (o, n) = rows(task)
                        let b = task / chunksPerImage
                        pk_channel_centered_squares(xp + o, n, c, cp.baseAddress.map { $0 + b * c },
                                                    p.baseAddress.map { $0 + task * c })
                    }
                }
            }
            let squares = groupTotals()
            let w = weight?.floats, bi = bias?.floats
            for b in 0..<batch {
                for g in 0..<groups {
                    let m = groupMean[b * groups + g]
                    let off = m - Double(center[b * c + g * cg])
                    let variance = max(squares[b * groups + g] / count - off * off, 0)
                    let rstd = 1 / (variance + Double(eps)).squareRoot()
                    for j in (g * cg)..<((g + 1) * cg) {
                        let wj = Double(w?[j] ?? 1), bj = Double(bi?[j] ?? 0)
                        scale[b * c + j] = Float(rstd * wj)
                        shift[b * c + j] = Float(bj - m * rstd * wj)
                    }
                }
            }
            // Pass 3: y = x * scale + shift (+ SiLU), one multiply-add per element.
            out.withMutableFloatPointer { yp in
                scale.withUnsafeBufferPointer { sp in
                    shift.withUnsafeBufferPointer { hp in
                        pool.parallelFor(tasks) { task in
                            let (o, n) = rows(task)
                            let b = task / chunksPerImage
                            pk_channel_affine(xp + o, yp + o, n, c, sp.baseAddress.map { $0 + b * c },
                                              hp.baseAddress.map { $0 + b * c }, fusedSiLU ? 1 : 0)
                        }
                    }
                }
            }
        }
        return out
    }
}
