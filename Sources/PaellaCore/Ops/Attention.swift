import CPaellaKernels

// Scaled dot-product attention, as torch.nn.functional.scaled_dot_product_attention without dropout:
// softmax(Q K^T * scale + mask) V per batch and head, with GEMMs from the Compute's backend and the row softmax
// kernel in between.

extension Compute {
    /// Attention over `q` `[B, heads, Lq, D]`, `k` `[B, heads, Lk, D]` and `v` `[B, heads, Lk, Dv]` (each
    /// head's sequence contiguous, as after splitting the channels of `[B, L, heads * D]` into heads and
    /// moving heads before L). Returns `[B, heads, Lq, Dv]`.
    ///
    /// - Parameters:
    ///   - causal: position `i` attends only to `j <= i` (later positions get -inf), as OpenCLIP's text tower.
    ///   - scale: multiplies the scores; default `1 / sqrt(D)`.
    ///   - mask: an optional additive mask, `[Lq, Lk]` or `[B or 1, heads or 1, Lq, Lk]` (broadcast over the
    ///     dimensions of size 1); -inf removes a position. A query whose every key is removed gets zeros.
    public func scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, causal: Bool = false,
                                          scale: Float? = nil, mask: Tensor? = nil) -> Tensor {
        precondition(q.rank == 4 && k.rank == 4 && v.rank == 4,
                     "scaledDotProductAttention: q, k, v must be [B, heads, L, D], have \(q.shape), \(k.shape), \(v.shape)")
        let (batch, heads, lq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (lk, dv) = (k.shape[2], v.shape[3])
        precondition(k.shape == [batch, heads, lk, d],
                     "scaledDotProductAttention: k has shape \(k.shape), expected [\(batch), \(heads), Lk, \(d)]")
        precondition(v.shape == [batch, heads, lk, dv],
                     "scaledDotProductAttention: v has shape \(v.shape), expected [\(batch), \(heads), \(lk), Dv]")
        let alpha = scale ?? 1 / Float(d).squareRoot()
        // Where each (batch, head)'s [Lq, Lk] mask starts: a stride of 0 repeats it along that dimension.
        var maskStrides = (batch: 0, head: 0)
        if let mask {
            let s = mask.shape
            if mask.rank == 2 {
                precondition(s == [lq, lk], "scaledDotProductAttention: mask \(s) is not [\(lq), \(lk)]")
            } else {
                precondition(mask.rank == 4 && (s[0] == batch || s[0] == 1) && (s[1] == heads || s[1] == 1)
                             && s[2] == lq && s[3] == lk,
                             "scaledDotProductAttention: mask \(s) does not broadcast to [\(batch), \(heads), \(lq), \(lk)]")
                maskStrides = (batch: s[0] == 1 ? 0 : s[1] * lq * lk, head: s[1] == 1 ? 0 : lq * lk)
            }
        }
        var out = Tensor(uninitialized: [batch, heads, lq, dv])
        if out.count == 0 { return out }
        let pairs = batch * heads
        // With at least as many heads as threads, each thread runs whole heads with a single-threaded GEMM
        // (no synchronisation inside a head); with fewer, or when the GEMM is a BLAS library with threads of its
        // own (which must not be called from several threads at once), the heads run one after another and the
        // GEMM and the softmax use all threads.
        let perHead = pairs >= pool.threadCount && !gemm.threadsItself
        let serial = ThreadPool(threads: 1)
        q.withFloatPointer { qp in
            k.withFloatPointer { kp in
                v.withFloatPointer { vp in
                    withOptionalFloatPointer(mask) { mp in
                        out.withMutableFloatPointer { op in
                            func head(_ p: Int, scores: UnsafeMutablePointer<Float>, gemmPool: ThreadPool, rowsInParallel: Bool) {
                                let b = p / heads, h = p % heads
                                // scores = alpha * Q K^T  [Lq, Lk]
                                gemm.sgemm(.none, .transposed, m: lq, n: lk, k: d, alpha: alpha,
                                           a: qp + p * lq * d, lda: d, b: kp + p * lk * d, ldb: d,
                                           beta: 0, c: scores, ldc: lk, pool: gemmPool)
                                let maskBase = mp.map { $0 + b * maskStrides.batch + h * maskStrides.head }
                                let softmaxRows = { (r: Range<Int>) in
                                    for i in r {
                                        let row = scores + i * lk
                                        if let m = maskBase { for j in 0..<lk { row[j] += m[i * lk + j] } }
                                        if causal && i + 1 < lk { for j in (i + 1)..<lk { row[j] = -.infinity } }
                                    }
                                    pk_softmax(scores + r.lowerBound * lk, scores + r.lowerBound * lk, r.count, lk)
                                }
                                if rowsInParallel { parallelRows(lq, rowLength: lk, softmaxRows) } else { softmaxRows(0..<lq) }
                                // out = P V  [Lq, Dv]
                                gemm.sgemm(.none, .none, m: lq, n: dv, k: lk, alpha: 1,
                                           a: scores, lda: lk, b: vp + p * lk * dv, ldb: dv,
                                           beta: 0, c: op + p * lq * dv, ldc: dv, pool: gemmPool)
                            }
                            if perHead {
                                pool.parallelChunks(pairs) { range in
                                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(lq * lk, 1))
                                    defer { scores.deallocate() }
                                    for p in range { head(p, scores: scores, gemmPool: serial, rowsInParallel: false) }
                                }
                            } else {
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(lq * lk, 1))
                                defer { scores.deallocate() }
                                for p in 0..<pairs { head(p, scores: scores, gemmPool: pool, rowsInParallel: true) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
