import Foundation
import Testing
@testable import PaellaIO
import PaellaTestSupport

@Suite("PNG")
struct ImagePNGTests {
    @Test("8-bit gray, gray+alpha, RGB and RGBA survive encode then decode unchanged", arguments: PixelImage.Layout.allCases)
    func roundTrip(layout: PixelImage.Layout) throws {
        let image = randomImage(width: 23, height: 17, layout: layout, seed: 7)
        let decoded = try PixelImage.decode(try image.encodePNG(), source: "round trip")
        #expect(decoded.format == .png)
        #expect(decoded.sourceBitDepth == 8)
        #expect(decoded.image == image)
    }

    @Test("write(to:) lands the whole file under its name and leaves no temporary file behind")
    func writeFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = randomImage(width: 9, height: 4, layout: .rgb, seed: 1)
        let path = dir + "/out.png"
        try image.write(to: path, text: ["parameters": "steps=8"])
        try image.write(to: path, text: ["parameters": "steps=12"])  // overwrites atomically
        #expect(try PixelImage(contentsOf: path) == image)
        #expect(try PixelImage.readPNGText(path) == ["parameters": "steps=12"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.png"])
    }

    @Test("16-bit RGB and gray keep the high byte of each sample (libpng strip_16, PIL's RGB;16B)")
    func sixteenBit() throws {
        var random = TestRandom(seed: 3)
        let (w, h) = (5, 3)
        let rgb16 = (0 ..< h).map { _ in (0 ..< w * 3 * 2).map { _ in UInt8(random.int(0 ... 255)) } }
        let decoded = try PixelImage.decode(makePNG(width: w, height: h, bitDepth: 16, colorType: 2, rows: rgb16))
        #expect(decoded.sourceBitDepth == 16)
        #expect(decoded.image.layout == .rgb)
        // Big-endian samples: the high byte is at even offsets.
        #expect(decoded.image.pixels == rgb16.flatMap { row in stride(from: 0, to: row.count, by: 2).map { row[$0] } })

        let gray16 = (0 ..< h).map { _ in (0 ..< w * 2).map { _ in UInt8(random.int(0 ... 255)) } }
        let gray = try PixelImage.decode(makePNG(width: w, height: h, bitDepth: 16, colorType: 0, rows: gray16)).image
        #expect(gray.layout == .gray)
        #expect(gray.pixels == gray16.flatMap { row in stride(from: 0, to: row.count, by: 2).map { row[$0] } })
        #expect(gray.rgb().pixels == gray.pixels.flatMap { [$0, $0, $0] })
    }

    @Test("palette images expand to RGB, or RGBA when tRNS is present; 1-bit gray expands to 0 and 255")
    func paletteAndLowBitGray() throws {
        let palette: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255]
        let indices: [[UInt8]] = [[0, 1, 2], [2, 1, 0]]
        let rgb = try PixelImage.decode(makePNG(width: 3, height: 2, bitDepth: 8, colorType: 3, rows: indices,
                                                chunks: [("PLTE", palette)])).image
        #expect(rgb.layout == .rgb)
        #expect(rgb.pixels == indices.flatMap { $0.flatMap { Array(palette[Int($0) * 3 ..< Int($0) * 3 + 3]) } })

        let rgba = try PixelImage.decode(makePNG(width: 3, height: 2, bitDepth: 8, colorType: 3, rows: indices,
                                                 chunks: [("PLTE", palette), ("tRNS", [0, 128])])).image
        #expect(rgba.layout == .rgba)
        #expect(rgba[0, 0, 3] == 0 && rgba[1, 0, 3] == 128 && rgba[2, 0, 3] == 255)  // entries past tRNS are opaque
        #expect(rgba.rgb() == rgb)  // dropping alpha gives the palette colours, like PIL's convert("RGB")

        // 1-bit gray, 10 pixels: bits 1011001110 then 6 padding bits.
        let bits = try PixelImage.decode(makePNG(width: 10, height: 1, bitDepth: 1, colorType: 0,
                                                 rows: [[0b1011_0011, 0b1000_0000]])).image
        #expect(bits.pixels == [255, 0, 255, 255, 0, 0, 255, 255, 255, 0])
    }

    @Test("text entries round-trip: Latin-1 values as tEXt, others as iTXt, after IHDR with valid CRCs")
    func textChunks() throws {
        let text = ["parameters": "prompt=a café; steps=8; seed=42", "Comment": "猫 🐈", "empty": ""]
        let png = try PixelImage(width: 2, height: 2, layout: .gray, repeating: 9).encodePNG(text: text)
        #expect(try PixelImage.decode(png).text == text)

        // Parse the chunks by hand: every CRC must check, text must come after IHDR and before IDAT.
        let chunks = try parseChunks(png)
        #expect(chunks.allSatisfy { $0.crcValid })
        #expect(chunks.first?.type == "IHDR" && chunks.last?.type == "IEND")
        let firstIDAT = try #require(chunks.firstIndex { $0.type == "IDAT" })
        let textIndices = chunks.indices.filter { ["tEXt", "iTXt"].contains(chunks[$0].type) }
        #expect(textIndices.count == 3 && textIndices.allSatisfy { $0 > 0 && $0 < firstIDAT })
        // tEXt payload is keyword, NUL, Latin-1 text (é is the single byte 0xE9).
        let parameters = try #require(chunks.first { $0.type == "tEXt" && $0.data.starts(with: Array("parameters\0".utf8)) })
        #expect(parameters.data == Array("parameters\0prompt=a caf".utf8) + [0xE9] + Array("; steps=8; seed=42".utf8))
        // iTXt payload is keyword, NUL, compression flag 0, method 0, empty language, NUL, empty translated key, NUL, UTF-8.
        let comment = try #require(chunks.first { $0.type == "iTXt" })
        #expect(comment.data == Array("Comment\0".utf8) + [0, 0, 0, 0] + Array("猫 🐈".utf8))
    }

    @Test("invalid PNG keywords and NUL in text are refused with a typed error")
    func invalidText() throws {
        let image = PixelImage(width: 1, height: 1, layout: .gray)
        for key in ["", " lead", "trail ", "two  spaces", String(repeating: "k", count: 80), "ключ", "tab\t"] {
            #expect(throws: ImageError.self) { try image.encodePNG(text: [key: "v"]) }
        }
        #expect(throws: ImageError.invalidText(key: "k", reason: "PNG text cannot contain a NUL character")) {
            try image.encodePNG(text: ["k": "a\0b"])
        }
    }

    @Test("a damaged IDAT, a cut-short file, an empty file and non-PNG bytes give typed errors naming the source")
    func corruptInput() throws {
        let png = try randomImage(width: 16, height: 16, layout: .rgb, seed: 5).encodePNG()
        let chunks = try parseChunks(png)
        let idat = try #require(chunks.first { $0.type == "IDAT" })
        var flipped = png
        flipped[idat.offset + 8 + 5] ^= 0xFF  // inside the compressed data: zlib rejects it
        #expect {
            try PixelImage.decode(flipped, source: "flipped.png")
        } throws: { error in
            guard case ImageError.corrupt(path: "flipped.png", format: .png, _) = error else { return false }
            return "\(error)".contains("flipped.png")
        }
        var badCRC = png
        badCRC[idat.offset + 8 + idat.data.count] ^= 0x01  // the stored CRC no longer matches the data
        #expect {
            try PixelImage.decode(badCRC, source: "crc.png")
        } throws: { error in
            guard case ImageError.corrupt(path: "crc.png", format: .png, let reason) = error else { return false }
            return reason.contains("CRC")
        }
        #expect(throws: ImageError.truncated(path: "half.png", format: .png)) {
            try PixelImage.decode(Array(png.prefix(png.count / 2)), source: "half.png")
        }
        #expect(throws: ImageError.truncated(path: "sig.png", format: .png)) {
            try PixelImage.decode(Array(png.prefix(8)), source: "sig.png")
        }
        #expect(throws: ImageError.cannotRead(path: "empty", reason: "the file is empty")) {
            try PixelImage.decode([UInt8](), source: "empty")
        }
        #expect(throws: ImageError.notAnImage(path: "notes.png", detected: nil)) {
            try PixelImage.decode(Array("just some text".utf8), source: "notes.png")
        }
        #expect(throws: ImageError.notAnImage(path: "anim.png", detected: "GIF")) {
            try PixelImage.decode(Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 20), source: "anim.png")
        }
        let missing = "/nonexistent/dir/missing.png"
        #expect {
            try PixelImage(contentsOf: missing)
        } throws: { error in
            guard case ImageError.cannotRead(path: missing, _) = error else { return false }
            return "\(error)".contains(missing)
        }
    }

    @Test("a header claiming 100000x100000 pixels is refused before the pixel buffer is allocated")
    func oversizedHeader() throws {
        // A valid IHDR and a 3-byte IDAT: if the reader allocated 3e10 bytes first, this test would crash, not pass.
        var ihdr = bigEndian(100_000) + bigEndian(100_000)
        ihdr += [8, 2, 0, 0, 0]
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + pngChunk("IHDR", ihdr)
            + pngChunk("IDAT", [0x78, 0x01, 0x03]) + pngChunk("IEND", [])
        #expect(throws: ImageError.tooLarge(path: "huge.png", width: 100_000, height: 100_000, limits: .default)) {
            try PixelImage.decode(png, source: "huge.png")
        }
        // Configurable: a 64x64 image is refused under a 32-pixel side limit or a 4000-pixel total limit.
        let small = try PixelImage(width: 64, height: 64, layout: .gray).encodePNG()
        let sideLimit = ImageLimits(maxSide: 32, maxPixels: 1 << 20)
        #expect(throws: ImageError.tooLarge(path: "s", width: 64, height: 64, limits: sideLimit)) {
            try PixelImage.decode(small, source: "s", limits: sideLimit)
        }
        #expect(throws: ImageError.self) {
            try PixelImage.decode(small, source: "s", limits: ImageLimits(maxSide: 100, maxPixels: 4000))
        }
        #expect(try PixelImage.decode(small, limits: ImageLimits(maxSide: 64, maxPixels: 4096)).image.width == 64)
    }
}

