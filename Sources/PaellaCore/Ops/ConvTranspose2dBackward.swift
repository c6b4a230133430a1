import CPaellaKernels

// Backward pass of convTranspose2d. A transposed convolution scatters every input pixel times the kernel onto
// its output patch, so its adjoint gathers: the output gradient lowered with im2col (the same geometry as a
// plain convolution of dy with this kernel, stride and padding) gives, per input pixel, the gradient of every
// kernel tap; one GEMM with the kernel gives the input gradient and one with the input the kernel gradient.

/// Gradients of `convTranspose2d` with respect to its input and weights, in the layouts of the forward arguments.
public struct ConvTranspose2dGradients: Sendable {
    /// `[B, H, W, Cin]`, like the input.
    public var input: Tensor
    /// `[Cin, kH, kW, Cout / groups]`, like `ConvTranspose2dWeights.kernel`.
    public var kernel: Tensor
    /// `[Cout]`, or nil when the weights have no bias.
    public var bias: Tensor?
}

extension Compute {
    /// Gradients of `convTranspose2d(x, w, stride:, padding:, outputPadding:, dilation:)` given the gradient
    /// `dy` `[B, Hout, Wout, Cout]` of its output (same arguments as the forward).
    public func convTranspose2dBackward(_ x: Tensor, _ w: ConvTranspose2dWeights, outputGradient dy: Tensor,
                                        stride: Int = 1, padding: Int = 0, outputPadding: Int = 0,
                                        dilation: Int = 1) -> ConvTranspose2dGradients {
        precondition(x.rank == 4 && x.dtype == .float32 && x.shape[3] == w.inChannels,
                     "convTranspose2dBackward: expected float32 [B, H, W, \(w.inChannels)] input, got \(x)")
        let (batch, h, wd, cin, cout) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.outChannels)
        let (kh, kw, groups) = (w.kernelHeight, w.kernelWidth, w.groups)
        let outH = (h - 1) * stride - 2 * padding + dilation * (kh - 1) + outputPadding + 1
        let outW = (wd - 1) * stride - 2 * padding + dilation * (kw - 1) + outputPadding + 1
        precondition(dy.shape == [batch, outH, outW, cout],
                     "convTranspose2dBackward: output gradient has shape \(dy.shape), the output has [\(batch), \(outH), \(outW), \(cout)]")
        let cg = cin / groups, og = cout / groups, patch = kh * kw * og
        // dy is the "input" of the equivalent convolution whose output grid is x's grid.
        var g = pk_conv_geometry(batch: batch, in_h: outH, in_w: outW, out_h: h, out_w: wd,
                                 kernel_h: kh, kernel_w: kw, stride_h: stride, stride_w: stride,
                                 dilation_h: dilation, dilation_w: dilation, pad_top: padding, pad_left: padding,
                                 pad_mode: PK_PAD_ZEROS)
        let rows = batch * h
        let chunkRows = max(1, min(rows, ConvolutionTuning.columnBudget / max(1, wd * patch)))
        var dx = Tensor(zeros: x.shape)
        var dk = Tensor(zeros: w.kernel.shape)
        let col = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * wd * patch)
        defer { col.deallocate() }
        x.withFloats { xs in dy.withFloats { dys in w.kernel.withFloats { ks in
            dx.withMutableFloats { dxs in dk.withMutableFloats { dks in
                for start in Swift.stride(from: 0, to: rows, by: chunkRows) {
                    let end = min(rows, start + chunkRows)
                    let m = (end - start) * wd
                    for group in 0..<groups {
                        withUnsafePointer(to: &g) { gp in
                            pool.parallelChunks(end - start) { r in
                                pk_im2col_nhwc(dys.baseAddress!, cout, group * og, og, gp, start + r.lowerBound,
                                               start + r.upperBound, col + r.lowerBound * wd * patch)
                            }
                        }
                        // dx[p, c] = sum over taps of col[p, tap] * K[c, tap]
                        gemm.sgemm(.none, .transposed, m: m, n: cg, k: patch, alpha: 1, a: col, lda: patch,
                                   b: ks.baseAddress! + group * cg * patch, ldb: patch, beta: 0,
                                   c: dxs.baseAddress! + start * wd * cin + group * cg, ldc: cin, pool: pool)
                        // dK[c, tap] += sum over pixels of x[p, c] * col[p, tap]
                        gemm.sgemm(.transposed, .none, m: cg, n: patch, k: m, alpha: 1,
                                   a: xs.baseAddress! + start * wd * cin + group * cg, lda: cin,
                                   b: col, ldb: patch, beta: 1, c: dks.baseAddress! + group * cg * patch, ldc: patch,
                                   pool: pool)
                    }
                }
            }}
        }}}
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([-1, cout]))
        return ConvTranspose2dGradients(input: dx, kernel: dk, bias: db)
    }
}
