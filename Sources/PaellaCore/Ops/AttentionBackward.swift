// Backward pass of `scaledDotProductAttention` (no mask tensor; causal or not), as the gradient of
// torch.nn.functional.scaled_dot_product_attention without dropout. The probabilities are recomputed per head
// (as flash-attention's backward does) instead of being kept from the forward.
import CPaellaKernels

/// Gradients of `scaledDotProductAttention` with respect to q, k and v, shaped like them.
public struct AttentionGradients: Sendable {
    public var q: Tensor
    public var k: Tensor
    public var v: Tensor
}

extension Compute {
    /// Gradients of `scaledDotProductAttention(q:k:v:causal:scale:)` given the gradient `dOut`
    /// `[B, heads, Lq, Dv]` of its output. Per head, with `P = softmax(scale * Q Kᵀ)` (masked when causal):
    /// `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP - rowsum(dP ∘ P))`, `dQ = scale * dS K`, `dK = scale * dSᵀ Q`.
    public func scaledDotProductAttentionBackward(q: Tensor, k: Tensor, v: Tensor, outputGradient dOut: Tensor,
                                                  causal: Bool = false, scale: Float? = nil) -> AttentionGradients {
        precondition(q.rank == 4 && k.rank == 4 && v.rank == 4 && q.dtype == .float32,
                     "scaledDotProductAttentionBackward: q, k, v must be float32 [B, heads, L, D]")
        let (batch, heads, lq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (lk, dv) = (k.shape[2], v.shape[3])
        precondition(k.shape == [batch, heads, lk, d] && v.shape == [batch, heads, lk, dv] && dOut.shape == [batch, heads, lq, dv],
                     "scaledDotProductAttentionBackward: shapes q \(q.shape), k \(k.shape), v \(v.shape), dOut \(dOut.shape) do not fit")
        let alpha = scale ?? 1 / Float(d).squareRoot()
        var dq = Tensor(zeros: q.shape), dk = Tensor(zeros: k.shape), dvT = Tensor(zeros: v.shape)
        let pairs = batch * heads
        if pairs == 0 || lq == 0 || lk == 0 { return AttentionGradients(q: dq, k: dk, v: dvT) }
        // As the forward: whole heads per thread when there are enough of them (single-threaded GEMMs),
        // otherwise one head after another with the GEMMs and softmax rows on all threads.
        let perHead = pairs >= pool.threadCount && !gemm.threadsItself
        let serial = ThreadPool(threads: 1)
        q.withFloatPointer { qp in k.withFloatPointer { kp in v.withFloatPointer { vp in dOut.withFloatPointer { gp in
        dq.withMutableFloatPointer { dqp in dk.withMutableFloatPointer { dkp in dvT.withMutableFloatPointer { dvp in
            func head(_ p: Int, probabilities: UnsafeMutablePointer<Float>, dProbabilities: UnsafeMutablePointer<Float>,
                      gemmPool: ThreadPool, rowsInParallel: Bool) {
                let qh = qp + p * lq * d, kh = kp + p * lk * d, vh = vp + p * lk * dv, gh = gp + p * lq * dv
                // P = softmax(alpha Q Kᵀ) [Lq, Lk]
                gemm.sgemm(.none, .transposed, m: lq, n: lk, k: d, alpha: alpha, a: qh, lda: d, b: kh, ldb: d,
                           beta: 0, c: probabilities, ldc: lk, pool: gemmPool)
                // dP = dO Vᵀ [Lq, Lk]
                gemm.sgemm(.none, .transposed, m: lq, n: lk, k: dv, alpha: 1, a: gh, lda: dv, b: vh, ldb: dv,
                           beta: 0, c: dProbabilities, ldc: lk, pool: gemmPool)
                let rows = { (r: Range<Int>) in
                    for i in r where causal && i + 1 < lk {
                        let row = probabilities + i * lk
                        for j in (i + 1)..<lk { row[j] = -.infinity }
                    }
                    let o = r.lowerBound * lk
                    pk_softmax(probabilities + o, probabilities + o, r.count, lk)
                    // dS = P (dP - rowsum(dP P)), written over dP
                    pk_softmax_backward(probabilities + o, dProbabilities + o, dProbabilities + o, r.count, lk)
                }
                if rowsInParallel { parallelRows(lq, rowLength: lk, rows) } else { rows(0..<lq) }
                // dV = Pᵀ dO [Lk, Dv]; dQ = alpha dS K [Lq, D]; dK = alpha dSᵀ Q [Lk, D]
                gemm.sgemm(.transposed, .none, m: lk, n: dv, k: lq, alpha: 1, a: probabilities, lda: lk, b: gh, ldb: dv,
                           beta: 0, c: dvp + p * lk * dv, ldc: dv, pool: gemmPool)
                gemm.sgemm(.none, .none, m: lq, n: d, k: lk, alpha: alpha, a: dProbabilities, lda: lk, b: kh, ldb: d,
                           beta: 0, c: dqp + p * lq * d, ldc: d, pool: gemmPool)
                gemm.sgemm(.transposed, .none, m: lk, n: d, k: lq, alpha: alpha, a: dProbabilities, lda: lk, b: qh, ldb: d,
                           beta: 0, c: dkp + p * lk * d, ldc: d, pool: gemmPool)
            }
            if perHead {
                pool.parallelChunks(pairs) { range in
                    let pBuffer = UnsafeMutablePointer<Float>.allocate(capacity: lq * lk)
                    let dpBuffer = UnsafeMutablePointer<Float>.allocate(capacity: lq * lk)
                    defer { pBuffer.deallocate(); dpBuffer.deallocate() }
                    for p in range { head(p, probabilities: pBuffer, dProbabilities: dpBuffer, gemmPool: serial, rowsInParallel: false) }
                }
            } else {
                let pBuffer = UnsafeMutablePointer<Float>.allocate(capacity: lq * lk)
                let dpBuffer = UnsafeMutablePointer<Float>.allocate(capacity: lq * lk)
                defer { pBuffer.deallocate(); dpBuffer.deallocate() }
                for p in 0..<pairs { head(p, probabilities: pBuffer, dProbabilities: dpBuffer, gemmPool: pool, rowsInParallel: true) }
            }
        }}}}}}}
        return AttentionGradients(q: dq, k: dk, v: dvT)
    }
}
