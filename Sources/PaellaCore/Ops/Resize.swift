// Resizing of channels-last feature maps, matching PyTorch `F.interpolate` (aten/src/ATen/native/UpSample.h)
// for mode="bilinear" (align_corners=False, no antialias) and mode="nearest". Image resizing for user input
// (antialiased, bicubic) lives with the image code, not here.

extension Compute {
    /// PyTorch `F.interpolate(x, size: (height, width), mode: "bilinear", align_corners: false)` on `[B, H, W, C]`.
    ///
    /// Output pixel d reads source coordinate `s = max(0, (d + 0.5) * in / out - 0.5)` and blends pixels
    /// `floor(s)` and `min(floor(s) + 1, in - 1)` with weights `1 - frac(s)` and `frac(s)`, in both axes.
    public func resizeBilinear(_ x: Tensor, height: Int, width: Int) -> Tensor {
        precondition(x.rank == 4 && x.dtype == .float32, "resizeBilinear: expected float32 [B, H, W, C], got \(x)")
        precondition(height >= 1 && width >= 1, "resizeBilinear: output size \(height)x\(width) must be positive")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ys = Self.linearTaps(input: h, output: height), xs = Self.linearTaps(input: w, output: width)
        var out = Tensor(uninitialized: [b, height, width, c])
        x.withFloats { src in out.withMutableFloats { dst in
            let s = src.baseAddress!, d = dst.baseAddress!
            pool.parallelChunks(b * height) { rows in
                for row in rows {
                    let (n, oy) = (row / height, row % height)
                    let ty = ys[oy]
                    let top = s + (n * h + ty.i0) * w * c, bottom = s + (n * h + ty.i1) * w * c
                    for ox in 0..<width {
                        let tx = xs[ox]
                        let p00 = top + tx.i0 * c, p01 = top + tx.i1 * c
                        let p10 = bottom + tx.i0 * c, p11 = bottom + tx.i1 * c
                        let o = d + (row * width + ox) * c
                        for ch in 0..<c {  // the same blend as PyTorch: rows first weighted by the y lambdas
                            o[ch] = ty.w0 * (tx.w0 * p00[ch] + tx.w1 * p01[ch]) + ty.w1 * (tx.w0 * p10[ch] + tx.w1 * p11[ch])
                        }
                    }
                }
            }
        }}
        return out
    }

    /// PyTorch `F.interpolate(x, size: (height, width), mode: "nearest")` on `[B, H, W, C]`: output pixel d
    /// copies source pixel `min(floor(d * in / out), in - 1)` (with `in / out` in float32, as PyTorch does).
    /// This is not "nearest-exact": enlarging 2 pixels to 3 reads sources 0, 0, 1.
    public func resizeNearest(_ x: Tensor, height: Int, width: Int) -> Tensor {
        precondition(x.rank == 4, "resizeNearest: expected [B, H, W, C], got \(x.shape)")
        precondition(height >= 1 && width >= 1, "resizeNearest: output size \(height)x\(width) must be positive")
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ys = Self.nearestSources(input: h, output: height), xs = Self.nearestSources(input: w, output: width)
        var out = Tensor(uninitialized: [b, height, width, c], dtype: x.dtype)
        let pixelBytes = c * x.dtype.size
        x.withUnsafeBytes { src in out.withMutableRawBytes { d in
            let s = src.baseAddress!
            pool.parallelChunks(b * height) { rows in
                for row in rows {
                    let (n, oy) = (row / height, row % height)
                    let line = s + (n * h + ys[oy]) * w * pixelBytes
                    let o = d + row * width * pixelBytes
                    if row > rows.lowerBound && oy > 0 && ys[oy] == ys[oy - 1] {  // same source as the row above (this thread's): copy it
                        o.copyMemory(from: o - width * pixelBytes, byteCount: width * pixelBytes)
                        continue
                    }
                    for ox in 0..<width { (o + ox * pixelBytes).copyMemory(from: line + xs[ox] * pixelBytes, byteCount: pixelBytes) }
                }
            }
        }}
        return out
    }

    /// Nearest-neighbour upsampling by 2 in H and W (taming's Upsample; `F.interpolate(scale_factor=2.0)`).
    public func upsampleNearest2x(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "upsampleNearest2x: expected [B, H, W, C], got \(x.shape)")
        return resizeNearest(x, height: 2 * x.shape[1], width: 2 * x.shape[2])
    }

    /// Source pixels and weights of PyTorch's linear interpolation along one axis (align_corners=False).
    static func linearTaps(input: Int, output: Int) -> [(i0: Int, i1: Int, w0: Float, w1: Float)] {
        let scale = Float(input) / Float(output)
        return (0..<output).map { d in
            let src = max(0, scale * (Float(d) + 0.5) - 0.5)
            let i0 = min(Int(src), input - 1)
            let i1 = i0 < input - 1 ? i0 + 1 : i0
            let lambda = src - Float(i0)
            return (i0, i1, 1 - lambda, lambda)
        }
    }

    /// Source pixels of PyTorch's "nearest" mode along one axis.
    static func nearestSources(input: Int, output: Int) -> [Int] {
        if input == output { return Array(0..<output) }
        if output == 2 * input { return (0..<output).map { $0 >> 1 } }
        let scale = Float(input) / Float(output)
        return (0..<output).map { min(Int((Float($0) * scale).rounded(.down)), input - 1) }
    }
}
