import CPaellaKernels

// Softmax and log-softmax over the last dimension, their backward passes, and sampling from logits
// (Gumbel-max as in upstream Paella's utils.gumbel_sample, and plain argmax).

extension Compute {
    /// Softmax over the last dimension, numerically stable (the row maximum is subtracted first). Entries of
    /// -inf get probability 0; a row that is entirely -inf (fully masked) becomes all zeros rather than NaN.
    public func softmax(_ x: Tensor) -> Tensor {
        mapRows(x) { pk_softmax($0, $1, $2, $3) }
    }

    /// Log-softmax over the last dimension: `x - logsumexp(x)` per row. A fully -inf row stays -inf.
    public func logSoftmax(_ x: Tensor) -> Tensor {
        mapRows(x) { pk_log_softmax($0, $1, $2, $3) }
    }

    /// The gradient of `softmax` at `x` given the gradient of its output: `y * (g - sum(g * y))` per row,
    /// with `y = softmax(x)`. Pass the forward's output to skip recomputing it.
    public func softmaxBackward(_ x: Tensor, outputGradient: Tensor, output: Tensor? = nil) -> Tensor {
        let y = output ?? softmax(x)
        precondition(y.shape == x.shape, "softmaxBackward: output shape \(y.shape) differs from input shape \(x.shape)")
        return zipRows(y, outputGradient, "softmaxBackward") { pk_softmax_backward($0, $1, $2, $3, $4) }
    }

    /// The gradient of `logSoftmax` at `x` given the gradient of its output: `g - exp(y) * sum(g)` per row,
    /// with `y = logSoftmax(x)`. Pass the forward's output to skip recomputing it.
    public func logSoftmaxBackward(_ x: Tensor, outputGradient: Tensor, output: Tensor? = nil) -> Tensor {
        let y = output ?? logSoftmax(x)
        precondition(y.shape == x.shape, "logSoftmaxBackward: output shape \(y.shape) differs from input shape \(x.shape)")
        return zipRows(y, outputGradient, "logSoftmaxBackward") { pk_log_softmax_backward($0, $1, $2, $3, $4) }
    }

    /// Gumbel-max sampling over the last dimension, as upstream Paella's `gumbel_sample`: per row the index of
    /// the largest `logits / max(temperature, 1e-10) + g` with `g = -log(-log(u + 1e-20) + 1e-20)`, where
    /// `u` (same shape as `logits`) holds uniform draws in [0, 1) from the caller's random source. Ties go to
    /// the first index, as `torch.argmax`. Returns int32 indices shaped like `logits` without its last dimension.
    public func gumbelArgmax(logits: Tensor, uniforms: Tensor, temperature: Float) -> Tensor {
        precondition(logits.shape == uniforms.shape,
                     "gumbelArgmax: logits \(logits.shape) and uniforms \(uniforms.shape) differ in shape")
        return reduceRows(logits) { x, rows, n, out, r in
            uniforms.withFloatPointer { u in
                pk_gumbel_argmax(x + r.lowerBound * n, u + r.lowerBound * n, rows, n, temperature, out + r.lowerBound)
            }
        }
    }

    /// The index of the largest element of each row (last dimension), first index on ties, as int32 shaped
    /// like `x` without its last dimension.
    public func argmax(_ x: Tensor) -> Tensor {
        reduceRows(x) { x, rows, n, out, r in pk_argmax(x + r.lowerBound * n, rows, n, out + r.lowerBound) }
    }

    // MARK: Row helpers

    /// A new tensor with `kernel(input, output, rows, n)` applied to chunks of rows of the last dimension.
    func mapRows(_ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void) -> Tensor {
        precondition(x.rank >= 1, "row op: input must have at least one dimension, has shape \(x.shape)")
        let n = x.shape[x.rank - 1]
        let rows = n == 0 ? 0 : x.count / n
        var out = Tensor(uninitialized: x.shape)
        x.withFloatPointer { src in
            out.withMutableFloatPointer { dst in
                parallelRows(rows, rowLength: n) { r in
                    kernel(src + r.lowerBound * n, dst + r.lowerBound * n, r.count, n)
                }
            }
        }
        return out
    }

    /// Like `mapRows` with two inputs of the same shape: `kernel(a, b, output, rows, n)`.
    func zipRows(_ a: Tensor, _ b: Tensor, _ op: String,
                 _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void) -> Tensor {
        precondition(a.shape == b.shape && a.rank >= 1, "\(op): shapes \(a.shape) and \(b.shape) differ")
        let n = a.shape[a.rank - 1]
        let rows = n == 0 ? 0 : a.count / n
        var out = Tensor(uninitialized: a.shape)
        a.withFloatPointer { ap in
            b.withFloatPointer { bp in
                out.withMutableFloatPointer { dst in
                    parallelRows(rows, rowLength: n) { r in
                        let o = r.lowerBound * n
                        kernel(ap + o, bp + o, dst + o, r.count, n)
                    }
                }
            }
        }
        return out
    }

    /// One int32 per row: `kernel(x, rowsInChunk, n, out, chunk)` fills `out[chunk]` from rows `chunk` of `x`.
    private func reduceRows(_ x: Tensor,
                            _ kernel: (UnsafePointer<Float>, Int, Int, UnsafeMutablePointer<Int32>, Range<Int>) -> Void) -> Tensor {
        precondition(x.rank >= 1 && x.shape[x.rank - 1] > 0, "argmax: rows must not be empty, shape is \(x.shape)")
        let n = x.shape[x.rank - 1]
        let rows = x.count / n
        var out = Tensor(uninitialized: Array(x.shape.dropLast()), dtype: .int32)
        x.withFloatPointer { src in
            out.withUnsafeMutableBufferPointer(as: Int32.self) { dst in
                guard let d = dst.baseAddress else { return }
                parallelRows(rows, rowLength: n) { r in kernel(src, r.count, n, d, r) }
            }
        }
        return out
    }
}
