import Foundation
import Testing
@testable import PaellaIO
import PaellaTestSupport

@Suite("JPEG")
struct ImageJPEGTests {
    /// A smooth RGB gradient: JPEG keeps such content within a few levels at high quality.
    func gradient(width: Int, height: Int) -> PixelImage {
        var image = PixelImage(width: width, height: height, layout: .rgb)
        for y in 0 ..< height {
            for x in 0 ..< width {
                image[x, y, 0] = UInt8(x * 255 / (width - 1))
                image[x, y, 1] = UInt8(y * 255 / (height - 1))
                image[x, y, 2] = 128
            }
        }
        return image
    }

    func maxDifference(_ a: PixelImage, _ b: PixelImage) -> Int {
        zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    func meanDifference(_ a: PixelImage, _ b: PixelImage) -> Double {
        Double(zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(a.pixels.count)
    }

    @Test("RGB and grayscale JPEGs encoded by libjpeg decode back within JPEG's quantisation error")
    func decodeEncoded() throws {
        let rgb = gradient(width: 40, height: 24)
        let decoded = try PixelImage.decode(try rgb.encodeJPEG(quality: 95), source: "gradient.jpg")
        #expect(decoded.format == .jpeg && decoded.sourceBitDepth == 8)
        #expect(decoded.image.width == 40 && decoded.image.height == 24 && decoded.image.layout == .rgb)
        // Quality 95 with 4:2:0 chroma subsampling on a gradient steep in R and G (6 to 11 levels per pixel):
        // measured max 7, mean 1.02 levels with libjpeg-turbo 2.1. Bounds of 10 and 2 leave room for another
        // libjpeg build's DCT rounding while still catching a swapped channel, a shifted row or a colour-space slip.
        #expect(maxDifference(decoded.image, rgb) <= 10)
        #expect(meanDifference(decoded.image, rgb) <= 2)

        let gray = rgb.converted(to: .gray)
        let decodedGray = try PixelImage.decode(try gray.encodeJPEG(quality: 95)).image
        #expect(decodedGray.layout == .gray)
        #expect(maxDifference(decodedGray, gray) <= 4)  // no chroma subsampling: even smaller (measured 1)
        #expect(decodedGray.rgb().pixels == decodedGray.pixels.flatMap { [$0, $0, $0] })
    }

    @Test("4-component JPEGs are read as Adobe-inverted CMYK and converted to RGB with PIL's formula")
    func cmyk() throws {
        // Stored samples (Adobe convention: 255 - ink). Expected, from PIL's cmyk2rgb after its CMYK;I
        // inversion: nk = 255 - ink K = 220; R = nk - round(ink C * nk / 255) = 220 - round(55 * 220 / 255) = 173,
        // G = 220 - round(155 * 220 / 255) = 86, B = 220 - round(205 * 220 / 255) = 43.
        let stored: [UInt8] = [200, 100, 50, 220]
        let samples = (0 ..< 16 * 16).flatMap { _ in stored }
        let jpeg = try PixelImage.encodeJPEGSamples(samples, width: 16, height: 16, channels: 4, quality: 100)
        let image = try PixelImage.decode(jpeg).image
        #expect(image.layout == .rgb)
        // A constant image is all DC: the YCCK round trip changes a stored sample by at most one level,
        // which moves R, G, B by at most 2.
        for (channel, expected) in [173, 86, 43].enumerated() {
            let values = stride(from: channel, to: image.pixels.count, by: 3).map { Int(image.pixels[$0]) }
            #expect(values.allSatisfy { abs($0 - expected) <= 2 }, "channel \(channel): \(Set(values)) vs \(expected)")
        }
    }

    @Test("a cut-short JPEG, a broken frame header, an oversized frame and 12-bit samples give typed errors")
    func badInput() throws {
        let jpeg = try gradient(width: 64, height: 64).encodeJPEG(quality: 90)
        #expect(throws: ImageError.truncated(path: "half.jpg", format: .jpeg)) {
            try PixelImage.decode(Array(jpeg.prefix(jpeg.count / 2)), source: "half.jpg")
        }
        #expect(throws: ImageError.truncated(path: "head.jpg", format: .jpeg)) {
            try PixelImage.decode(Array(jpeg.prefix(40)), source: "head.jpg")
        }
        // SOI, then a frame header full of zeros: libjpeg rejects the 0x0 frame ("Empty JPEG image").
        #expect {
            try PixelImage.decode([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x01] + [UInt8](repeating: 0, count: 200), source: "bogus.jpg")
        } throws: { error in
            guard case ImageError.corrupt(path: "bogus.jpg", format: .jpeg, _) = error else { return false }
            return "\(error)".contains("bogus.jpg")
        }
        // Rewrite the SOF0 frame size to 60000 x 60000: refused from the header, before any pixel memory.
        var huge = jpeg
        let sof = try #require((0 ..< huge.count - 1).first { huge[$0] == 0xFF && huge[$0 + 1] == 0xC0 })
        huge.replaceSubrange(sof + 5 ..< sof + 9, with: [0xEA, 0x60, 0xEA, 0x60])
        #expect(throws: ImageError.tooLarge(path: "huge.jpg", width: 60000, height: 60000, limits: .default)) {
            try PixelImage.decode(huge, source: "huge.jpg")
        }
        // A frame that claims 12-bit samples is a valid JPEG this 8-bit decoder does not handle: unsupported.
        var twelve = jpeg
        twelve[sof + 4] = 12
        #expect {
            try PixelImage.decode(twelve, source: "deep.jpg")
        } throws: { error in
            guard case ImageError.unsupported(path: "deep.jpg", format: .jpeg, _) = error else { return false }
            return true
        }
    }

    @Test("the format comes from the file's bytes, not its name")
    func formatByMagic() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/actually-a-jpeg.png"
        let image = gradient(width: 8, height: 8)
        #expect(FileManager.default.createFile(atPath: path, contents: Data(try image.encodeJPEG(quality: 100))))
        let decoded = try PixelImage.decodeFile(path)
        #expect(decoded.format == .jpeg)
        #expect(decoded.image.width == 8)
    }
}
