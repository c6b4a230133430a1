import CImageCodecs
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PaellaCore

/// An 8-bit image in memory: `height` rows of `width` pixels, each `layout.channels` interleaved samples.
///
/// This is what the codecs produce and consume and what the preprocessing (resize, crop) works on; the models
/// see images as float tensors (`tensor()`, `init(tensor:index:)`). Models take RGB: call `rgb()` after
/// reading, which drops alpha like PIL's `Image.convert("RGB")` does in upstream Paella.
public struct PixelImage: Sendable, Equatable {
    /// How the samples of one pixel are laid out; the raw value is the number of samples.
    public enum Layout: Int, Sendable, CaseIterable {
        case gray = 1, grayAlpha = 2, rgb = 3, rgba = 4
        public var channels: Int { rawValue }
        public var hasAlpha: Bool { self == .grayAlpha || self == .rgba }
    }

    public let width: Int
    public let height: Int
    public let layout: Layout
    /// Row-major interleaved samples; the count must stay `width * height * layout.channels`.
    public var pixels: [UInt8]

    public var channels: Int { layout.channels }

    /// An image holding `pixels` (row-major, interleaved).
    public init(width: Int, height: Int, layout: Layout = .rgb, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "PixelImage: negative size \(width)x\(height)")
        precondition(pixels.count == width * height * layout.channels,
                     "PixelImage: \(pixels.count) samples for a \(width)x\(height) \(layout) image")
        self.width = width
        self.height = height
        self.layout = layout
        self.pixels = pixels
    }

    /// An image with every sample set to `value`.
    public init(width: Int, height: Int, layout: Layout = .rgb, repeating value: UInt8 = 0) {
        self.init(width: width, height: height, layout: layout,
                  pixels: [UInt8](repeating: value, count: width * height * layout.channels))
    }

    /// Sample `channel` of the pixel at column `x`, row `y`.
    public subscript(x: Int, y: Int, channel: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + channel] }
        set { pixels[(y * width + x) * channels + channel] = newValue }
    }

    /// The image with another layout, following PIL's `Image.convert`: gray is replicated into R, G and B;
    /// alpha is dropped (not composited) or added as opaque 255; RGB becomes gray as
    /// L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601-2 luma in 16-bit fixed point, as PIL does).
    public func converted(to target: Layout) -> PixelImage {
        if target == layout { return self }
        let n = width * height
        let (cin, cout) = (layout.channels, target.channels)
        var out = [UInt8](repeating: 0, count: n * cout)
        let sourceIsGray = layout == .gray || layout == .grayAlpha
        let targetIsGray = target == .gray || target == .grayAlpha
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0 ..< n {
                    let s = i * cin, d = i * cout
                    if targetIsGray {
                        if sourceIsGray {
                            dst[d] = src[s]
                        } else {
                            let luma = 19595 * Int(src[s]) + 38470 * Int(src[s + 1]) + 7471 * Int(src[s + 2])
                            dst[d] = UInt8((luma + 0x8000) >> 16)
                        }
                    } else {
                        for c in 0 ..< 3 { dst[d + c] = sourceIsGray ? src[s] : src[s + c] }
                    }
                    if target.hasAlpha { dst[d + cout - 1] = layout.hasAlpha ? src[s + cin - 1] : 255 }
                }
            }
        }
        return PixelImage(width: width, height: height, layout: target, pixels: out)
    }

    /// The image as 8-bit RGB (alpha dropped, gray replicated): what the models take.
    public func rgb() -> PixelImage { converted(to: .rgb) }
}

// MARK: Tensor conversion

extension PixelImage {
    /// The image as a float32 tensor `[1, H, W, C]` (channels-last) with values `sample / 255` in [0, 1].
    public func tensor() -> Tensor {
        var t = Tensor(uninitialized: [1, height, width, channels], dtype: .float32)
        t.withMutableFloats { dst in
            pixels.withUnsafeBufferPointer { src in
                for i in 0 ..< src.count { dst[i] = Float(src[i]) / 255 }
            }
        }
        return t
    }

