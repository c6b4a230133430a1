// Port of Pillow src/libImaging/Resample.c (precompute_coeffs, the 8-bit fixed-point and the float passes) as
// used by `Image.resize(size, resample)` with box=None and reducing_gap=None; written fresh, no PIL code copied.
// Crop helpers follow torchvision.transforms (Resize with an int size, CenterCrop).
//
// Resampling is separable: a horizontal pass, then a vertical pass over the horizontally resampled rows. Each
// output sample is a weighted sum of the input samples under the filter centred on the output pixel's centre
// mapped back into the input, `center = (x + 0.5) * scale` with `scale = inSize / outSize`. When shrinking
// (scale > 1) the filter is stretched by `scale` (support and argument both scaled), so every input pixel
// contributes: this is the antialiasing, and for bilinear at an integer factor it is exactly a box-like average.
// When enlarging, the plain kernel is used. Weights are normalised to sum to 1 per output pixel, which also
// handles the image border (taps outside the image are simply left out).
import PaellaCore

/// A resampling filter for `PixelImage.resized` and `resizeImages`.
public enum ResampleFilter: Sendable, Equatable {
    /// Triangle filter, support 1 (PIL `Image.BILINEAR`).
    case bilinear
    /// Keys cubic convolution with a = -0.5, support 2 (PIL `Image.BICUBIC`; what CLIP preprocessing uses).
    case bicubic

    var support: Double {
        switch self {
        case .bilinear: return 1
        case .bicubic: return 2
        }
    }

    func weight(_ t: Double) -> Double {
        let x = abs(t)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

/// The taps of a 1-D resampling from `inSize` to `outSize` samples (PIL's precompute_coeffs with box [0, inSize]):
/// output `i` reads inputs `start[i] ..< start[i] + count[i]` with weights `weights[i * taps ..< i * taps + count[i]]`.
struct ResampleWeights {
    let outSize: Int
    let taps: Int
    var start: [Int]
    let count: [Int]
    let weights: [Double]

    init(inSize: Int, outSize: Int, filter: ResampleFilter) {
        precondition(inSize > 0 && outSize > 0, "ResampleWeights: sizes must be positive, got \(inSize) -> \(outSize)")
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)              // stretch the kernel only when shrinking
        let support = filter.support * filterScale
        let inverseScale = 1 / filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var start = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Double](repeating: 0, count: outSize * taps)
        for i in 0 ..< outSize {
            let center = (Double(i) + 0.5) * scale
            // C's (int) cast truncates toward zero; for negative values the clamp to 0 makes that moot.
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            var total = 0.0
            for j in 0 ..< hi - lo {
                // Distance from the input pixel's centre (lo + j + 0.5) to `center`, in kernel units
                // (times the reciprocal, not divided, so the doubles match PIL's bit for bit).
                let w = filter.weight((Double(j + lo) - center + 0.5) * inverseScale)
                weights[i * taps + j] = w
                total += w
            }
            if total != 0 {
                for j in 0 ..< hi - lo { weights[i * taps + j] /= total }
            }
            start[i] = lo
            count[i] = hi - lo
        }
        self.outSize = outSize
        self.taps = taps
        self.start = start
        self.count = count
        self.weights = weights
    }

    /// Fixed-point weights with 22 fractional bits, rounded half away from zero (PIL normalize_coeffs_8bpc):
    /// 8 bits of sample times 22 bits of weight leaves 2 bits of headroom in 32 for the cubic's overshoot.
    static let precisionBits = 22
    var fixedPoint: [Int] {
        weights.map { w in
            let scaled = w * Double(1 << ResampleWeights.precisionBits)
            return Int(scaled < 0 ? scaled - 0.5 : scaled + 0.5)
        }
    }

    /// The input range any output reads (PIL crops the horizontal pass to these rows).
    var inputRange: Range<Int> { start[0] ..< start[outSize - 1] + count[outSize - 1] }
}

// MARK: 8-bit

/// Sum in fixed point with PIL's rounding: start at one half, shift right (floor), clamp to 0...255.
@inline(__always) private func clip8(_ sum: Int) -> UInt8 {
    let v = sum >> ResampleWeights.precisionBits
    return v < 0 ? 0 : v > 255 ? 255 : UInt8(v)
}

