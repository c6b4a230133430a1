import CImageCodecs
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// PNG through libpng's classic API; the C layer in Sources/CImageCodecs turns libpng's longjmp errors into
// status codes. Reading keeps 8 bits per sample (16-bit files keep the high byte, as PIL does for RGB) and
// applies no gamma or colour profile (PIL applies none either), so pixels match what upstream Paella sees.
//
// Text: PNG has two uncompressed text chunks. tEXt holds Latin-1 only; iTXt holds UTF-8. A value whose
// characters all fit in Latin-1 is written as tEXt (what most tools, e.g. PIL's `info` and the AUTOMATIC1111
// "parameters" readers, look at first); any other value goes into an iTXt chunk, so nothing is escaped or lost.
// Keys are PNG keywords: 1 to 79 printable Latin-1 characters without leading, trailing or double spaces.

extension PixelImage {
    /// The image encoded as a PNG file (8 bits per sample, gray / gray+alpha / RGB / RGBA as `layout` says),
    /// with `text` entries written after IHDR in key order.
    public func encodePNG(text: [String: String] = [:], compressionLevel: Int = 6) throws -> [UInt8] {
        precondition(pixels.count == width * height * channels,
                     "PixelImage.encodePNG: \(pixels.count) samples for a \(width)x\(height) \(layout) image")
        precondition((0 ... 9).contains(compressionLevel), "PixelImage.encodePNG: compression level \(compressionLevel) outside 0...9")
        guard width > 0 && height > 0 else {
            throw ImageError.cannotEncode(format: .png, reason: "a PNG cannot hold an empty \(width)x\(height) image")
        }
        guard let writer = ic_png_writer_create() else { throw ImageError.cannotEncode(format: .png, reason: "out of memory") }
        defer { ic_png_writer_destroy(writer) }

        for key in text.keys.sorted() {
            let value = text[key] ?? ""
            let keyBytes = try pngKeyword(key)
            guard !value.unicodeScalars.contains("\0") else {
                throw ImageError.invalidText(key: key, reason: "PNG text cannot contain a NUL character")
            }
            // tEXt when every character is Latin-1, iTXt (UTF-8) otherwise.
            let latin1 = value.unicodeScalars.allSatisfy { $0.value <= 0xFF }
            let valueBytes = latin1 ? value.unicodeScalars.map { UInt8($0.value) } : Array(value.utf8)
            let status = (keyBytes + [0]).withUnsafeBufferPointer { k in
                (valueBytes + [0]).withUnsafeBufferPointer { v in
                    k.withMemoryRebound(to: CChar.self) { kc in
                        v.withMemoryRebound(to: CChar.self) { vc in
                            ic_png_writer_add_text(writer, kc.baseAddress, vc.baseAddress, latin1 ? 0 : 1)
                        }
                    }
                }
            }
            guard status == Int32(IC_OK) else { throw ImageError.cannotEncode(format: .png, reason: "out of memory") }
        }

        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        let status = pixels.withUnsafeBufferPointer { p in
            ic_png_writer_encode(writer, p.baseAddress, UInt32(width), UInt32(height), Int32(channels),
                                 width * channels, Int32(compressionLevel), &out, &size)
        }
        guard status == Int32(IC_OK), let out else {
            throw ImageError.cannotEncode(format: .png, reason: "libpng: " + String(cString: ic_png_writer_message(writer)))
        }
        defer { ic_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }

    /// Decodes a PNG held in memory (the caller has checked the signature); `source` names it in errors.
    static func decodePNG(_ bytes: UnsafeRawBufferPointer, source: String, limits: ImageLimits) throws -> DecodedImage {
        let data = bytes.bindMemory(to: UInt8.self)
        guard let reader = ic_png_reader_create(data.baseAddress, data.count) else {
            throw ImageError.cannotRead(path: source, reason: "out of memory")
        }
        defer { ic_png_reader_destroy(reader) }
        let raster = try decodeRaster(
            source: source, format: .png, limits: limits, library: "libpng",
            message: { String(cString: ic_png_reader_message(reader)) },
            readHeader: { ic_png_read_header(reader, &$0) },
            reduce: { ic_png_set_reduction(reader, $0, &$1) },
            readPixels: { ic_png_read_pixels(reader, $0, $1) })

        // Text entries as the codec kept them: at most IC_PNG_TEXT_MAX_ENTRIES, IC_PNG_TEXT_MAX_TOTAL bytes in
        // all, none inflated past IC_PNG_TEXT_MAX_INFLATED (the rest are skipped, never an error).
        var text: [String: String] = [:]
        for i in 0 ..< ic_png_text_count(reader) {
            var key: UnsafePointer<CChar>?
            var value: UnsafePointer<CChar>?
            var length = 0
            var utf8: Int32 = 0
            guard ic_png_text_at(reader, i, &key, &value, &length, &utf8) == Int32(IC_OK), let key, let value else { continue }
            let valueBytes = UnsafeRawBufferPointer(start: value, count: length)
            let keyBytes = UnsafeRawBufferPointer(start: key, count: strlen(key))
            text[latin1String(keyBytes)] = utf8 != 0 ? String(decoding: valueBytes, as: UTF8.self) : latin1String(valueBytes)
        }
        return DecodedImage(image: raster.image, sourceWidth: raster.sourceWidth, sourceHeight: raster.sourceHeight, format: .png,
                            text: text, sourceBitDepth: Int(raster.info.source_bit_depth))
    }
}

/// The Latin-1 bytes of a valid PNG keyword (PNG spec 11.3.4.2), or a thrown error saying what is wrong.
private func pngKeyword(_ key: String) throws -> [UInt8] {
    let scalars = Array(key.unicodeScalars)
    guard (1 ... 79).contains(scalars.count) else {
        throw ImageError.invalidText(key: key, reason: "a PNG keyword has 1 to 79 characters")
    }
    guard scalars.allSatisfy({ (32 ... 126).contains($0.value) || (161 ... 255).contains($0.value) }) else {
        throw ImageError.invalidText(key: key, reason: "a PNG keyword may only hold printable Latin-1 characters")
    }
    guard scalars.first != " ", scalars.last != " ", !key.contains("  ") else {
        throw ImageError.invalidText(key: key, reason: "a PNG keyword cannot start or end with a space or hold two in a row")
    }
    return scalars.map { UInt8($0.value) }
}

/// Bytes read as Latin-1 (each byte is the Unicode scalar of the same value).
private func latin1String(_ bytes: UnsafeRawBufferPointer) -> String {
    var s = String.UnicodeScalarView()
    for b in bytes { s.append(Unicode.Scalar(b)) }
    return String(s)
}