    /// Images of one size and layout stacked into a float32 tensor `[B, H, W, C]` in [0, 1].
    /// Throws when the images differ in size or layout.
    public static func batchTensor(_ images: [PixelImage]) throws -> Tensor {
        guard let first = images.first else {
            throw ImageError.batchMismatch("a batch needs at least one image")
        }
        for (i, image) in images.enumerated()
        where image.width != first.width || image.height != first.height || image.layout != first.layout {
            throw ImageError.batchMismatch("image \(i) is \(image.width)x\(image.height) \(image.layout), " +
                                           "image 0 is \(first.width)x\(first.height) \(first.layout)")
        }
        let perImage = first.pixels.count
        var t = Tensor(uninitialized: [images.count, first.height, first.width, first.channels], dtype: .float32)
        t.withMutableFloats { dst in
            for (b, image) in images.enumerated() {
                image.pixels.withUnsafeBufferPointer { src in
                    for i in 0 ..< perImage { dst[b * perImage + i] = Float(src[i]) / 255 }
                }
            }
        }
        return t
    }

    /// Image `index` of a float tensor `[B, H, W, C]` (or `[H, W, C]`) with C = 1...4 and values in [0, 1].
    /// Values are clamped to [0, 1] (NaN becomes 0) and rounded to the nearest of 256 levels, as
    /// torchvision's `save_image` does (`x * 255 + 0.5`, clamped, truncated).
    public init(tensor: Tensor, index: Int = 0) {
        let t = tensor.rank == 3 ? tensor.reshaped([1] + tensor.shape) : tensor
        precondition(t.rank == 4 && (1 ... 4).contains(t.shape[3]),
                     "PixelImage(tensor:): expected [B, H, W, C] with C in 1...4, got \(tensor.shape)")
        precondition(index >= 0 && index < t.shape[0], "PixelImage(tensor:): index \(index) outside batch of \(t.shape[0])")
        let (h, w, c) = (t.shape[1], t.shape[2], t.shape[3])
        let perImage = h * w * c
        let f = t.dtype == .float32 ? t : t.toFloat32()
        var out = [UInt8](repeating: 0, count: perImage)
        f.withFloats { src in
            out.withUnsafeMutableBufferPointer { dst in
                let base = index * perImage
                for i in 0 ..< perImage {
                    let v = src[base + i]
                    let clamped = v.isNaN ? 0 : Swift.min(Swift.max(v, 0), 1)
                    dst[i] = UInt8(clamped * 255 + 0.5)
                }
            }
        }
        // Layout raw values are channel counts, so this cannot fail for C in 1...4.
        self.init(width: w, height: h, layout: Layout(rawValue: c) ?? .rgb, pixels: out)
    }

    /// Every image of a float tensor `[B, H, W, C]`, converted as `init(tensor:index:)` does.
    public static func images(from tensor: Tensor) -> [PixelImage] {
        let batch = tensor.rank == 3 ? 1 : tensor.shape[0]
        return (0 ..< batch).map { PixelImage(tensor: tensor, index: $0) }
    }
}

// MARK: Formats, limits, errors

/// An image file format, told by the file's first bytes (never by its name).
public enum ImageFormat: String, Sendable, Equatable {
    case png = "PNG", jpeg = "JPEG"

    /// The format of `bytes`, or nil when they start like neither a PNG nor a JPEG.
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// A name for a few other common formats, to say what a rejected file is.
    static func otherFormatName(_ bytes: UnsafeRawBufferPointer) -> String? {
        let a = Array(bytes.prefix(12))
        if a.starts(with: Array("GIF8".utf8)) { return "GIF" }
        if a.count >= 12 && a.starts(with: Array("RIFF".utf8)) && Array(a[8 ..< 12]) == Array("WEBP".utf8) { return "WebP" }
        if a.starts(with: Array("BM".utf8)) { return "BMP" }
        if a.starts(with: [0x49, 0x49, 0x2A, 0x00]) || a.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF" }
        if a.count >= 12 && Array(a[4 ..< 8]) == Array("ftyp".utf8) { return "HEIF/AVIF" }
        return nil
    }
}

