// Cross-entropy with label smoothing over token logits (PyTorch nn.CrossEntropyLoss(label_smoothing=ε),
// mean reduction), its gradient, and the token accuracy paella.py logs.
import Foundation
import PaellaCore

/// The loss of one batch of token logits, with its gradient.
public struct TokenLoss: Sendable {
    /// Mean over positions of `(1 - ε) * -log p[target] + ε * mean over classes of -log p`.
    public var loss: Double
    /// Fraction of positions whose argmax is the target.
    public var accuracy: Double
    /// d(scale * loss) / d logits, shaped like the logits.
    public var logitsGradient: Tensor
}

extension Compute {
    /// Cross-entropy with label smoothing `ε` between channels-last logits `[..., K]` and integer targets
    /// `[...]` (PyTorch's definition: the smoothed target is `(1 - ε) onehot + ε / K`). The gradient is of
    /// `scale * loss` (`scale = 1 / accumulation steps` gives paella.py's `loss / accum_grad`):
    /// `scale * (softmax - (1 - ε) onehot - ε / K) / positions`.
    public func tokenCrossEntropy(logits: Tensor, targets: Tensor, labelSmoothing eps: Double, scale: Double = 1) -> TokenLoss {
        let k = logits.shape.last ?? 0
        let rows = logits.count / max(k, 1)
        let labels = targets.integers()
        precondition(labels.count == rows && Array(logits.shape.dropLast()) == targets.shape,
                     "tokenCrossEntropy: targets \(targets.shape) do not fit logits \(logits.shape)")
        if rows == 0 || k == 0 { return TokenLoss(loss: 0, accuracy: 0, logitsGradient: Tensor(zeros: logits.shape)) }
        let logp = logSoftmax(logits)
        var gradient = Tensor(uninitialized: logits.shape)
        let onTarget = Float(1 - eps), uniform = Float(eps / Double(k)), g = Float(scale / Double(rows))
        // Rows in fixed chunks whose partial sums are added in chunk order: the same result on any thread count.
        let chunkRows = 64, chunks = (rows + chunkRows - 1) / chunkRows
        var partialLoss = [Double](repeating: 0, count: chunks), partialCorrect = [Int](repeating: 0, count: chunks)
        logp.withFloats { lp in logits.withFloats { z in gradient.withMutableFloats { d in
        partialLoss.withUnsafeMutableBufferPointer { pl in partialCorrect.withUnsafeMutableBufferPointer { pc in
            let (lpp, zp, dp, plp, pcp) = (lp.baseAddress!, z.baseAddress!, d.baseAddress!, pl.baseAddress!, pc.baseAddress!)
            pool.parallelFor(chunks) { chunk in
                var total = 0.0, correct = 0
                for row in (chunk * chunkRows)..<min(rows, (chunk + 1) * chunkRows) {
                    let o = row * k, y = labels[row]
                    precondition(y >= 0 && y < k, "tokenCrossEntropy: target \(y) is outside \(k) classes")
                    var sum = 0.0, best = 0
                    for j in 0..<k {
                        sum += Double(lpp[o + j])
                        if zp[o + j] > zp[o + best] { best = j }
                        dp[o + j] = (Foundation.exp(lpp[o + j]) - uniform) * g
                    }
                    dp[o + y] -= onTarget * g
                    total += -(1 - eps) * Double(lpp[o + y]) - eps * sum / Double(k)
                    if best == y { correct += 1 }
                }
                plp[chunk] = total
                pcp[chunk] = correct
            }
        }}
        }}}
        let total = partialLoss.reduce(0, +), correct = partialCorrect.reduce(0, +)
        return TokenLoss(loss: total / Double(rows), accuracy: Double(correct) / Double(rows), logitsGradient: gradient)
    }
}
