// Backward pass of `upsampleNearest2x` (taming's Upsample before its conv): each input pixel was copied to a
// 2x2 block, so its gradient is the sum of that block's gradients.

extension Compute {
    /// Gradient of `upsampleNearest2x` given the gradient `dy` `[B, 2H, 2W, C]` of its output: `[B, H, W, C]`.
    public func upsampleNearest2xBackward(outputGradient dy: Tensor) -> Tensor {
        precondition(dy.rank == 4 && dy.dtype == .float32 && dy.shape[1] % 2 == 0 && dy.shape[2] % 2 == 0,
                     "upsampleNearest2xBackward: expected float32 [B, 2H, 2W, C], got \(dy)")
        let (b, h, w, c) = (dy.shape[0], dy.shape[1] / 2, dy.shape[2] / 2, dy.shape[3])
        var dx = Tensor(uninitialized: [b, h, w, c])
        dy.withFloatPointer { g in dx.withMutableFloatPointer { d in
            pool.parallelChunks(b * h) { rows in
                for row in rows {
                    let (n, y) = (row / h, row % h)
                    let top = g + (n * 2 * h + 2 * y) * 2 * w * c, bottom = top + 2 * w * c
                    let out = d + row * w * c
                    for x in 0..<w {
                        let t0 = top + 2 * x * c, b0 = bottom + 2 * x * c, o = out + x * c
                        for ch in 0..<c { o[ch] = (t0[ch] + t0[c + ch]) + (b0[ch] + b0[c + ch]) }
                    }
                }
            }
        }}
        return dx
    }
}
