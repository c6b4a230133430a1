// Typical filtering as done inline in `sample` of dome272/Paella utils.py (commit 3671515).
// Changed on purpose, for speed (it runs on every position of every sampling step: 1,024 rows of 8,192 logits a
// step for v1), with the same result:
// - Rows are filtered one at a time, each in buffers of its own thread: the softmax and log-softmax of a row are
//   computed there (by the same row kernels as `softmax`/`logSoftmax`) instead of as two whole-tensor copies.
// - Instead of sorting every row by score, the probability mass is first summed per bucket of scores (the top 12
//   bits of a score's float bits: scores are non-negative, so their bits order like their values). The bucket in
//   which the cumulative mass reaches `mass` is the only one sorted, by score and then index (a stable sort's
//   order), to find the entry where it is reached (pk_typical_threshold, whose AVX-512 version gathers the
//   bucket's entries 16 at a time).
// - `typicalFilter` writes the filtered logits directly, without a mask tensor in between.
// - The per-entry passes (softmax, log-softmax, entropy, scores, the bucket histogram) and the write of the
//   filtered row are C kernels (pk_typical_scores, pk_typical_apply; AVX-512 or AVX2 where the CPU has them), so
//   log p is never stored and the entropy is summed in SIMD lanes.
import CPaellaKernels

extension Compute {
    /// Upstream's typical filtering of logits `[..., V]`: which entries it sets to -inf (1 = removed), as uint8.
    ///
    /// Per row: log-softmax, entropy `H`, score `|-log p - H|`; in order of ascending score, the cumulative
    /// softmax; every entry scoring above the entry at which the cumulative mass first reaches `mass` is removed
    /// (ties with it are kept), except that the `minTokens` best-scoring entries are kept when `minTokens > 1`.
    public func typicalFilterMask(_ logits: Tensor, mass: Float, minTokens: Int) -> Tensor {
        var removed = Tensor(uninitialized: logits.shape, dtype: .uint8)
        removed.withUnsafeMutableBufferPointer(as: UInt8.self) { out in
            let o = out.baseAddress!
            typicalRows(logits, mass: mass, minTokens: minTokens) { row, x, n, scratch in
                for j in 0..<n { o[row * n + j] = scratch.isRemoved(j) ? 1 : 0 }
            }
        }
        return removed
    }

    /// `logits` with the entries `typicalFilterMask` removes set to -inf.
    public func typicalFilter(_ logits: Tensor, mass: Float, minTokens: Int) -> Tensor {
        var out = Tensor(uninitialized: logits.shape)
        out.withMutableFloats { y in
            let yp = y.baseAddress!
            typicalRows(logits, mass: mass, minTokens: minTokens) { row, x, n, scratch in scratch.apply(x, to: yp + row * n) }
        }
        return out
    }

    /// Runs the selection on every row of `logits` (in parallel, rows in chunks) and hands each row's logits
    /// and its thread's scratch, which knows what the row removes, to `emit` (called on the row's thread; rows
    /// are disjoint).
    private func typicalRows(_ logits: Tensor, mass: Float, minTokens: Int,
                             emit: (_ row: Int, _ logits: UnsafePointer<Float>, _ n: Int, _ scratch: TypicalRowScratch) -> Void) {
        precondition(logits.dtype == .float32 && logits.rank >= 1 && (logits.shape.last ?? 0) > 0,
                     "typicalFilter: expected float32 logits [..., V], got \(logits)")
        let n = logits.shape[logits.rank - 1], rows = logits.count / n
        logits.withFloats { xs in
            let x = xs.baseAddress!
            pool.parallelChunks(rows) { chunk in
                let scratch = TypicalRowScratch(n: n)
                for row in chunk {
                    scratch.select(x + row * n, mass: mass, minTokens: minTokens)
                    emit(row, x + row * n, n, scratch)
                }
            }
        }
    }
}

/// One thread's buffers for filtering rows of `n` logits (raw memory: the loops below run 8,192 times a row, and
/// array accesses would check bounds and uniqueness in each).
private final class TypicalRowScratch {
    let n: Int
    let p: UnsafeMutablePointer<Float>
    /// Each entry's score as float bits (non-negative floats order like their bits).
    let scoreBits: UnsafeMutablePointer<UInt32>
    /// Probability mass and entry count per bucket of scores: bucket = top 12 bits of the score's bits (sign 0,
    /// so 2048 buckets).
    let bucketMass: UnsafeMutablePointer<Double>, bucketCount: UnsafeMutablePointer<Int32>
    static let bucketShift: UInt32 = 20
    static let buckets = 1 << (31 - Int(bucketShift))
    /// Scratch for keys (score bits << 32 | index): the threshold search sorts a bucket's, the minTokens search
    /// selects among all.
    let keyScratch: UnsafeMutablePointer<UInt64>
    /// What `select` found for the current row.
    var thresholdBits = UInt32.max
    var lastKept: UInt64?

    init(n: Int) {
        self.n = n
        p = .allocate(capacity: n)
        scoreBits = .allocate(capacity: n)
        bucketMass = .allocate(capacity: Self.buckets)
        bucketCount = .allocate(capacity: Self.buckets)
        keyScratch = .allocate(capacity: n)
    }

    deinit {
        p.deallocate(); scoreBits.deallocate()
        bucketMass.deallocate(); bucketCount.deallocate(); keyScratch.deallocate()
    }

    /// Finds, for the row at `x`, the score threshold above which entries are removed and, when `minTokens > 1`,
    /// the (score, index) key of the last entry kept regardless.
    func select(_ x: UnsafePointer<Float>, mass: Float, minTokens: Int) {
        let n = self.n
        let (p, scoreBits, bucketMass, bucketCount) = (p, scoreBits, bucketMass, bucketCount)
        // p, the scores |-log p - H| and the mass and count per score bucket, in one kernel.
        _ = pk_typical_scores(x, n, p, scoreBits, Int32(Self.bucketShift), bucketMass, bucketCount)
        // The entry at which the cumulative probability in (score, index) order first reaches the mass (every
        // entry scores at most the largest when it is never reached: nothing is removed then), sorting only the
        // bucket where it is reached.
        thresholdBits = pk_typical_threshold(p, scoreBits, n, mass, Int32(Self.bucketShift), bucketMass, bucketCount, keyScratch)
        // The minTokens best entries are always kept: the key of rank minTokens - 1 (unit weights).
        lastKept = nil
        if minTokens > 1 {
            for j in 0..<n { keyScratch[j] = UInt64(scoreBits[j]) << 32 | UInt64(j) }
            lastKept = firstKeyReaching(Double(minTokens), in: UnsafeMutableBufferPointer(start: keyScratch, count: n),
                                        weight: { _ in 1 }, reached: { $0 >= Double(minTokens) })
        }
    }

    /// Whether entry `j` of the row last `select`ed is removed.
    @inline(__always) func isRemoved(_ j: Int) -> Bool {
        scoreBits[j] > thresholdBits && (lastKept.map { UInt64(scoreBits[j]) << 32 | UInt64(j) > $0 } ?? true)
    }

    /// The row last `select`ed, filtered, into `y` (which may be `x`).
    func apply(_ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>) {
        if lastKept == nil { pk_typical_apply(x, scoreBits, thresholdBits, y, n); return }
        for j in 0..<n { y[j] = isRemoved(j) ? -.infinity : x[j] }
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
