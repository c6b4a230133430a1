import CImageCodecs
import Foundation
import Testing
@testable import PaellaIO
import PaellaTestSupport

/// Images made to cost more than they are worth: text chunks that inflate to gigabytes, JPEGs with more scans than
/// any photograph, and pictures far larger than the model that only get resized. All are built here, at test time.
@Suite("Hostile images")
struct ImageHostileTests {
    /// A zlib stream that inflates to `count` zero bytes (`count` >= 1): one fixed-Huffman deflate block holding a
    /// literal 0 and then copies of 258 bytes at distance 1, 13 bits each, so a few hundred kilobytes inflate to
    /// tens of megabytes.
    static func zlibZeros(count: Int) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var bits: UInt64 = 0, used = 0
        func put(_ value: UInt64, _ n: Int) {  // LSB first, as deflate packs header fields and extra bits
            bits |= value << UInt64(used)
            used += n
            while used >= 8 { out.append(UInt8(bits & 0xFF)); bits >>= 8; used -= 8 }
        }
        func code(_ value: UInt64, _ n: Int) {  // Huffman codes go most significant bit first
            for i in stride(from: n - 1, through: 0, by: -1) { put((value >> UInt64(i)) & 1, 1) }
        }
        put(1, 1); put(1, 2)                      // BFINAL, BTYPE 01 (fixed Huffman)
        code(0x30, 8)                             // literal 0
        var left = count - 1
        while left >= 258 { code(0xC5, 8); code(0, 5); left -= 258 }  // length 258 (symbol 285), distance 1
        for _ in 0 ..< left { code(0x30, 8) }
        code(0, 7)                                // end of block (symbol 256)
        if used > 0 { out.append(UInt8(bits & 0xFF)) }
        let adler = UInt32(count % 65521) << 16 | 1
        return out + bigEndian(adler)
    }

    /// A zTXt chunk body: keyword, NUL, method 0, the zlib stream.
    static func zTXt(_ key: String, _ zlib: [UInt8]) -> (String, [UInt8]) { ("zTXt", Array(key.utf8) + [0, 0] + zlib) }

    /// A compressed iTXt chunk body: keyword, NUL, flag 1, method 0, empty language and translated keyword.
    static func compressedITXt(_ key: String, _ zlib: [UInt8]) -> (String, [UInt8]) {
        ("iTXt", Array(key.utf8) + [0, 1, 0, 0, 0] + zlib)
    }

    static func tEXt(_ key: String, _ value: String) -> (String, [UInt8]) { ("tEXt", Array(key.utf8) + [0] + Array(value.utf8)) }

    static func grayPNG(chunks: [(String, [UInt8])]) -> [UInt8] {
        makePNG(width: 2, height: 2, bitDepth: 8, colorType: 0, rows: [[1, 2], [3, 4]], chunks: chunks)
    }

    @Test("a FIFO given as an image or a tar shard is refused at once instead of waiting for a writer")
    func fifosAreRefusedWithoutBlocking() throws {
        let folder = try PaellaCLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/picture.png"
        try #require(mkfifo(fifo, 0o600) == 0)
        // A watchdog: should a reader block on the FIFO, a writer opens it after 5 s (and every second after), so
        // the test fails instead of hanging the suite.
        let done = ManagedAtomicFlag()
        let watchdog = Thread {
            Thread.sleep(forTimeInterval: 5)
            while !done.isSet {
                let fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
                Thread.sleep(forTimeInterval: 1)
            }
        }
        watchdog.start()
        defer { done.set() }
        let start = Date()
        #expect(throws: (any Error).self) { try PixelImage(contentsOf: fifo) }
        #expect(throws: (any Error).self) { try TarArchive.read(contentsOf: fifo) }
        #expect(Date().timeIntervalSince(start) < 4, "reading the FIFO waited for a writer")  // the watchdog fires at 5 s
    }

    @Test("a text chunk that inflates past the limit is skipped; the image and its parameters still read")
    func textChunkBomb() throws {
        // 7 MiB of zeros in ~45 kB: under libpng's own 8 MB limit on an inflated chunk, so without this layer's
        // cap each of the 40 chunks would be inflated and kept (280 MiB; a thousand of them, gigabytes).
        let bomb = Self.zlibZeros(count: 7 << 20)
        #expect(bomb.count < 50_000)
        let bombs = (0 ..< 40).map { $0 % 2 == 0 ? Self.zTXt("Comment\($0)", bomb) : Self.compressedITXt("Description\($0)", bomb) }
        let png = Self.grayPNG(chunks: bombs + [Self.tEXt("parameters", "prompt=a bowl; steps=8")])
        let start = Date()
        let decoded = try PixelImage.decode(png)
        #expect(Date().timeIntervalSince(start) < TimeGuard.seconds(2))
        #expect(decoded.image.pixels == [1, 2, 3, 4])
        #expect(decoded.text == ["parameters": "prompt=a bowl; steps=8"])

        // Under the limit, compressed text is read (zTXt as Latin-1, iTXt as UTF-8).
        let small = Self.grayPNG(chunks: [Self.zTXt("Comment", Self.zlibZeros(count: 1000)),
                                         Self.compressedITXt("parameters", Self.zlibZeros(count: Int(IC_PNG_TEXT_MAX_INFLATED)))])
        let text = try PixelImage.decode(small).text
        #expect(text["Comment"] == String(repeating: "\0", count: 1000))
        #expect(text["parameters"]?.utf8.count == Int(IC_PNG_TEXT_MAX_INFLATED))
    }

    @Test("text entries are capped in number and bytes; parameters is kept past the caps, the first of a key wins")
    func manyTextChunks() throws {
        let value = String(repeating: "x", count: 100_000)
        var chunks = (0 ..< 200).map { Self.tEXt("key\($0)", value) }
        chunks.append(Self.tEXt("parameters", "steps=8"))
        chunks.append(Self.tEXt("parameters", "steps=9"))
        let text = try PixelImage.decode(Self.grayPNG(chunks: chunks)).text
        #expect(text["parameters"] == "steps=8")
        #expect(text.count <= Int(IC_PNG_TEXT_MAX_ENTRIES) + 1)
        #expect(text.values.reduce(0) { $0 + $1.utf8.count } <= Int(IC_PNG_TEXT_MAX_TOTAL) + 7)
        #expect(text["key0"] == value)
    }

    static func noise(width: Int, height: Int) -> PixelImage {
        var random = TestRandom(seed: 3)
        return PixelImage(width: width, height: height, layout: .rgb,
                          pixels: (0 ..< width * height * 3).map { _ in UInt8(random.int(0 ... 255)) })
    }

    @Test("a JPEG with more scans than the limit is refused by name; a normal progressive one decodes")
    func manyScanJPEG() throws {
        let image = Self.noise(width: 48, height: 32)
        let progressive = try image.encodeJPEG(quality: 90, progressiveBands: 3)  // 1 + 3 x 3 = 10 scans
        let decoded = try PixelImage.decode(progressive, source: "ten.jpg").image
        let baseline = try PixelImage.decode(try image.encodeJPEG(quality: 90)).image
        #expect(decoded.width == 48 && decoded.height == 32)
        #expect(zip(decoded.pixels, baseline.pixels).allSatisfy { abs(Int($0) - Int($1)) <= 2 })

        let many = try image.encodeJPEG(quality: 90, progressiveBands: 63)        // 1 + 3 x 63 = 190 scans
        #expect(throws: ImageError.unsupported(path: "many.jpg", format: .jpeg,
                                               reason: "it has more than \(IC_JPEG_MAX_SCANS) scans, the most this reader decodes")) {
            try PixelImage.decode(many, source: "many.jpg")
        }
        let message = "\(ImageError.unsupported(path: "many.jpg", format: .jpeg, reason: "x"))"
        #expect(message.hasSuffix(".") && !message.contains("\n"))
    }

    @Test("commands that resize decode large images reduced: JPEG by DCT scaling, PNG by averaging blocks")
    func reducedDecoding() throws {
        let image = Self.noise(width: 1000, height: 600)
        // Both sides must stay at least 100: 600 / 8 = 75 is too short, 600 / 4 = 150 is not.
        let limits = ImageLimits(maxSide: 16384, maxPixels: 1 << 28, reduceKeepingSide: 100)
        #expect(limits.reductionFactor(width: 1000, height: 600) == 4)
        #expect(ImageLimits.default.reductionFactor(width: 16384, height: 16384) == 1)

        let jpeg = try PixelImage.decode(try image.encodeJPEG(quality: 95), limits: limits).image
        #expect(jpeg.width == 250 && jpeg.height == 150)

        let png = try PixelImage.decode(try image.encodePNG(), limits: limits).image
        #expect(png.width == 250 && png.height == 150)
        // Each output pixel is the rounded mean of its 4 x 4 block.
        for (x, y, c) in [(0, 0, 0), (249, 149, 2), (123, 77, 1)] {
            var sum = 0
            for dy in 0 ..< 4 { for dx in 0 ..< 4 { sum += Int(image[x * 4 + dx, y * 4 + dy, c]) } }
            #expect(Int(png[x, y, c]) == (sum + 8) / 16)
        }
        // Sides that are not multiples: the edge blocks average what there is (ceil(1001 / 4) = 251).
        let odd = try PixelImage.decode(try Self.noise(width: 1001, height: 601).encodePNG(), limits: limits).image
        #expect(odd.width == 251 && odd.height == 151)

        // The decoded-pixel limit applies after reduction.
        let tight = ImageLimits(maxSide: 16384, maxPixels: 1 << 28, reduceKeepingSide: nil, maxDecodedPixels: 1000)
        let refusal = ImageError.tooLargeToDecode(path: "big.png", width: 1000, height: 600, decodedWidth: 1000,
                                                  decodedHeight: 600, maxPixels: 1000)
        #expect(throws: refusal) { try PixelImage.decode(try image.encodePNG(), source: "big.png", limits: tight) }
        #expect("\(refusal)".hasSuffix(".") && "\(refusal)".contains("1000 pixels this command decodes"))
    }

    @Test("CLIP preprocessing cuts a long strip to 4:1 before resizing, so a 1 x 16384 image costs no more than a small one")
    func clipPreprocessingOfAStrip() throws {
        let strip = PixelImage(width: 1, height: 16384, layout: .rgb, repeating: 77)
        let start = Date()
        let square = strip.clipPreprocessed(size: 64)
        #expect(Date().timeIntervalSince(start) < TimeGuard.seconds(2))
        #expect(square.width == 64 && square.height == 64 && square.pixels.allSatisfy { $0 == 77 })
        // Within 4:1 nothing changes: the same as resizing first.
        let photo = Self.noise(width: 120, height: 40)
        #expect(photo.clipPreprocessed(size: 32) == photo.resizedShortestSide(to: 32).centerCropped(width: 32, height: 32))
    }

    @Test("the editing preset keeps both sides at least 1024, fits 2^24 pixels, and reads a PNG row by row")
    func editingPresetReducesLargePNGs() throws {
        let png = try PixelImage(width: 8192, height: 4096, layout: .gray, repeating: 200).encodePNG()
        let decoded = try PixelImage.decode(png, limits: .resizedAfterReading)
        #expect(decoded.image.width == 2048 && decoded.image.height == 1024 && decoded.image.pixels.allSatisfy { $0 == 200 })
        #expect(decoded.sourceWidth == 8192 && decoded.sourceHeight == 4096)
        // A long thin image is reduced below the kept side rather than decoded past the pixel budget.
        #expect(ImageLimits.resizedAfterReading.reductionFactor(width: 16384, height: 2047) == 2)
        #expect(ImageLimits.resizedAfterReading.reductionFactor(width: 16384, height: 16384) == 8)
        #expect(ImageLimits.resizedAfterReading.reductionFactor(width: 640, height: 480) == 1)
    }
}

/// A flag one thread sets and another reads.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
