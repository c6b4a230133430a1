// Elementwise arithmetic on float32 tensors with NumPy broadcasting.
//
// Broadcasting (NumPy / PyTorch rules): shapes are aligned at their last axis; a missing leading axis counts
// as 1; two sizes are compatible when equal or when one is 1, and the result takes the larger. Fast paths
// cover the shapes models use: equal shapes, a scalar, and a vector over the trailing axes (a bias).

/// The shape two broadcast operands produce.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let rank = max(a.count, b.count)
    return (0..<rank).map { i in
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        precondition(da == db || da == 1 || db == 1, "broadcast: shapes \(a) and \(b) are not compatible")
        return da == 1 ? db : da
    }
}

/// One elementwise operation, as a type so that the generic loops below are specialized and vectorized.
protocol ElementwiseOp { static func apply(_ a: Float, _ b: Float) -> Float }
enum AddOp: ElementwiseOp { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubOp: ElementwiseOp { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulOp: ElementwiseOp { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }

extension Compute {
    /// `a + b` with broadcasting.
    public func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(AddOp.self, a, b) }
    /// `a - b` with broadcasting.
    public func sub(_ a: Tensor, _ b: Tensor) -> Tensor { binary(SubOp.self, a, b) }
    /// `a * b` with broadcasting.
    public func mul(_ a: Tensor, _ b: Tensor) -> Tensor { binary(MulOp.self, a, b) }

    /// `x += y` where `y` broadcasts onto `x`'s shape (a residual connection without a new allocation when `x`
    /// is not shared). A forward-only convenience: training code uses `add`.
    public func addInPlace(_ x: inout Tensor, _ y: Tensor) {
        precondition(x.dtype == .float32 && y.dtype == .float32, "addInPlace: expected float32 tensors, got \(x) and \(y)")
        precondition(broadcastShape(x.shape, y.shape) == x.shape, "addInPlace: \(y.shape) does not broadcast onto \(x.shape)")
        let shape = x.shape
        y.withFloats { ys in x.withMutableFloats { xs in
            binaryLoop(AddOp.self, UnsafePointer(xs.baseAddress!), shape, ys.baseAddress!, y.shape, xs.baseAddress!, shape)
        }}
    }

    /// `x * factor`.
    public func scale(_ x: Tensor, by factor: Float) -> Tensor {
        precondition(x.dtype == .float32, "scale: expected float32, got \(x)")
        var y = Tensor(uninitialized: x.shape)
        x.withFloats { xs in y.withMutableFloats { ys in
            let s = xs.baseAddress!, d = ys.baseAddress!
            pool.parallelChunks(xs.count, minChunk: 1 << 14) { r in for i in r { d[i] = s[i] * factor } }
        }}
        return y
    }

    /// `a + t * (b - a)` for equally shaped `a` and `b` (PyTorch `torch.lerp`). Classifier-free guidance is
    /// `lerp(uncond, cond, scale)`: t = 1 gives `cond`, t > 1 extrapolates away from `uncond`.
    public func lerp(_ a: Tensor, _ b: Tensor, _ t: Float) -> Tensor {
        precondition(a.dtype == .float32 && b.dtype == .float32 && a.shape == b.shape,
                     "lerp: expected equally shaped float32 tensors, got \(a) and \(b)")
        var y = Tensor(uninitialized: a.shape)
        a.withFloats { aa in b.withFloats { bb in y.withMutableFloats { ys in
            let pa = aa.baseAddress!, pb = bb.baseAddress!, d = ys.baseAddress!
            pool.parallelChunks(aa.count, minChunk: 1 << 14) { r in for i in r { d[i] = pa[i] + t * (pb[i] - pa[i]) } }
        }}}
        return y
    }

    // MARK: Implementation

    private func binary<Op: ElementwiseOp>(_ op: Op.Type, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.dtype == .float32 && b.dtype == .float32, "elementwise: expected float32 tensors, got \(a) and \(b)")
        let shape = broadcastShape(a.shape, b.shape)
        var y = Tensor(uninitialized: shape)
        a.withFloats { aa in b.withFloats { bb in y.withMutableFloats { ys in
            binaryLoop(op, aa.baseAddress!, a.shape, bb.baseAddress!, b.shape, ys.baseAddress!, shape)
        }}}
        return y
    }

