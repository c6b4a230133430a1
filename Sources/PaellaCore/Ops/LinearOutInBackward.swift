// Backward pass of `linear` with a PyTorch-layout [out, in] weight (OutInLinearWeights).

/// Gradients of `linear(x, OutInLinearWeights)`: the weight gradient in PyTorch's `[out, in]` layout.
public struct OutInLinearGradients: Sendable {
    /// Like the input `[..., in]`; nil when not requested.
    public var input: Tensor?
    /// `[out, in]`, like `OutInLinearWeights.weight`.
    public var weight: Tensor
    /// `[out]`, or nil when the weights have no bias.
    public var bias: Tensor?
}

extension Compute {
    /// Gradients of `linear(x, w)` given the gradient `dy` (`[..., out]`) of its output: `dx = dy * weight`,
    /// `dweight = dyᵀ * x` over all rows, `dbias = sum of dy over rows`. Pass `inputGradient: false` when x is
    /// not trained (e.g. a conditioning input) to skip one GEMM.
    public func linearBackward(_ x: Tensor, _ w: OutInLinearWeights, outputGradient dy: Tensor,
                               inputGradient: Bool = true) -> OutInLinearGradients {
        let k = w.inFeatures, n = w.outFeatures
        precondition(x.dtype == .float32 && x.shape.last == k && dy.shape == Array(x.shape.dropLast()) + [n],
                     "linearBackward: output gradient \(dy.shape) and input \(x.shape) do not fit an [\(n), \(k)] weight")
        let rows = x.count / max(1, k)
        var dx: Tensor? = inputGradient ? Tensor(zeros: x.shape) : nil
        var dw = Tensor(zeros: [n, k])
        if rows > 0 {
            x.withFloats { xs in dy.withFloats { dys in w.weight.withFloats { ws in dw.withMutableFloats { dws in
                gemm.sgemm(.transposed, .none, m: n, n: k, k: rows, alpha: 1, a: dys.baseAddress!, lda: n,
                           b: xs.baseAddress!, ldb: k, beta: 0, c: dws.baseAddress!, ldc: k, pool: pool)
                if dx != nil {
                    dx!.withMutableFloats { dxs in
                        gemm.sgemm(.none, .none, m: rows, n: k, k: n, alpha: 1, a: dys.baseAddress!, lda: n,
                                   b: ws.baseAddress!, ldb: k, beta: 0, c: dxs.baseAddress!, ldc: k, pool: pool)
                    }
                }
            }}}}
        }
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([rows, n]))
        return OutInLinearGradients(input: dx, weight: dw, bias: db)
    }
}
