import Foundation
import Testing
import Paella
import PaellaTestSupport
import PaellaCore
import PaellaIO
import PaellaModels

/// What a user hands the VQGAN: image sizes, PNG/JPEG pixels with alpha, token grids; and round trips of a
/// photograph-like image through the full-size architecture with random weights.
@Suite("VQGAN input")
struct VQGANInputTests {
    /// The tiny fixture model (sizes from the fixture JSON), for checks that do not depend on its numbers.
    func tinyModel() throws -> VQGAN {
        let config = try VQGANConfig(tamingParams: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vqgan_tiny.json"))))
        return try VQGAN(contentsOf: Fixtures.path("vqgan_tiny.safetensors"), config: config, compute: Compute(threads: 2))
    }

    /// A deterministic photograph-like picture: a sky-to-ground gradient, a soft sun, a few shapes with edges,
    /// and sensor-like noise.
    static func photoLike(width: Int, height: Int, layout: PixelImage.Layout = .rgb) -> PixelImage {
        var random = TestRandom(seed: 7)
        var image = PixelImage(width: width, height: height, layout: layout, repeating: 255)
        for y in 0..<height {
            for x in 0..<width {
                let u = Float(x) / Float(width), v = Float(y) / Float(height)
                var rgb: [Float] = v < 0.6 ? [0.35 + 0.3 * v, 0.55 + 0.3 * v, 0.95 - 0.2 * v] : [0.3 + 0.2 * u, 0.45, 0.2]
                let sun = (u - 0.7) * (u - 0.7) + (v - 0.2) * (v - 0.2)
                if sun < 0.01 { rgb = [1, 0.9, 0.6] }
                if abs(u - 0.3) < 0.1 && v > 0.4 && v < 0.8 { rgb = [0.5, 0.25 + 0.1 * sinf(40 * v), 0.2] }
                for c in 0..<3 {
                    let value = rgb[c] + random.float(-0.03, 0.03)
                    image.pixels[(y * width + x) * layout.channels + c] = UInt8(max(0, min(255, value * 255)))
                }
            }
        }
        return image
    }

    @Test("sides that are not multiples of 8 give a typed error unless resize or crop is asked for")
    func sizes() throws {
        let vq = try tinyModel()
        let f = vq.config.downsamplingFactor
        // Crop keeps the largest multiple of f; resize goes to the nearest multiple (ties up, at least f).
        func cropped(_ side: Int) -> Int { side / f }
        func resized(_ side: Int) -> Int { max(1, (side + f / 2) / f) }
        let odd = Tensor(repeating: 0.5, shape: [1, 3 * f + 1, 2 * f, 3])
        #expect(throws: VQGANError.imageSizeNotMultiple(width: 2 * f, height: 3 * f + 1, factor: f)) {
            try vq.encode(odd)
        }
        #expect(try vq.encode(odd, fit: .centerCrop).shape == [1, 3, 2])
        #expect(try vq.encode(odd, fit: .resize).shape == [1, resized(3 * f + 1), 2])
        let pixels = PixelImage(width: 2 * f + 5, height: f, repeating: 100)
        #expect(throws: VQGANError.self) { try vq.encode([pixels]) }
        #expect(try vq.encode([pixels], fit: .resize).shape == [1, 1, resized(2 * f + 5)])
        #expect(try vq.encode([pixels], fit: .centerCrop).shape == [1, 1, cropped(2 * f + 5)])
        #expect(throws: VQGANError.badImageShape([1, f, f, 4])) {
            try vq.encode(Tensor(zeros: [1, f, f, 4]))
        }
    }

    @Test("non-square images encode to non-square grids and decode back to their size")
    func nonSquare() throws {
        let vq = try tinyModel()
        let f = vq.config.downsamplingFactor
        var random = TestRandom(seed: 3)
        let images = random.tensor([2, 5 * f, 3 * f, 3], 0, 1)
        let tokens = try vq.encode(images)
        #expect(tokens.shape == [2, 5, 3])
        #expect(tokens.dtype == .int32)
        let decoded = try vq.decode(tokens)
        #expect(decoded.shape == [2, 5 * f, 3 * f, 3])
        // One image encodes the same alone as in a batch.
        #expect(try vq.encode(images.slice(1..<2)).integers() == Array(tokens.integers()[15...]))
    }

    @Test("alpha is dropped: RGBA pixels encode like their RGB part")
    func alpha() throws {
        let vq = try tinyModel()
        let f = vq.config.downsamplingFactor
        let rgba = Self.photoLike(width: 4 * f, height: 2 * f, layout: .rgba)
        var transparent = rgba
        for i in stride(from: 3, to: transparent.pixels.count, by: 4) { transparent.pixels[i] = 0 }
        let expected = try vq.encode([rgba.rgb()]).integers()
        #expect(try vq.encode([rgba]).integers() == expected)
        #expect(try vq.encode([transparent]).integers() == expected)
    }

    @Test("bad token grids give typed errors")
    func badTokens() throws {
        let vq = try tinyModel()
        let n = vq.config.nEmbed
        #expect(throws: VQGANError.tokenOutOfRange(token: n, codebookSize: n)) {
            try vq.decode(Tensor(int32: [0, Int32(n), 1, 2], shape: [1, 2, 2]))
        }
        #expect(throws: VQGANError.badTokenShape([4])) { try vq.decode(Tensor(int32: [0, 1, 2, 3], shape: [4])) }
        #expect(throws: VQGANError.badTokenShape([1, 2, 2])) { try vq.decode(Tensor(zeros: [1, 2, 2])) }
    }

    @Test("Gumbel encoding: argmax of logits + Gumbel noise from the caller's uniforms")
    func gumbel() throws {
        let vq = try tinyModel()
        let f = vq.config.downsamplingFactor
        var random = TestRandom(seed: 11)
        let images = random.tensor([1, 2 * f, 2 * f, 3], 0, 1)
        let logits = try vq.quantizerLogits(images)
        var draws = TestRandom(seed: 5)
        var asked: [Int] = []
        let tokens = try vq.encode(images) { shape in
            asked = shape
            return draws.tensor(shape, 0, 1)
        }
        #expect(asked == logits.shape)
        // Recompute with the same draws: argmax(logits - log(-log(u + 1e-20) + 1e-20)).
        var replay = TestRandom(seed: 5)
        let u = replay.floats(logits.count, 0, 1), l = logits.floats
        let n = vq.config.nEmbed
        let expected = (0..<(logits.count / n)).map { row in
            (0..<n).max { a, b in
                let ga = l[row * n + a] - logf(-logf(u[row * n + a] + 1e-20) + 1e-20)
                let gb = l[row * n + b] - logf(-logf(u[row * n + b] + 1e-20) + 1e-20)
                return ga < gb || (ga == gb && a > b)
            }!
        }
        #expect(tokens.integers() == expected)
    }

    /// The full `.rudalleF8` architecture with random weights (uniform in [-0.05, 0.05]).
    static func randomFullModel() throws -> VQGAN {
        try VQGAN(config: .rudalleF8, weights: WeightLoader(synthetic: .random(seed: 1, scale: 0.05)),
                  compute: Compute(threads: ThreadPool.coreCount))
    }

    /// Writes a photograph-like RGBA PNG, reads it back, encodes and decodes it; returns the decoded image.
    static func roundTrip(_ vq: VQGAN, width: Int, height: Int) throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("vqgan-roundtrip-\(width)x\(height)-\(getpid()).png").path
        try photoLike(width: width, height: height, layout: .rgba).write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tokens = try vq.encode([try PixelImage(contentsOf: path)])
        #expect(tokens.shape == [1, height / 8, width / 8])
        #expect(tokens.integers().allSatisfy { $0 >= 0 && $0 < vq.config.nEmbed })
        let decoded = try vq.decodeImages(tokens)
        #expect(decoded.count == 1 && decoded[0].width == width && decoded[0].height == height)
    }

    @Test("round trip of a photograph-like PNG at 256x256 through the full preset with random weights")
    func fullSizeRoundTrip256() throws {
        try Self.roundTrip(try Self.randomFullModel(), width: 256, height: 256)  // about 12 s in a debug build
    }

    /// About 35 s in a debug build on 2 cores, so it runs when PAELLA_SLOW_TESTS is set (`paella bench vqgan
    /// --size 512x384` does the same round trip in a release build).
    @Test("round trip of a photograph-like PNG at 512x384 (non-square) through the full preset with random weights",
          .enabled(if: ProcessInfo.processInfo.environment["PAELLA_SLOW_TESTS"] != nil, "slow: set PAELLA_SLOW_TESTS to run it"))
    func fullSizeRoundTrip512x384() throws {
        try Self.roundTrip(try Self.randomFullModel(), width: 512, height: 384)
    }
}
