// Fully connected layers whose weight stays in PyTorch's [out, in] layout: the GEMM reads it transposed, so a
// memory-mapped float32 checkpoint is used in place (no copy at load) and a zero-filled stand-in is never touched.

/// Linear-layer weights in PyTorch's layout: `weight` float32 `[out, in]`, `bias` float32 `[out]` or nil.
/// `y = x * weightᵀ + bias`. Prefer this to `LinearWeights` for large models loaded from float32 files.
public struct OutInLinearWeights: Sendable {
    public let weight: Tensor
    public let bias: Tensor?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// Wraps PyTorch's `Linear.weight` `[out, in]` (float16/bfloat16 are converted to float32) and `bias` `[out]`.
    public init(pytorch weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2, "OutInLinearWeights: expected an [out, in] weight, got shape \(weight.shape)")
        self.weight = weight.dtype == .float32 ? weight : weight.toFloat32()
        if let bias {
            precondition(bias.count == weight.shape[0], "OutInLinearWeights: bias has \(bias.count) values for \(weight.shape[0]) outputs")
        }
        self.bias = bias.map { ($0.dtype == .float32 ? $0 : $0.toFloat32()).reshaped([weight.shape[0]]) }
    }
}

extension Compute {
    /// PyTorch `F.linear` over the last axis with an `[out, in]` weight: `[..., in]` -> `[..., out]`.
    public func linear(_ x: Tensor, _ w: OutInLinearWeights) -> Tensor {
        precondition(x.dtype == .float32 && x.rank >= 1 && x.shape[x.rank - 1] == w.inFeatures,
                     "linear: input \(x) does not end in \(w.inFeatures) float32 features")
        let rows = x.count / max(1, w.inFeatures), n = w.outFeatures
        var y = Tensor(uninitialized: Array(x.shape.dropLast()) + [n])
        if y.count == 0 { return y }
        x.withFloats { xs in w.weight.withFloats { ws in y.withMutableFloats { ys in withOptionalFloats(w.bias) { bp in
            let beta = fillWithBias(ys.baseAddress!, rows: rows, channels: n, bias: bp)
            gemm.sgemm(.none, .transposed, m: rows, n: n, k: w.inFeatures, alpha: 1, a: xs.baseAddress!, lda: w.inFeatures,
                       b: ws.baseAddress!, ldb: w.inFeatures, beta: beta, c: ys.baseAddress!, ldc: n, pool: pool)
        }}}}
        return y
    }
}