/// One 8-bit pass along rows: `dst` row `y` = resampled `src` row `y + rowOffset`.
private func resampleRows8(_ src: UnsafeBufferPointer<UInt8>, inWidth: Int, rowOffset: Int, rows: Int,
                           _ dst: UnsafeMutableBufferPointer<UInt8>, channels c: Int, _ w: ResampleWeights) {
    let k = w.fixedPoint
    let half = 1 << (ResampleWeights.precisionBits - 1)
    for y in 0 ..< rows {
        let s = (y + rowOffset) * inWidth * c
        let d = y * w.outSize * c
        for x in 0 ..< w.outSize {
            let kx = x * w.taps, x0 = w.start[x]
            for ch in 0 ..< c {
                var sum = half
                for j in 0 ..< w.count[x] { sum += Int(src[s + (x0 + j) * c + ch]) * k[kx + j] }
                dst[d + x * c + ch] = clip8(sum)
            }
        }
    }
}

/// One 8-bit pass along columns: `dst` row `y` = weighted rows `start[y]...` of `src` (all `width * c` samples).
private func resampleColumns8(_ src: UnsafeBufferPointer<UInt8>, rowLength: Int,
                              _ dst: UnsafeMutableBufferPointer<UInt8>, _ w: ResampleWeights) {
    let k = w.fixedPoint
    let half = 1 << (ResampleWeights.precisionBits - 1)
    for y in 0 ..< w.outSize {
        let ky = y * w.taps, y0 = w.start[y], d = y * rowLength
        for i in 0 ..< rowLength {
            var sum = half
            for j in 0 ..< w.count[y] { sum += Int(src[(y0 + j) * rowLength + i]) * k[ky + j] }
            dst[d + i] = clip8(sum)
        }
    }
}

extension PixelImage {
    /// The image resampled to `width` x `height`, bit-exact with PIL's `Image.resize((width, height), filter)`
    /// for 8-bit gray and RGB (box=None, reducing_gap=None): antialiased when shrinking, plain kernel when
    /// enlarging, 8-bit intermediate between the horizontal and the vertical pass. Alpha is resampled like any
    /// channel (PIL premultiplies it), so convert to RGB first when matching PIL on RGBA input.
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResampleFilter = .bicubic) -> PixelImage {
        precondition(newWidth > 0 && newHeight > 0, "PixelImage.resized: target size \(newWidth)x\(newHeight) must be positive")
        precondition(width > 0 && height > 0, "PixelImage.resized: cannot resample an empty \(width)x\(height) image")
        if newWidth == width && newHeight == height { return self }
        var vertical = ResampleWeights(inSize: height, outSize: newHeight, filter: filter)
        var current = self
        if newWidth != width {
            // Only the rows the vertical pass will read need the horizontal pass.
            let rows = newHeight != height ? vertical.inputRange : 0 ..< height
            let horizontal = ResampleWeights(inSize: width, outSize: newWidth, filter: filter)
            var out = [UInt8](repeating: 0, count: newWidth * rows.count * channels)
            pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    resampleRows8(src, inWidth: width, rowOffset: rows.lowerBound, rows: rows.count, dst,
                                  channels: channels, horizontal)
                }
            }
            current = PixelImage(width: newWidth, height: rows.count, layout: layout, pixels: out)
            for i in vertical.start.indices { vertical.start[i] -= rows.lowerBound }
        }
        if newHeight != height {
            var out = [UInt8](repeating: 0, count: newWidth * newHeight * channels)
            current.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    resampleColumns8(src, rowLength: newWidth * channels, dst, vertical)
                }
            }
            current = PixelImage(width: newWidth, height: newHeight, layout: layout, pixels: out)
        }
        return current
    }

    /// The rectangle at column `x`, row `y` of size `width` x `height`; parts outside the image are zero
    /// (black, transparent), as in PIL's `Image.crop`.
    public func cropped(x: Int, y: Int, width cropWidth: Int, height cropHeight: Int) -> PixelImage {
        precondition(cropWidth >= 0 && cropHeight >= 0, "PixelImage.cropped: negative size \(cropWidth)x\(cropHeight)")
        var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * channels)
        let x0 = max(x, 0), x1 = min(x + cropWidth, width)
        if x1 > x0 {
            for row in max(y, 0) ..< max(min(y + cropHeight, height), max(y, 0)) {
                let s = (row * width + x0) * channels
                let d = ((row - y) * cropWidth + (x0 - x)) * channels
                out.replaceSubrange(d ..< d + (x1 - x0) * channels, with: pixels[s ..< s + (x1 - x0) * channels])
            }
        }
        return PixelImage(width: cropWidth, height: cropHeight, layout: layout, pixels: out)
    }

    /// The central `width` x `height` region, placed as torchvision's `CenterCrop` places it: offset
    /// `round((size - crop) / 2)` with Python's round-half-to-even; a crop larger than the image pads with zeros,
    /// `(crop - size) // 2` before and the rest after.
    public func centerCropped(width cropWidth: Int, height cropHeight: Int) -> PixelImage {
        func offset(_ size: Int, _ crop: Int) -> Int {
            crop > size ? -((crop - size) / 2) : Int((Double(size - crop) / 2).rounded(.toNearestOrEven))
        }
        return cropped(x: offset(width, cropWidth), y: offset(height, cropHeight), width: cropWidth, height: cropHeight)
    }

    /// The image resampled so its shorter side is `size`, keeping the aspect ratio as torchvision's
    /// `Resize(size)` does: the longer side becomes `int(size * long / short)` (truncated).
    public func resizedShortestSide(to size: Int, filter: ResampleFilter = .bicubic) -> PixelImage {
        precondition(size > 0, "PixelImage.resizedShortestSide: size \(size) must be positive")
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int(Double(size) * Double(long) / Double(short))
        return width <= height ? resized(width: size, height: newLong, filter: filter)
                               : resized(width: newLong, height: size, filter: filter)
    }

    /// CLIP's image preprocessing up to normalisation (open_clip `image_transform` for evaluation):
    /// `Resize(size, BICUBIC)` on the shorter side, then `CenterCrop(size)`. On PIL images torchvision's
    /// `Resize(antialias=True)` calls PIL's resize, which `resized` reproduces bit-exactly.
    ///
    /// An image more than four times longer than wide (or the reverse) is first cut to its central 4:1 part: only
    /// the central square survives the crop anyway, and a 1 x 16384 strip would otherwise be resized to
    /// size x (size * 16384) pixels first. Images within 4:1, all that the parity tests compare, are untouched.
    public func clipPreprocessed(size: Int = 224) -> PixelImage {
        let (short, long) = (Swift.min(width, height), Swift.max(width, height))
        let source = long / 4 > short
            ? (width < height ? centerCropped(width: width, height: 4 * short) : centerCropped(width: 4 * short, height: height))
            : self
        return source.resizedShortestSide(to: size, filter: .bicubic).centerCropped(width: size, height: size)
    }
}

