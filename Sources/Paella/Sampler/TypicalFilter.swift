// Typical filtering as done inline in `sample` of dome272/Paella utils.py (commit 3671515).
// Changed on purpose: rows run in parallel; the sort is by (score, index), i.e. stable, so ties are deterministic.
import Foundation
import PaellaCore

extension Compute {
    /// Upstream's typical filtering of logits `[..., V]`: which entries it sets to -inf (1 = removed), as uint8.
    ///
    /// Per row: log-softmax, entropy `H`, score `|-log p - H|`; the entries sorted by score (ascending), the
    /// cumulative softmax of the raw logits in that order; every entry scoring above the entry at which the
    /// cumulative mass first reaches `mass` is removed (so ties with it are kept), except that the `minTokens`
    /// best-scoring entries are always kept when `minTokens > 1`.
    public func typicalFilterMask(_ logits: Tensor, mass: Float, minTokens: Int) -> Tensor {
        precondition(logits.dtype == .float32 && logits.rank >= 1 && (logits.shape.last ?? 0) > 0,
                     "typicalFilterMask: expected float32 logits [..., V], got \(logits)")
        let n = logits.shape[logits.rank - 1], rows = logits.count / n
        var removed = Tensor(uninitialized: logits.shape, dtype: .uint8)
        logits.withFloats { x in removed.withUnsafeMutableBufferPointer(as: UInt8.self) { out in
            let xp = x.baseAddress!, op = out.baseAddress!
            pool.parallelChunks(rows) { chunk in
                var scratch = TypicalScratch(n)
                for row in chunk {
                    scratch.filterRow(xp + row * n, n: n, mass: mass, minTokens: minTokens, removed: op + row * n)
                }
            }
        }}
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

/// Per-thread buffers for one row of typical filtering.
private struct TypicalScratch {
    var logp: [Float]
    var keys: [UInt64]
    var probabilities: [Float]

    init(_ n: Int) {
        logp = [Float](repeating: 0, count: n)
        keys = [UInt64](repeating: 0, count: n)
        probabilities = [Float](repeating: 0, count: n)
    }

    mutating func filterRow(_ x: UnsafePointer<Float>, n: Int, mass: Float, minTokens: Int,
                            removed: UnsafeMutablePointer<UInt8>) {
        // log_softmax as PyTorch computes it: (x - max) - log(sum(exp(x - max))).
        var m = -Float.infinity
        for j in 0..<n { m = max(m, x[j]) }
        var sum: Float = 0
        for j in 0..<n { sum += Foundation.exp(x[j] - m) }
        let logSum = Foundation.log(sum)
        var entropy: Float = 0  // -nansum(logp * p): a -inf logit contributes nothing
        for j in 0..<n {
            logp[j] = (x[j] - m) - logSum
            let term = logp[j] * Foundation.exp(logp[j])
            if !term.isNaN { entropy -= term }
        }
        // Sort by score |-logp - H| ascending, ties by index: a non-negative float's bits order like its value.
        for j in 0..<n {
            let score = abs(-logp[j] - entropy)
            keys[j] = UInt64(score.bitPattern) << 32 | UInt64(j)
        }
        keys.sort()
        // Softmax of the logits in sorted order, then its running sum (PyTorch accumulates cumsum in double).
        var total: Float = 0
        for k in 0..<n {
            probabilities[k] = Foundation.exp(x[Int(keys[k] & 0xFFFF_FFFF)] - m)
            total += probabilities[k]
        }
        let inverse = 1 / total
        var running: Double = 0
        var lastIndex = 0  // how many cumulative sums stay below the mass
        for k in 0..<n {
            running += Double(probabilities[k] * inverse)
            if Float(running) < mass { lastIndex += 1 }
        }
        let threshold = UInt32(truncatingIfNeeded: keys[min(lastIndex, n - 1)] >> 32)
        let alwaysKept = minTokens > 1 ? minTokens : 0
        for k in 0..<n {
            let j = Int(keys[k] & 0xFFFF_FFFF)
            removed[j] = k >= alwaysKept && UInt32(truncatingIfNeeded: keys[k] >> 32) > threshold ? 1 : 0
        }
    }
}
