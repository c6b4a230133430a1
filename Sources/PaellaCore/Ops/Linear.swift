// Fully connected layers over the last axis, with the backward pass as a separate pure function.

/// Linear-layer weights converted once for compute.
///
/// `weight` is float32 `[in, out]` (PyTorch's `[out, in]` transposed), so `y = x * weight + bias` is a plain
/// GEMM; a 1x1 convolution kernel `[1, 1, in, out]` has the same layout.
public struct LinearWeights: Sendable {
    public let weight: Tensor
    /// `[out]` float32, or nil.
    public let bias: Tensor?

    public var inFeatures: Int { weight.shape[0] }
    public var outFeatures: Int { weight.shape[1] }

    /// Converts PyTorch `Linear.weight` `[out, in]` (float32, float16 or bfloat16) and `Linear.bias` `[out]`.
    public init(pytorch weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2, "LinearWeights: expected an [out, in] weight, got shape \(weight.shape)")
        self.init(weight: (weight.dtype == .float32 ? weight : weight.toFloat32()).permuted([1, 0]), bias: bias)
    }

    /// Wraps a weight already in this type's `[in, out]` layout (e.g. after an optimizer step, or a CLIP
    /// projection matrix that PyTorch stores as `[in, out]` and applies with `x @ proj`).
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2, "LinearWeights: expected an [in, out] weight, got shape \(weight.shape)")
        let w = weight.dtype == .float32 ? weight : weight.toFloat32()
        if let bias {
            precondition(bias.count == w.shape[1], "LinearWeights: bias has \(bias.count) values for \(w.shape[1]) outputs")
        }
        self.weight = w
        self.bias = bias.map { $0.toFloat32().reshaped([w.shape[1]]) }
    }

    /// The weight back in PyTorch's `[out, in]` layout.
    public func pytorchWeight() -> Tensor { weight.permuted([1, 0]) }
}

/// Gradients of `linear` with respect to its input and weights, in the layouts of the forward arguments.
public struct LinearGradients: Sendable {
    /// Like the input `[..., in]`.
    public var input: Tensor
    /// `[in, out]`, like `LinearWeights.weight`.
    public var weight: Tensor
    /// `[out]`, or nil when the weights have no bias.
    public var bias: Tensor?
}

extension Compute {
    /// PyTorch `F.linear` over the last axis: `[..., in]` -> `[..., out]`.
    public func linear(_ x: Tensor, _ w: LinearWeights) -> Tensor {
        precondition(x.dtype == .float32 && x.rank >= 1 && x.shape[x.rank - 1] == w.inFeatures,
                     "linear: input \(x) does not end in \(w.inFeatures) float32 features")
        let rows = x.count / max(1, w.inFeatures), n = w.outFeatures
        var y = Tensor(uninitialized: Array(x.shape.dropLast()) + [n])
        if y.count == 0 { return y }
        x.withFloats { xs in w.weight.withFloats { ws in y.withMutableFloats { ys in withOptionalFloats(w.bias) { bp in
            let beta = fillWithBias(ys.baseAddress!, rows: rows, channels: n, bias: bp)
            gemm.sgemm(.none, .none, m: rows, n: n, k: w.inFeatures, alpha: 1, a: xs.baseAddress!, lda: w.inFeatures,
                       b: ws.baseAddress!, ldb: n, beta: beta, c: ys.baseAddress!, ldc: n, pool: pool)
        }}}}
        return y
    }

    /// Gradients of `linear(x, w)` given the gradient `dy` (`[..., out]`) of its output:
    /// `dx = dy * weightᵀ`, `dweight = xᵀ * dy` over all rows, `dbias = sum of dy over rows`.
    public func linearBackward(_ x: Tensor, _ w: LinearWeights, outputGradient dy: Tensor) -> LinearGradients {
        let k = w.inFeatures, n = w.outFeatures
        precondition(dy.shape == Array(x.shape.dropLast()) + [n],
                     "linearBackward: output gradient has shape \(dy.shape), the output has \(Array(x.shape.dropLast()) + [n])")
        let rows = x.count / max(1, k)
        var dx = Tensor(zeros: x.shape)
        var dw = Tensor(zeros: [k, n])
        if rows > 0 {
            x.withFloats { xs in dy.withFloats { dys in w.weight.withFloats { ws in
                dx.withMutableFloats { dxs in dw.withMutableFloats { dws in
                    gemm.sgemm(.none, .transposed, m: rows, n: k, k: n, alpha: 1, a: dys.baseAddress!, lda: n,
                               b: ws.baseAddress!, ldb: n, beta: 0, c: dxs.baseAddress!, ldc: k, pool: pool)
                    gemm.sgemm(.transposed, .none, m: k, n: n, k: rows, alpha: 1, a: xs.baseAddress!, lda: k,
                               b: dys.baseAddress!, ldb: n, beta: 0, c: dws.baseAddress!, ldc: n, pool: pool)
                }}
            }}}
        }
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([rows, n]))
        return LinearGradients(input: dx, weight: dw, bias: db)
    }
}
