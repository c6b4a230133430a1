import CPaellaKernels

// Per-channel affine maps whose coefficients differ per batch item or per position (conditioning modulation,
// layer scale with a residual). They work in place on a freshly computed tensor, so a block allocates nothing.

extension Compute {
    /// `x = x * scale + shift` per channel of channels-last `x` `[B, ..., C]`, in place. `scale` and `shift` hold
    /// one row of `C` per batch item (`B * C` values, broadcast over the positions) or one row per position (x's
    /// element count).
    public func affineInPlace(_ x: inout Tensor, scale: Tensor, shift: Tensor) {
        precondition(x.dtype == .float32 && x.rank >= 2, "affineInPlace: expected float32 [B, ..., C], got \(x)")
        let batch = x.shape[0], c = x.shape[x.rank - 1]
        let rows = x.count / max(c, 1), rowsPerItem = rows / max(batch, 1)
        precondition(scale.count == shift.count && (scale.count == x.count || scale.count == batch * c),
                     "affineInPlace: scale \(scale.shape) and shift \(shift.shape) fit neither [B, C] nor \(x.shape)")
        if rows == 0 || c == 0 { return }
        let perPosition = scale.count == x.count && rowsPerItem != 1
        scale.withFloatPointer { sp in shift.withFloatPointer { hp in x.withMutableFloatPointer { xp in
            parallelRows(rows, rowLength: c) { r in
                if perPosition {
                    for row in r { pk_channel_affine(xp + row * c, xp + row * c, 1, c, sp + row * c, hp + row * c, 0) }
                } else {
                    // Runs of rows that belong to one batch item share one coefficient row.
                    var row = r.lowerBound
                    while row < r.upperBound {
                        let b = row / rowsPerItem, end = min(r.upperBound, (b + 1) * rowsPerItem)
                        pk_channel_affine(xp + row * c, xp + row * c, end - row, c, sp + b * c, hp + b * c, 0)
                        row = end
                    }
                }
            }
        }}}
    }

    /// `y = residual + scale * y` in place, with `scale` one value per channel (`[C]`) and `residual` shaped
    /// like `y` (a layer-scaled residual connection).
    public func scaleChannelsAndAdd(_ y: inout Tensor, channelScale scale: Tensor, residual: Tensor) {
        precondition(y.dtype == .float32 && residual.shape == y.shape && scale.count == y.shape.last ?? 0,
                     "scaleChannelsAndAdd: y \(y), residual \(residual), channel scale \(scale) do not fit")
        let c = scale.count, rows = y.count / max(c, 1)
        if rows == 0 { return }
        scale.withFloatPointer { sp in residual.withFloatPointer { rp in y.withMutableFloatPointer { yp in
            parallelRows(rows, rowLength: c) { r in
                // y = y * scale + residual: the channel affine kernel with a per-row shift.
                for row in r { pk_channel_affine(yp + row * c, yp + row * c, 1, c, sp, rp + row * c, 0) }
            }
        }}}
    }
}
