import Testing
@testable import PaellaIO
import PaellaTestSupport
import PaellaCore

@Suite("Image resize and crop")
struct ImageResizeTests {
    static let sizes: [(Int, Int, Int, Int)] = [(8, 8, 4, 4), (37, 23, 16, 50), (5, 9, 17, 3), (64, 48, 63, 47), (3, 1, 1, 7)]

    @Test("a constant image stays constant when shrinking, enlarging or both, for both filters",
          arguments: [ResampleFilter.bilinear, .bicubic])
    func constant(filter: ResampleFilter) {
        for (w, h, nw, nh) in Self.sizes {
            let image = PixelImage(width: w, height: h, layout: .rgb, repeating: 77)
            let out = image.resized(width: nw, height: nh, filter: filter)
            #expect(out.width == nw && out.height == nh && out.layout == .rgb)
            // Weights sum to 1 (to within 2^-22 per tap in fixed point), so 77 comes back exactly.
            #expect(out.pixels.allSatisfy { $0 == 77 }, "\(w)x\(h) -> \(nw)x\(nh)")
            let f = resizeImages(Tensor(repeating: 0.3, shape: [2, h, w, 3]), height: nh, width: nw, filter: filter)
            #expect(f.shape == [2, nh, nw, 3])
            #expect(f.withFloats { maxAbsDifference(Array($0), [Float](repeating: 0.3, count: f.count)) } < 1e-6)
        }
    }

    @Test("the identity size returns the image unchanged, and its weights are one-hot", arguments: [ResampleFilter.bilinear, .bicubic])
    func identity(filter: ResampleFilter) {
        let image = randomImage(width: 13, height: 7, layout: .rgb, seed: 11)
        #expect(image.resized(width: 13, height: 7, filter: filter) == image)
        // Without the shortcut: at scale 1 the kernel is sampled at integer offsets, where both kernels are 1 at 0
        // and 0 elsewhere. So a width-only resize leaves every row alone too.
        let w = ResampleWeights(inSize: 13, outSize: 13, filter: filter)
        for i in 0 ..< 13 {
            let taps = (0 ..< w.count[i]).map { (w.start[i] + $0, w.weights[i * w.taps + $0]) }
            #expect(taps.allSatisfy { $0.1 == ($0.0 == i ? 1 : 0) })
        }
        #expect(image.resized(width: 13, height: 3, filter: filter).width == 13)
    }

