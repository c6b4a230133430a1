import Foundation
import PaellaCore
import PaellaIO

/// Damage like a generated image's, to check that the analyser still reads scenes through it: Gaussian blur,
/// stray speckles (small squares of a random palette colour, like stray VQ tokens), Gaussian pixel noise and
/// a JPEG round trip, applied in that order from a seed.
public struct ShapeDegradation: Sendable {
    /// Standard deviation of the Gaussian blur in pixels (0: none).
    public var blurSigma: Float = 0.8
    /// Number of speckles.
    public var speckles: Int = 6
    /// Largest speckle side in pixels (each is 1...this).
    public var maxSpeckleSide: Int = 3
    /// Standard deviation of the added noise, in 8-bit levels (0: none).
    public var noise: Float = 6
    /// JPEG quality of the round trip (nil: none).
    public var jpegQuality: Int? = 70

    /// The default damage: blur 0.8 px, 6 speckles of up to 3x3, noise 6 levels, JPEG quality 70.
    public init() {}

    /// `image` (RGB) damaged with the generator seeded by `seed`.
    public func apply(to image: PixelImage, seed: UInt64) throws -> PixelImage {
        var random = SplitMix64(seed: seed)
        let (w, h) = (image.width, image.height)
        var out = image.rgb()
        if blurSigma > 0 { out = ShapeDegradation.blur(out, sigma: blurSigma) }
        for _ in 0 ..< speckles {
            let side = 1 + Int(random.next() % UInt64(max(1, maxSpeckleSide)))
            let x0 = Int(random.next() % UInt64(max(1, w - side + 1)))
            let y0 = Int(random.next() % UInt64(max(1, h - side + 1)))
            let color = ShapeColor.allCases[Int(random.next() % UInt64(ShapeColor.allCases.count))].rgb
            for y in y0 ..< min(h, y0 + side) {
                for x in x0 ..< min(w, x0 + side) {
                    out[x, y, 0] = color.r
                    out[x, y, 1] = color.g
                    out[x, y, 2] = color.b
                }
            }
        }
        if noise > 0 {
            for i in 0 ..< out.pixels.count {
                let v = Float(out.pixels[i]) + noise * random.normal()
                out.pixels[i] = UInt8(min(max(v.rounded(), 0), 255))
            }
        }
        if let jpegQuality {
            out = try PixelImage.decode(try out.encodeJPEG(quality: jpegQuality)).image.rgb()
        }
        return out
    }

    /// Separable Gaussian blur with a kernel of radius ceil(3 sigma), edges clamped.
    static func blur(_ image: PixelImage, sigma: Float) -> PixelImage {
        let radius = max(1, Int((3 * sigma).rounded(.up)))
        var kernel = (-radius ... radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let sum = kernel.reduce(0, +)
        kernel = kernel.map { $0 / sum }
        let (w, h, c) = (image.width, image.height, image.channels)
        var horizontal = [Float](repeating: 0, count: w * h * c)
        for y in 0 ..< h {
            for x in 0 ..< w {
                for ch in 0 ..< c {
                    var acc: Float = 0
                    for k in -radius ... radius {
                        acc += kernel[k + radius] * Float(image[min(max(x + k, 0), w - 1), y, ch])
                    }
                    horizontal[(y * w + x) * c + ch] = acc
                }
            }
        }
        var out = image
        for y in 0 ..< h {
            for x in 0 ..< w {
                for ch in 0 ..< c {
                    var acc: Float = 0
                    for k in -radius ... radius {
                        acc += kernel[k + radius] * horizontal[(min(max(y + k, 0), h - 1) * w + x) * c + ch]
                    }
                    out[x, y, ch] = UInt8(min(max(acc.rounded(), 0), 255))
                }
            }
        }
        return out
    }
}
