import CImageCodecs

// JPEG through libjpeg(-turbo)'s classic API; the C layer in Sources/CImageCodecs installs an error manager
// that longjmps, so a corrupt file is an error here instead of libjpeg's exit(). Decoding uses libjpeg's
// defaults (islow DCT, fancy upsampling), as PIL does. Grayscale stays one channel; YCbCr and RGB decode to
// RGB; CMYK and YCCK are converted to RGB with PIL's rule (every 4-component JPEG is taken as Adobe-inverted
// CMYK, then R = (255 - K) * (255 - C) / 255 in PIL's rounding). EXIF orientation is not applied (PIL does not
// apply it either unless asked).

extension PixelImage {
    /// Decodes a JPEG held in memory (the caller has checked the SOI marker); `source` names it in errors.
    static func decodeJPEG(_ bytes: UnsafeRawBufferPointer, source: String, limits: ImageLimits) throws -> DecodedImage {
        let data = bytes.bindMemory(to: UInt8.self)
        guard let reader = ic_jpeg_reader_create(data.baseAddress, data.count) else {
            throw ImageError.cannotRead(path: source, reason: "out of memory")
        }
        defer { ic_jpeg_reader_destroy(reader) }
        let raster = try decodeRaster(
            source: source, format: .jpeg, limits: limits, library: "libjpeg",
            message: { String(cString: ic_jpeg_reader_message(reader)) },
            readHeader: { ic_jpeg_read_header(reader, &$0) },
            reduce: { ic_jpeg_set_reduction(reader, $0, &$1) },
            readPixels: { ic_jpeg_read_pixels(reader, $0, $1) })
        return DecodedImage(image: raster.image, sourceWidth: raster.sourceWidth, sourceHeight: raster.sourceHeight, format: .jpeg,
                            text: [:], sourceBitDepth: Int(raster.info.source_bit_depth))
    }

    /// The image encoded as a baseline JPEG at `quality` (1...100). Gray and RGB only; alpha is dropped
    /// first. Paella writes PNG; this exists to make JPEG input (tests, tools).
    /// With `progressiveBands` 1...63 the JPEG is progressive: a DC scan, then each component's AC coefficients in
    /// that many scans (for tests of the scan limit).
    public func encodeJPEG(quality: Int = 90, progressiveBands: Int = 0) throws -> [UInt8] {
        precondition((1 ... 100).contains(quality), "PixelImage.encodeJPEG: quality \(quality) outside 1...100")
        precondition((0 ... 63).contains(progressiveBands), "PixelImage.encodeJPEG: \(progressiveBands) bands outside 0...63")
        let source = layout == .gray || layout == .rgb ? self : converted(to: layout == .grayAlpha ? .gray : .rgb)
        return try PixelImage.encodeJPEGSamples(source.pixels, width: width, height: height,
                                                channels: source.channels, quality: quality,
                                                progressiveBands: progressiveBands)
    }

    /// Encodes raw 8-bit samples with 1 (gray), 3 (RGB) or 4 (CMYK, stored as given) channels as a JPEG.
    static func encodeJPEGSamples(_ samples: [UInt8], width: Int, height: Int, channels: Int,
                                  quality: Int, progressiveBands: Int = 0) throws -> [UInt8] {
        precondition(samples.count == width * height * channels, "encodeJPEGSamples: \(samples.count) samples for \(width)x\(height)x\(channels)")
        guard width > 0 && height > 0 else {
            throw ImageError.cannotEncode(format: .jpeg, reason: "a JPEG cannot hold an empty \(width)x\(height) image")
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = samples.withUnsafeBufferPointer { p in
            ic_jpeg_encode(p.baseAddress, UInt32(width), UInt32(height), Int32(channels), width * channels,
                           Int32(quality), Int32(progressiveBands), &out, &size, &message, message.count)
        }
        guard status == Int32(IC_OK), let out else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.cannotEncode(format: .jpeg, reason: "libjpeg: " + text)
        }
        defer { ic_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }
}
