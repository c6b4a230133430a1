// Typical filtering as done inline in `sample` of dome272/Paella utils.py (commit 3671515).
// Changed on purpose: instead of sorting every row (8192 entries at every position of every step), a weighted
// quickselect finds the entry at which the cumulative mass in score order reaches `mass`; ties in score are
// ordered by index (a stable sort's order). Rows run in parallel.

extension Compute {
    /// Upstream's typical filtering of logits `[..., V]`: which entries it sets to -inf (1 = removed), as uint8.
    ///
    /// Per row: log-softmax, entropy `H`, score `|-log p - H|`; in order of ascending score, the cumulative
    /// softmax; every entry scoring above the entry at which the cumulative mass first reaches `mass` is removed
    /// (ties with it are kept), except that the `minTokens` best-scoring entries are kept when `minTokens > 1`.
    public func typicalFilterMask(_ logits: Tensor, mass: Float, minTokens: Int) -> Tensor {
        precondition(logits.dtype == .float32 && logits.rank >= 1 && (logits.shape.last ?? 0) > 0,
                     "typicalFilterMask: expected float32 logits [..., V], got \(logits)")
        let n = logits.shape[logits.rank - 1], rows = logits.count / n
        let logp = logSoftmax(logits), p = softmax(logits)
        var removed = Tensor(uninitialized: logits.shape, dtype: .uint8)
        logp.withFloats { lp in p.withFloats { pp in removed.withUnsafeMutableBufferPointer(as: UInt8.self) { out in
            let (l, q, o) = (lp.baseAddress!, pp.baseAddress!, out.baseAddress!)
            pool.parallelChunks(rows) { chunk in
                var keys = [UInt64](repeating: 0, count: n)
                for row in chunk {
                    typicalRow(logp: l + row * n, p: q + row * n, n: n, mass: mass, minTokens: minTokens,
                               keys: &keys, removed: o + row * n)
                }
            }
        }}}
        return removed
    }

    /// `logits` with the entries `typicalFilterMask` removes set to -inf.
    public func typicalFilter(_ logits: Tensor, mass: Float, minTokens: Int) -> Tensor {
        let removed = typicalFilterMask(logits, mass: mass, minTokens: minTokens)
        var out = logits.toFloat32()
        removed.withUnsafeBufferPointer(as: UInt8.self) { r in out.withMutableFloats { y in
            for i in y.indices where r[i] != 0 { y[i] = -.infinity }
        }}
        return out
    }
}

/// One row: `keys[k]` = score bits << 32 | index (a non-negative float's bits order like its value, so the
/// keys order like upstream's stable sort by score).
private func typicalRow(logp: UnsafePointer<Float>, p: UnsafePointer<Float>, n: Int, mass: Float, minTokens: Int,
                        keys: inout [UInt64], removed: UnsafeMutablePointer<UInt8>) {
    var entropy: Float = 0  // -nansum(logp * p): a -inf logit contributes nothing
    for j in 0..<n {
        let term = logp[j] * p[j]
        if !term.isNaN { entropy -= term }
    }
    for j in 0..<n { keys[j] = UInt64(abs(-logp[j] - entropy).bitPattern) << 32 | UInt64(j) }
    // The entry at which the cumulative probability in key order first reaches the mass.
    let threshold = keys.withUnsafeMutableBufferPointer { k in
        firstKeyReaching(Double(mass), in: k, weight: { Double(p[Int($0 & 0xFFFF_FFFF)]) }, reached: { Float($0) >= mass })
    }
    let thresholdScore = threshold >> 32
    // The minTokens best entries are always kept: the key of rank minTokens - 1 (unit weights).
    let lastKept: UInt64 = minTokens > 1 ? keys.withUnsafeMutableBufferPointer { k in
        firstKeyReaching(Double(minTokens), in: k, weight: { _ in 1 }, reached: { $0 >= Double(minTokens) })
    } : 0
    for j in 0..<n {
        let key = UInt64(abs(-logp[j] - entropy).bitPattern) << 32 | UInt64(j)
        removed[j] = key >> 32 > thresholdScore && (minTokens <= 1 || key > lastKept) ? 1 : 0
    }
}

/// Weighted quickselect: the smallest key whose cumulative weight (over all keys up to and including it, in
/// ascending order) satisfies `reached`; the largest key when none does. Reorders `keys`.
private func firstKeyReaching(_ target: Double, in keys: UnsafeMutableBufferPointer<UInt64>,
                              weight: (UInt64) -> Double, reached: (Double) -> Bool) -> UInt64 {
    var lo = 0, hi = keys.count, below = 0.0  // below: total weight of the keys known to sort before lo
    while hi - lo > 32 {
        // Median-of-three pivot, then partition [lo, hi) into < pivot, the pivot, > pivot.
        let (a, b, c) = (keys[lo], keys[(lo + hi) / 2], keys[hi - 1])
        let pivot = max(min(a, b), min(max(a, b), c))
        var m = lo
        var left = 0.0
        for i in lo..<hi where keys[i] < pivot {
            keys.swapAt(i, m)
            left += weight(keys[m])
            m += 1
        }
        if let at = (m..<hi).first(where: { keys[$0] == pivot }) { keys.swapAt(at, m) }
        if reached(below + left) {
            hi = m
        } else if reached(below + left + weight(pivot)) {
            return pivot
        } else {
            below += left + weight(pivot)
            lo = m + 1
        }
    }
    var rest = UnsafeMutableBufferPointer(rebasing: keys[lo..<hi])
    rest.sort()
    for key in rest {
        below += weight(key)
        if reached(below) { return key }
    }
    return keys.max() ?? 0
}