/// The largest image a reader accepts; checked against the header before any pixel memory is allocated.
/// The codecs add limits of their own on what a file may make them do (text chunks, JPEG scans and memory:
/// the IC_* constants of CImageCodecs).
public struct ImageLimits: Sendable, Equatable {
    /// The largest side and pixel count of the image as the file declares it.
    public var maxSide: Int
    public var maxPixels: Int
    /// For callers that shrink the image anyway: the reader may decode it at 1/2, 1/4 or 1/8 of its size
    /// (libjpeg's DCT scaling; averaged pixel blocks for a non-interlaced PNG) while both sides stay at least
    /// this long. nil decodes at full size.
    public var reduceKeepingSide: Int?
    /// The most pixels the decoded image may have, after any reduction.
    public var maxDecodedPixels: Int

    /// 16384 pixels per side and 2^28 pixels in all (768 MiB of RGB): far above anything Paella
    /// generates or trains on, low enough that a hostile header cannot exhaust memory.
    public static let `default` = ImageLimits(maxSide: 16384, maxPixels: 1 << 28)

    /// For input images that a command resizes to the model's size (edit, vary, inpaint, outpaint): the default
    /// limits on the file, decoded reduced while both sides stay at least 1024 (four times the v1 model's 256),
    /// further where needed to fit 2^24 decoded pixels (48 MiB of RGB). Only an interlaced PNG, which cannot be
    /// reduced while decoding, can fail that budget: every other file within the file limits is reduced into it.
    public static let resizedAfterReading = ImageLimits(maxSide: 16384, maxPixels: 1 << 28, reduceKeepingSide: 1024,
                                                        maxDecodedPixels: 1 << 24)

    public init(maxSide: Int, maxPixels: Int, reduceKeepingSide: Int? = nil, maxDecodedPixels: Int? = nil) {
        self.maxSide = maxSide
        self.maxPixels = maxPixels
        self.reduceKeepingSide = reduceKeepingSide
        self.maxDecodedPixels = maxDecodedPixels ?? maxPixels
    }

    func allows(width: Int, height: Int) -> Bool {
        width <= maxSide && height <= maxSide && width.multipliedReportingOverflow(by: height).partialValue <= maxPixels
    }

    /// How much a reader shrinks a `width` x `height` image (1, 2, 4 or 8; 1 when no reduction is allowed): the
    /// largest factor that keeps both sides at least `reduceKeepingSide` long, or the smallest that brings the
    /// pixels within `maxDecodedPixels` if that is larger (a long thin image).
    func reductionFactor(width: Int, height: Int) -> Int {
        guard let keep = reduceKeepingSide, keep > 0 else { return 1 }
        let factors = [1, 2, 4, 8]
        func reduced(_ side: Int, _ f: Int) -> Int { (side + f - 1) / f }
        let keeping = factors.last { min(reduced(width, $0), reduced(height, $0)) >= keep } ?? 1
        let fitting = factors.first { reduced(width, $0) * reduced(height, $0) <= maxDecodedPixels } ?? 8
        return max(keeping, fitting)
    }
}

