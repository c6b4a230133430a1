// Backward pass of a depthwise convolution (groups == Cin == Cout), direct: every channel is independent, so
// threads take disjoint channel ranges and add into dx and the kernel gradient without races, in a fixed
// order (the result does not depend on the thread count). The general im2col path of conv2dBackward would run
// two tiny GEMMs and an im2col/col2im pass per channel (one group each).

extension Compute {
    /// `conv2dBackward` for depthwise weights (`w.isDepthwise`), any stride, dilation and zero or reflection padding.
    func depthwiseConv2dBackward(_ x: Tensor, _ w: Conv2dWeights, outputGradient dy: Tensor, stride: Int,
                                 padding: Padding2d, paddingMode: PaddingMode, dilation: Int) -> Conv2dGradients {
        precondition(w.isDepthwise && x.rank == 4 && x.shape[3] == w.outChannels, "depthwiseConv2dBackward: not a depthwise convolution of \(x.shape)")
        let (batch, h, wd, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (kh, kw) = (w.kernelHeight, w.kernelWidth)
        let outH = (h + padding.top + padding.bottom - dilation * (kh - 1) - 1) / stride + 1
        let outW = (wd + padding.left + padding.right - dilation * (kw - 1) - 1) / stride + 1
        precondition(dy.shape == [batch, outH, outW, c],
                     "conv2dBackward: output gradient has shape \(dy.shape), the output has [\(batch), \(outH), \(outW), \(c)]")
        if paddingMode == .reflect {
            precondition(padding.top < h && padding.bottom < h && padding.left < wd && padding.right < wd,
                         "conv2d: reflection padding \(padding) must be smaller than the \(h)x\(wd) input")
        }
        let reflect = paddingMode == .reflect
        func source(_ i: Int, _ n: Int) -> Int {
            if i >= 0 && i < n { return i }
            if !reflect { return -1 }
            let j = i < 0 ? -i : 2 * n - 2 - i
            return j >= 0 && j < n ? j : -1
        }
        // Source row / column of each output position and tap (-1: zero padding).
        let rowSource = (0..<outH).flatMap { oy in (0..<kh).map { source(oy * stride - padding.top + $0 * dilation, h) } }
        let colSource = (0..<outW).flatMap { ox in (0..<kw).map { source(ox * stride - padding.left + $0 * dilation, wd) } }
        var dx = Tensor(zeros: x.shape)
        var dk = Tensor(zeros: w.kernel.shape)  // [kH, kW, 1, C]
        x.withFloats { xs in dy.withFloats { gs in w.kernel.withFloats { ks in
            dx.withMutableFloats { dxs in dk.withMutableFloats { dks in
                let (xp, gp, kp, dxp, dkp) = (xs.baseAddress!, gs.baseAddress!, ks.baseAddress!, dxs.baseAddress!, dks.baseAddress!)
                pool.parallelChunks(c, minChunk: 16) { channels in
                    let (c0, n) = (channels.lowerBound, channels.count)
                    for b in 0..<batch {
                        for oy in 0..<outH {
                            for ox in 0..<outW {
                                let g = gp + ((b * outH + oy) * outW + ox) * c + c0
                                for ky in 0..<kh {
                                    let iy = rowSource[oy * kh + ky]
                                    if iy < 0 { continue }
                                    for kx in 0..<kw {
                                        let ix = colSource[ox * kw + kx]
                                        if ix < 0 { continue }
                                        let pixel = ((b * h + iy) * wd + ix) * c + c0, tap = (ky * kw + kx) * c + c0
                                        let (src, dst, k, dk) = (xp + pixel, dxp + pixel, kp + tap, dkp + tap)
                                        for j in 0..<n {
                                            dst[j] += k[j] * g[j]
                                            dk[j] += src[j] * g[j]
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }}
        }}}
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([-1, c]))
        return Conv2dGradients(input: dx, kernel: dk, bias: db)
    }
}