    @Test("halving a 1-pixel checkerboard with bilinear gives the 2x2 box average inside, PIL's values at the border")
    func checkerboard() {
        var board = PixelImage(width: 8, height: 8, layout: .gray)
        for y in 0 ..< 8 { for x in 0 ..< 8 { board[x, y, 0] = (x + y) % 2 == 0 ? 0 : 255 } }
        let out = board.resized(width: 4, height: 4, filter: .bilinear)
        // Shrinking by 2 stretches the triangle to support 2: an interior output reads 4 inputs with weights
        // 1/8, 3/8, 3/8, 1/8, which on an alternating 0/255 row is exactly (0 + 255) / 2 = 127.5, the 2x2 box
        // average; PIL's fixed point rounds it half up to 128 in each pass.
        for y in 1 ... 2 { for x in 1 ... 2 { #expect(out[x, y, 0] == 128) } }
        // At the border the taps outside the image are dropped and the rest renormalised: output 0 reads
        // inputs 0, 1, 2 with weights 3/7, 3/7, 1/7. Rows starting 0, 255, 0 give 109 (109.29), rows starting
        // 255, 0, 255 give 146 (145.71); the vertical pass then mixes 109, 146, 109 into 125 (125.36).
        #expect(out[0, 0, 0] == 125)

        let f = resizeImages(board.tensor(), height: 4, width: 4, filter: .bilinear)
        f.withFloats { v in
            for y in 1 ... 2 { for x in 1 ... 2 { #expect(abs(v[y * 4 + x] - 0.5) < 1e-6) } }
        }
    }

    @Test("hand-computed PIL cases: bilinear 4 -> 2 and bicubic 2 -> 4 on one row")
    func handComputed() {
        // Bilinear, scale 2, support 2. Output 0: centre 1, inputs 0...2, triangle weights 0.75, 0.75, 0.25
        // (sum 1.75): (10 * 3 + 20 * 3 + 40) / 7 = 18.57 -> 19. Output 1: centre 3, inputs 1...3, weights
        // 0.25, 0.75, 0.75: (20 + 40 * 3 + 80 * 3) / 7 = 54.29 -> 54.
        let row = PixelImage(width: 4, height: 1, layout: .gray, pixels: [10, 20, 40, 80])
        #expect(row.resized(width: 2, height: 1, filter: .bilinear).pixels == [19, 54])

        // Bicubic (a = -0.5), scale 1/2, support 2 (not stretched). Output 0: centre 0.25, inputs 0 and 1 at
        // distances 0.25 and 1.25: weights 0.8671875 and -0.0703125, normalised 1.0882 and -0.0882:
        // 100 * 1.0882 - 200 * 0.0882 = 91.18 -> 91. Output 1: centre 0.75, distances 0.25 and 0.75: weights
        // 0.8671875 and 0.2265625, normalised 0.7929 and 0.2071: 120.71 -> 121. Outputs 2, 3 mirror: 179, 209.
        let pair = PixelImage(width: 2, height: 1, layout: .gray, pixels: [100, 200])
        #expect(pair.resized(width: 4, height: 1, filter: .bicubic).pixels == [91, 121, 179, 209])
        // The negative lobe overshoots below 0 on [0, 200] (-17.6), and 8-bit output clamps it.
        let edge = PixelImage(width: 2, height: 1, layout: .gray, pixels: [0, 200])
        #expect(edge.resized(width: 4, height: 1, filter: .bicubic).pixels.first == 0)
        let overshoot = resizeImages(edge.tensor(), height: 1, width: 4, filter: .bicubic)
        #expect(overshoot.withFloats { $0[0] } < -0.05)  // the float path keeps it (-17.65 / 255)
    }

    @Test("8-bit and float paths agree on random non-square images within the 8-bit intermediate's rounding",
          arguments: [ResampleFilter.bilinear, .bicubic])
    func floatMatches8Bit(filter: ResampleFilter) {
        for (i, (w, h, nw, nh)) in Self.sizes.enumerated() {
            // Samples in 64...191: the cubic's negative lobes (absolute weight sum well under 1.5) cannot push
            // a pass outside 0...255, so the 8-bit path's clamp of its intermediate (which the float path does not
            // have, as in PIL) never acts and the two must agree up to rounding.
            var random = TestRandom(seed: UInt64(20 + i))
            let image = PixelImage(width: w, height: h, layout: .rgb,
                                   pixels: (0 ..< w * h * 3).map { _ in UInt8(random.int(64 ... 191)) })
            let eight = image.resized(width: nw, height: nh, filter: filter)
            let float = PixelImage(tensor: resizeImages(image.tensor(), height: nh, width: nw, filter: filter))
            // The 8-bit path rounds after the horizontal pass (error <= 0.5 level); the vertical weights carry
            // that into the result, which is rounded again: one level at most in practice.
            let diff = zip(eight.pixels, float.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
            #expect(diff <= 1, "\(w)x\(h) -> \(nw)x\(nh)")
        }
    }

    @Test("center crop places the window as torchvision's CenterCrop does, padding with zeros when larger")
    func centerCrop() {
        // Pixel (x, y) holds R = x, G = y, B = 200 so padding (all zero) is recognisable.
        var image = PixelImage(width: 7, height: 5, layout: .rgb)
        for y in 0 ..< 5 { for x in 0 ..< 7 { image[x, y, 0] = UInt8(x); image[x, y, 1] = UInt8(y); image[x, y, 2] = 200 } }
        // Offsets round((7 - 4) / 2) = round(1.5) = 2 and round((5 - 4) / 2) = round(0.5) = 0 (half to even).
        let c = image.centerCropped(width: 4, height: 4)
        #expect(c.width == 4 && c.height == 4)
        #expect((c[0, 0, 0], c[0, 0, 1]) == (2, 0))
        #expect((c[3, 3, 0], c[3, 3, 1]) == (5, 3))
        // Larger than the image: padded (9 - 7) // 2 = 1 before, and (7 - 5) // 2 = 1 on top.
        let p = image.centerCropped(width: 9, height: 7)
        #expect(p[0, 0, 2] == 0 && p[8, 6, 2] == 0)
        #expect((p[1, 1, 0], p[1, 1, 1], p[1, 1, 2]) == (0, 0, 200))
        // A rectangle partly outside the image is zero there (PIL's crop).
        let r = image.cropped(x: 5, y: -1, width: 4, height: 3)
        #expect(r[0, 0, 2] == 0 && (r[0, 1, 0], r[0, 1, 1], r[0, 1, 2]) == (5, 0, 200) && r[2, 1, 2] == 0)
    }

    @Test("shortest-side resize keeps the aspect ratio with torchvision's truncation; CLIP preprocessing crops square")
    func shortestSideAndCLIP() {
        let wide = PixelImage(width: 300, height: 200, layout: .rgb, repeating: 5)
        let r = wide.resizedShortestSide(to: 224)
        #expect((r.width, r.height) == (336, 224))  // int(224 * 300 / 200) = 336
        let tall = PixelImage(width: 200, height: 301, layout: .rgb, repeating: 5).resizedShortestSide(to: 224)
        #expect((tall.width, tall.height) == (224, 337))  // int(224 * 301 / 200) = int(337.12)
        let clip = wide.clipPreprocessed()
        #expect((clip.width, clip.height) == (224, 224))
        #expect(clip.pixels.allSatisfy { $0 == 5 })
        // Geometry of the whole chain equals resize then crop done by hand.
        let image = randomImage(width: 50, height: 40, layout: .rgb, seed: 9)
        let expected = image.resized(width: 20, height: 16, filter: .bicubic).cropped(x: 2, y: 0, width: 16, height: 16)
        #expect(image.clipPreprocessed(size: 16) == expected)
    }
}