/// Why an image could not be read, written or converted. Each description is one sentence naming the file.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String, reason: String)
    case notAnImage(path: String, detected: String?)
    case corrupt(path: String, format: ImageFormat, reason: String)
    case truncated(path: String, format: ImageFormat)
    case unsupported(path: String, format: ImageFormat, reason: String)
    case tooLarge(path: String, width: Int, height: Int, limits: ImageLimits)
    /// Within the file limits, but what it decodes to (after any reduction) is larger than the caller allows.
    case tooLargeToDecode(path: String, width: Int, height: Int, decodedWidth: Int, decodedHeight: Int, maxPixels: Int)
    case cannotEncode(format: ImageFormat, reason: String)
    case invalidText(key: String, reason: String)
    case batchMismatch(String)

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason):
            return "Cannot read the image \(path): \(reason)."
        case .notAnImage(let path, let detected?):
            return "\(path) is a \(detected) image; only PNG and JPEG are supported, so convert it first."
        case .notAnImage(let path, nil):
            return "\(path) is not a PNG or JPEG image (its first bytes match neither format)."
        case .corrupt(let path, let format, let reason):
            return "\(path) is a damaged \(format.rawValue) file (\(reason)); re-export or replace it."
        case .truncated(let path, let format):
            return "\(path) is a truncated \(format.rawValue) file (the data ends before the image does); the download or copy was probably cut short."
        case .unsupported(let path, let format, let reason):
            return "\(path) is a \(format.rawValue) file this reader cannot decode: \(reason)."
        case .tooLarge(let path, let width, let height, let limits):
            return "\(path) is \(width)x\(height) pixels, more than the limit of \(limits.maxSide) per side and \(limits.maxPixels) in all; shrink it first or raise ImageLimits."
        case let .tooLargeToDecode(path, width, height, decodedWidth, decodedHeight, maxPixels):
            let reduced = decodedWidth == width && decodedHeight == height ? "cannot be reduced while decoding"
                : "would still decode to \(decodedWidth)x\(decodedHeight)"
            return "\(path) is \(width)x\(height) pixels and \(reduced), more than the \(maxPixels) pixels this command "
                + "decodes; shrink it first (or save a PNG without interlacing, which can be reduced while reading)."
        case .cannotEncode(let format, let reason):
            return "Cannot encode the image as \(format.rawValue): \(reason)."
        case .invalidText(let key, let reason):
            return "Cannot store the PNG text entry \"\(key)\": \(reason)."
        case .batchMismatch(let what):
            return "Cannot stack images into one batch: \(what)."
        }
    }
}

// MARK: Reading files

/// A decoded image with what its file said about itself.
public struct DecodedImage: Sendable, Equatable {
    /// The pixels, reduced when the limits allowed it (`ImageLimits.reduceKeepingSide`).
    public let image: PixelImage
    /// The size the file declares; larger than the image's when it was decoded reduced.
    public let sourceWidth: Int
    public let sourceHeight: Int
    public let format: ImageFormat
    /// PNG text chunks (tEXt, zTXt, iTXt) by key; empty for JPEG.
    public let text: [String: String]
    /// Bits per sample in the file (8 or 16 for PNG, also 1, 2, 4 for gray or palette; 8 or 12 for JPEG).
    public let sourceBitDepth: Int
}

extension PixelImage {
    /// Reads a PNG or JPEG file in the layout it was stored in (8 bits per sample; palettes expanded to RGB
    /// or RGBA). Use `.rgb()` on the result for model input.
    public init(contentsOf path: String, limits: ImageLimits = .default) throws {
        self = try PixelImage.decodeFile(path, limits: limits).image
    }

    /// Reads a PNG or JPEG file with its format and text entries; the format comes from the magic bytes.
    public static func decodeFile(_ path: String, limits: ImageLimits = .default) throws -> DecodedImage {
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch let failure as MappedFile.Failure {
            switch failure {
            case .cannotOpen(_, let reason), .cannotMap(_, let reason): throw ImageError.cannotRead(path: path, reason: reason)
            case .notARegularFile(_, let kind): throw ImageError.cannotRead(path: path, reason: "it is \(kind), not a regular file")
            }
        }
        return try decode(file.bytes, source: path, limits: limits)
    }