    /// `out = op(a, b)` where both broadcast to `outShape`. `out` may be `a` when `a` has the output's shape
    /// (each element is read before it is written, at the same index).
    private func binaryLoop<Op: ElementwiseOp>(_ op: Op.Type, _ a: UnsafePointer<Float>, _ aShape: [Int],
                                               _ b: UnsafePointer<Float>, _ bShape: [Int],
                                               _ out: UnsafeMutablePointer<Float>, _ outShape: [Int]) {
        let n = outShape.reduce(1, *)
        if n == 0 { return }
        let aCount = aShape.reduce(1, *), bCount = bShape.reduce(1, *)
        let grain = 1 << 14
        if aCount == n && bCount == n {  // equal shapes (up to leading 1s)
            pool.parallelChunks(n, minChunk: grain) { r in for i in r { out[i] = Op.apply(a[i], b[i]) } }
        } else if bCount == 1 {
            let s = b[0]
            pool.parallelChunks(n, minChunk: grain) { r in for i in r { out[i] = Op.apply(a[i], s) } }
        } else if aCount == 1 {
            let s = a[0]
            pool.parallelChunks(n, minChunk: grain) { r in for i in r { out[i] = Op.apply(s, b[i]) } }
        } else if aCount == n && isTrailing(bShape, of: outShape) {  // b is a vector over the trailing axes
            pool.parallelChunks(n / bCount, minChunk: max(1, grain / bCount)) { rows in
                for row in rows {
                    let pa = a + row * bCount, po = out + row * bCount
                    for j in 0..<bCount { po[j] = Op.apply(pa[j], b[j]) }
                }
            }
        } else if bCount == n && isTrailing(aShape, of: outShape) {
            pool.parallelChunks(n / aCount, minChunk: max(1, grain / aCount)) { rows in
                for row in rows {
                    let pb = b + row * aCount, po = out + row * aCount
                    for j in 0..<aCount { po[j] = Op.apply(a[j], pb[j]) }
                }
            }
        } else {
            generalBroadcast(op, a, broadcastStrides(aShape, outShape), b, broadcastStrides(bShape, outShape), out, outShape)
        }
    }

    /// Whether `small` (leading 1s ignored) equals the trailing axes of `shape`, so that it repeats every
    /// `small.count` elements.
    private func isTrailing(_ small: [Int], of shape: [Int]) -> Bool {
        let trimmed = Array(small.drop { $0 == 1 })
        return trimmed.count <= shape.count && Array(shape.suffix(trimmed.count)) == trimmed
    }

    /// Element strides of an operand in the output's axes (0 along broadcast axes).
    private func broadcastStrides(_ shape: [Int], _ outShape: [Int]) -> [Int] {
        let rank = outShape.count, offset = rank - shape.count
        var strides = [Int](repeating: 0, count: rank)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i + offset] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }

    /// Any broadcast: rows of the last axis are processed in parallel, each with its own odometer start.
    private func generalBroadcast<Op: ElementwiseOp>(_ op: Op.Type, _ a: UnsafePointer<Float>, _ sa: [Int],
                                                     _ b: UnsafePointer<Float>, _ sb: [Int],
                                                     _ out: UnsafeMutablePointer<Float>, _ shape: [Int]) {
        let rank = shape.count
        let inner = shape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1]
        let rows = shape.reduce(1, *) / inner
        pool.parallelChunks(rows, minChunk: max(1, 4096 / inner)) { range in
            for row in range {
                // Decompose the row index into the outer axes to find both operands' offsets.
                var rest = row, offA = 0, offB = 0
                for axis in stride(from: rank - 2, through: 0, by: -1) {
                    let i = rest % shape[axis]
                    rest /= shape[axis]
                    offA += i * sa[axis]
                    offB += i * sb[axis]
                }
                let po = out + row * inner
                for j in 0..<inner { po[j] = Op.apply(a[offA + j * ia], b[offB + j * ib]) }
            }
        }
    }
}