// MARK: Float

/// Float images `[B, H, W, C]` (channels-last) resampled to `height` x `width` with PIL's float ("F" mode) passes:
/// the same weights as the 8-bit path, sums in double, a float intermediate and no rounding or clamping
/// (bicubic can overshoot [0, 1]). Matches torchvision's antialiased tensor resize up to float rounding.
public func resizeImages(_ images: Tensor, height newHeight: Int, width newWidth: Int,
                         filter: ResampleFilter = .bicubic) -> Tensor {
    precondition(images.rank == 4, "resizeImages: expected [B, H, W, C], got \(images.shape)")
    precondition(newWidth > 0 && newHeight > 0, "resizeImages: target size \(newWidth)x\(newHeight) must be positive")
    let (batch, height, width, c) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
    precondition(width > 0 && height > 0, "resizeImages: cannot resample an empty \(width)x\(height) image")
    var current = images.dtype == .float32 ? images : images.toFloat32()
    if newWidth == width && newHeight == height { return current }
    if newWidth != width {
        let w = ResampleWeights(inSize: width, outSize: newWidth, filter: filter)
        var out = Tensor(uninitialized: [batch, height, newWidth, c], dtype: .float32)
        current.withFloats { src in
            out.withMutableFloats { dst in
                for row in 0 ..< batch * height {
                    let s = row * width * c, d = row * newWidth * c
                    for x in 0 ..< newWidth {
                        let kx = x * w.taps, x0 = w.start[x]
                        for ch in 0 ..< c {
                            var sum = 0.0
                            for j in 0 ..< w.count[x] { sum += Double(src[s + (x0 + j) * c + ch]) * w.weights[kx + j] }
                            dst[d + x * c + ch] = Float(sum)
                        }
                    }
                }
            }
        }
        current = out
    }
    if newHeight != height {
        let w = ResampleWeights(inSize: height, outSize: newHeight, filter: filter)
        let rowLength = newWidth * c
        var out = Tensor(uninitialized: [batch, newHeight, newWidth, c], dtype: .float32)
        current.withFloats { src in
            out.withMutableFloats { dst in
                for b in 0 ..< batch {
                    let s = b * height * rowLength, d = b * newHeight * rowLength
                    for y in 0 ..< newHeight {
                        let ky = y * w.taps, y0 = w.start[y]
                        for i in 0 ..< rowLength {
                            var sum = 0.0
                            for j in 0 ..< w.count[y] { sum += Double(src[s + (y0 + j) * rowLength + i]) * w.weights[ky + j] }
                            dst[d + y * rowLength + i] = Float(sum)
                        }
                    }
                }
            }
        }
        current = out
    }
    return current
}