// MARK: Helpers shared by the image tests

func randomImage(width: Int, height: Int, layout: PixelImage.Layout, seed: UInt64) -> PixelImage {
    var random = TestRandom(seed: seed)
    return PixelImage(width: width, height: height, layout: layout,
                      pixels: (0 ..< width * height * layout.channels).map { _ in UInt8(random.int(0 ... 255)) })
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "paella-image-tests-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

/// CRC-32 as PNG and zlib define it (reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF).
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0 ..< 8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
    }
    return ~crc
}

func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let body = Array(type.utf8) + data
    return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
}

/// A PNG built by hand (no libpng): `rows` are raw scanlines without the filter byte; image data is stored
/// uncompressed in a zlib stream of "stored" deflate blocks.
func makePNG(width: Int, height: Int, bitDepth: UInt8, colorType: UInt8, rows: [[UInt8]],
             chunks: [(String, [UInt8])] = []) -> [UInt8] {
    let raw: [UInt8] = rows.flatMap { [UInt8(0)] + $0 }  // filter type 0 (None) on every row
    var zlib: [UInt8] = [0x78, 0x01]
    var offset = 0
    repeat {
        let n = min(65535, raw.count - offset)
        let final: UInt8 = offset + n == raw.count ? 1 : 0
        zlib += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
        zlib += raw[offset ..< offset + n]
        offset += n
    } while offset < raw.count
    var (a, b): (UInt32, UInt32) = (1, 0)  // Adler-32
    for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
    zlib += bigEndian(b << 16 | a)
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    png += pngChunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [bitDepth, colorType, 0, 0, 0])
    for (type, data) in chunks { png += pngChunk(type, data) }
    png += pngChunk("IDAT", zlib) + pngChunk("IEND", [])
    return png
}

struct ParsedChunk {
    let type: String
    let data: [UInt8]
    let offset: Int
    let crcValid: Bool
}

struct MalformedPNG: Error {}

/// The chunks of a PNG file, read by hand from the byte layout (length, type, data, CRC).
func parseChunks(_ png: [UInt8]) throws -> [ParsedChunk] {
    guard png.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else { throw MalformedPNG() }
    func u32(_ i: Int) -> UInt32 { png[i ..< i + 4].reduce(0) { $0 << 8 | UInt32($1) } }
    var chunks: [ParsedChunk] = []
    var i = 8
    while i < png.count {
        guard i + 12 <= png.count else { throw MalformedPNG() }
        let length = Int(u32(i))
        guard i + 12 + length <= png.count else { throw MalformedPNG() }
        let body = Array(png[i + 4 ..< i + 8 + length])
        chunks.append(ParsedChunk(type: String(decoding: body.prefix(4), as: UTF8.self), data: Array(body.dropFirst(4)),
                                  offset: i, crcValid: crc32(body) == u32(i + 8 + length)))
        i += 12 + length
    }
    return chunks
}
