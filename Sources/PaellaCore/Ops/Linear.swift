// Fully connected layers over the last axis, with the backward pass as a separate pure function.

/// Linear-layer weights: a float32 `weight` in a recorded layout and an optional float32 `[out]` bias, so that
/// `y = x * W + bias` with `W` the `[in, out]` matrix.
///
/// The layout is kept as the weight arrives and handed to the GEMM as its transpose flag, never converted:
/// PyTorch's `nn.Linear` stores `[out, in]` (`.outIn`), and keeping it means a memory-mapped float32 checkpoint is
/// used in place (no copy at load) and a zero-filled stand-in is never touched; a matrix that upstream applies as
/// `x @ m` (CLIP's projections, a codebook used as `one_hot @ embed`) is `[in, out]` (`.inOut`).
public struct LinearWeights: Sendable {
    /// How `weight`'s two axes are ordered.
    public enum Layout: Sendable, Equatable {
        /// `[out, in]`, PyTorch's `nn.Linear.weight`: `y = x * weightᵀ + bias`.
        case outIn
        /// `[in, out]`: `y = x * weight + bias`.
        case inOut
    }

    /// The float32 weight; a read-only zero stand-in of its shape when the weight is packed as `bf16`.
    public let weight: Tensor
    public let layout: Layout
    /// `[out]` float32, or nil.
    public let bias: Tensor?
    /// The weight as the bfloat16 GEMM's `W` `[in, out]`, for `Precision.bf16` inference; nil for float32.
    public let bf16: BFloat16Matrix?

    public var inFeatures: Int { layout == .outIn ? weight.shape[1] : weight.shape[0] }
    public var outFeatures: Int { layout == .outIn ? weight.shape[0] : weight.shape[1] }

    /// Wraps `weight` stored in `layout` (float16/bfloat16 are converted to float32) and `bias` `[out]`. With
    /// `precision` `.bf16` the weight is rounded to bfloat16 and packed once; no float32 copy is kept.
    public init(weight: Tensor, layout: Layout, bias: Tensor?, precision: Precision = .fp32) {
        precondition(weight.rank == 2, "LinearWeights: expected a rank-2 weight, got shape \(weight.shape)")
        if precision == .bf16 {
            bf16 = BFloat16Matrix(weight, transposed: layout == .outIn)
            self.weight = Tensor(readOnlyZeros: weight.shape)
        } else {
            bf16 = nil
            self.weight = weight.dtype == .float32 ? weight : weight.toFloat32()
        }
        self.layout = layout
        let outputs = layout == .outIn ? weight.shape[0] : weight.shape[1]
        if let bias {
            precondition(bias.count == outputs, "LinearWeights: bias has \(bias.count) values for \(outputs) outputs")
        }
        self.bias = bias.map { ($0.dtype == .float32 ? $0 : $0.toFloat32()).reshaped([outputs]) }
    }

    /// The weight in PyTorch's `[out, in]` layout (float32 weights only).
    public func pytorchWeight() -> Tensor {
        precondition(bf16 == nil, "LinearWeights.pytorchWeight: the weight was packed as bfloat16 and has no float32 copy")
        return layout == .outIn ? weight : weight.permuted([1, 0])
    }

    /// The GEMM flag that reads `weight` as the `[in, out]` matrix `W`.
    var gemmTranspose: Transpose { layout == .outIn ? .transposed : .none }
}

/// Gradients of `linear` with respect to its input and weights, in the layouts of the forward arguments.
public struct LinearGradients: Sendable {
    /// Like the input `[..., in]`; nil when not requested.
    public var input: Tensor?
    /// In the layout of `LinearWeights.weight`.
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
            if let packed = w.bf16 {
                gemmBF16(m: rows, a: xs.baseAddress!, lda: w.inFeatures, b: packed, beta: beta, c: ys.baseAddress!, ldc: n)
                return
            }
            gemm.sgemm(.none, w.gemmTranspose, m: rows, n: n, k: w.inFeatures, alpha: 1, a: xs.baseAddress!, lda: w.inFeatures,
                       b: ws.baseAddress!, ldb: w.weight.shape[1], beta: beta, c: ys.baseAddress!, ldc: n, pool: pool)
        }}}}
        return y
    }

    /// Gradients of `linear(x, w)` given the gradient `dy` (`[..., out]`) of its output: `dx = dy * Wᵀ`,
    /// `dW = xᵀ * dy` over all rows (stored in the weight's layout), `dbias = sum of dy over rows`. Pass
    /// `inputGradient: false` when x is not trained (e.g. a conditioning input) to skip one GEMM.
    public func linearBackward(_ x: Tensor, _ w: LinearWeights, outputGradient dy: Tensor,
                               inputGradient: Bool = true) -> LinearGradients {
        let k = w.inFeatures, n = w.outFeatures
        precondition(w.bf16 == nil, "linearBackward: bfloat16-packed weights are for inference; train with float32 weights")
        precondition(x.dtype == .float32 && x.shape.last == k && dy.shape == Array(x.shape.dropLast()) + [n],
                     "linearBackward: output gradient \(dy.shape) and input \(x.shape) do not fit a \(k) -> \(n) weight")
        let rows = x.count / max(1, k)
        var dx: Tensor? = inputGradient ? Tensor(zeros: x.shape) : nil
        var dw = Tensor(zeros: w.weight.shape)
        if rows > 0 {
            x.withFloats { xs in dy.withFloats { dys in w.weight.withFloats { ws in dw.withMutableFloats { dws in
                // [out, in] = dyᵀ x, or [in, out] = xᵀ dy: both read their left operand transposed.
                let (a, lda, b, ldb) = w.layout == .outIn ? (dys, n, xs, k) : (xs, k, dys, n)
                gemm.sgemm(.transposed, .none, m: w.weight.shape[0], n: w.weight.shape[1], k: rows, alpha: 1,
                           a: a.baseAddress!, lda: lda, b: b.baseAddress!, ldb: ldb, beta: 0, c: dws.baseAddress!,
                           ldc: w.weight.shape[1], pool: pool)
                if dx != nil {
                    // dx = dy Wᵀ: an [out, in] weight is already Wᵀ, an [in, out] one is read transposed.
                    dx!.withMutableFloats { dxs in
                        gemm.sgemm(.none, w.layout == .outIn ? .none : .transposed, m: rows, n: k, k: n, alpha: 1,
                                   a: dys.baseAddress!, lda: n, b: ws.baseAddress!, ldb: w.weight.shape[1], beta: 0,
                                   c: dxs.baseAddress!, ldc: k, pool: pool)
                    }
                }
            }}}}
        }
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([rows, n]))
        return LinearGradients(input: dx, weight: dw, bias: db)
    }
}