    /// Decodes a PNG or JPEG held in memory; `source` names it in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, source: String = "image data",
                              limits: ImageLimits = .default) throws -> DecodedImage {
        switch ImageFormat.detect(bytes) {
        case .png: return try decodePNG(bytes, source: source, limits: limits)
        case .jpeg: return try decodeJPEG(bytes, source: source, limits: limits)
        case nil:
            if bytes.isEmpty { throw ImageError.cannotRead(path: source, reason: "the file is empty") }
            throw ImageError.notAnImage(path: source, detected: ImageFormat.otherFormatName(bytes))
        }
    }

    /// Decodes a PNG or JPEG held in an array; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String = "image data",
                              limits: ImageLimits = .default) throws -> DecodedImage {
        try bytes.withUnsafeBytes { try decode($0, source: source, limits: limits) }
    }

    /// The text entries of a PNG file (e.g. the generation parameters Paella writes); empty for JPEG.
    public static func readPNGText(_ path: String, limits: ImageLimits = .default) throws -> [String: String] {
        try decodeFile(path, limits: limits).text
    }
}

// MARK: Writing files

extension PixelImage {
    /// Writes the image as a PNG file with `text` entries (e.g. `["parameters": "prompt=...; steps=8"]`).
    /// The file appears complete or not at all: it is written to a temporary file, synced and renamed.
    public func write(to path: String, text: [String: String] = [:]) throws {
        let bytes = try encodePNG(text: text)
        try AtomicFile.write(bytes, to: path)
    }
}


extension PixelImage {
    /// The steps PNG and JPEG decoding share around a CImageCodecs reader: read the header, check the size limits
    /// before any pixel memory exists, then read 8-bit pixels. Codec statuses become `ImageError`s naming `source`.
    static func decodeRaster(source: String, format: ImageFormat, limits: ImageLimits, library: String,
                             message: () -> String,
                             readHeader: (inout ic_image_info) -> Int32,
                             reduce: (Int32, inout ic_image_info) -> Int32,
                             readPixels: (UnsafeMutablePointer<UInt8>?, Int) -> Int32) throws
        -> (image: PixelImage, info: ic_image_info, sourceWidth: Int, sourceHeight: Int) {
        func check(_ status: Int32) throws {
            guard status != Int32(IC_OK) else { return }
            switch status {
            case Int32(IC_ERR_TRUNCATED): throw ImageError.truncated(path: source, format: format)
            case Int32(IC_ERR_UNSUPPORTED): throw ImageError.unsupported(path: source, format: format, reason: message())
            case Int32(IC_ERR_NO_MEMORY): throw ImageError.cannotRead(path: source, reason: "out of memory")
            default: throw ImageError.corrupt(path: source, format: format, reason: "\(library): " + message())
            }
        }
        var info = ic_image_info()
        try check(readHeader(&info))
        let (width, height) = (Int(info.width), Int(info.height))
        guard limits.allows(width: width, height: height) else {
            throw ImageError.tooLarge(path: source, width: width, height: height, limits: limits)
        }
        guard let layout = PixelImage.Layout(rawValue: Int(info.channels)) else {
            throw ImageError.unsupported(path: source, format: format, reason: "\(info.channels) channels per pixel")
        }
        let factor = limits.reductionFactor(width: width, height: height)
        if factor > 1 { _ = reduce(Int32(factor), &info) }  // the reader may decline (interlaced PNG): info says
        let (outWidth, outHeight) = (Int(info.width), Int(info.height))
        guard outWidth * outHeight <= limits.maxDecodedPixels else {
            throw ImageError.tooLargeToDecode(path: source, width: width, height: height, decodedWidth: outWidth,
                                              decodedHeight: outHeight, maxPixels: limits.maxDecodedPixels)
        }
        var pixels = [UInt8](repeating: 0, count: outWidth * outHeight * layout.channels)
        try pixels.withUnsafeMutableBufferPointer { p in
            try check(readPixels(p.baseAddress, outWidth * layout.channels))
        }
        return (PixelImage(width: outWidth, height: outHeight, layout: layout, pixels: pixels), info, width, height)
    }
}
