import Testing
@testable import PaellaIO
import PaellaTestSupport
import PaellaCore

@Suite("Image tensors, layouts and grids")
struct ImageTensorTests {
    @Test("every 8-bit value survives image -> tensor -> image exactly, as [1, H, W, C] in [0, 1]")
    func tensorRoundTrip() {
        let gray = PixelImage(width: 256, height: 1, layout: .gray, pixels: (0 ... 255).map { UInt8($0) })
        let t = gray.tensor()
        #expect(t.shape == [1, 1, 256, 1] && t.dtype == .float32)
        #expect(t.withFloats { $0[0] == 0 && $0[255] == 1 && $0[51] == 0.2 })
        #expect(PixelImage(tensor: t) == gray)
        let rgb = randomImage(width: 11, height: 6, layout: .rgb, seed: 2)
        #expect(rgb.tensor().shape == [1, 6, 11, 3])
        #expect(PixelImage(tensor: rgb.tensor()) == rgb)
        #expect(PixelImage(tensor: rgb.tensor().reshaped([6, 11, 3])) == rgb)  // [H, W, C] accepted too
    }

    @Test("tensor values are clamped to [0, 1] and rounded as save_image does (x * 255 + 0.5, truncated)")
    func clampAndRound() {
        let t = Tensor([-1, 1.5, .nan, 0.5, 0.998, 1 / 255 * 0.49], shape: [1, 1, 6, 1])
        // 0.5 * 255 + 0.5 = 128; 0.998 * 255 + 0.5 = 254.99 -> 254; 0.49 / 255 * 255 + 0.5 = 0.99 -> 0.
        #expect(PixelImage(tensor: t).pixels == [0, 255, 0, 128, 254, 0])
    }

    @Test("batches stack images of one size into [B, H, W, C] and split back; mismatched sizes throw")
    func batches() throws {
        let a = randomImage(width: 4, height: 3, layout: .rgb, seed: 1)
        let b = randomImage(width: 4, height: 3, layout: .rgb, seed: 2)
        let t = try PixelImage.batchTensor([a, b])
        #expect(t.shape == [2, 3, 4, 3])
        #expect(PixelImage.images(from: t) == [a, b])
        #expect(PixelImage(tensor: t, index: 1) == b)
        #expect(throws: ImageError.self) { try PixelImage.batchTensor([a, randomImage(width: 3, height: 4, layout: .rgb, seed: 3)]) }
        #expect(throws: ImageError.self) { try PixelImage.batchTensor([a, a.converted(to: .rgba)]) }
        #expect(throws: ImageError.self) { try PixelImage.batchTensor([]) }
    }

    @Test("layout conversion follows PIL's convert: gray replicated, alpha dropped, luma in 16-bit fixed point")
    func layouts() {
        let rgb = PixelImage(width: 4, height: 1, layout: .rgb, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
        // PIL: L = (19595 R + 38470 G + 7471 B + 32768) >> 16, so pure red, green, blue give 76, 150, 29.
        #expect(rgb.converted(to: .gray).pixels == [76, 150, 29, 255])
        #expect(rgb.converted(to: .rgba).pixels == [255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 255, 255])
        let rgba = PixelImage(width: 2, height: 1, layout: .rgba, pixels: [10, 20, 30, 0, 40, 50, 60, 128])
        #expect(rgba.rgb().pixels == [10, 20, 30, 40, 50, 60])  // alpha dropped, not composited
        let ga = PixelImage(width: 2, height: 1, layout: .grayAlpha, pixels: [7, 1, 9, 2])
        #expect(ga.rgb().pixels == [7, 7, 7, 9, 9, 9])
        #expect(ga.converted(to: .rgba).pixels == [7, 7, 7, 1, 9, 9, 9, 2])
        #expect(ga.converted(to: .gray).pixels == [7, 9])
    }

    @Test("a grid tiles images row by row with torchvision make_grid's padding layout")
    func grid() throws {
        let tiles = (0 ..< 3).map { PixelImage(width: 2, height: 2, layout: .rgb, repeating: UInt8(50 * ($0 + 1))) }
        // 3 images -> 2 columns (ceil(sqrt 3)), 2 rows; padding 1: 2 * (2 + 1) + 1 = 7 on each side.
        let g = try PixelImage.grid(tiles, padding: 1, background: 9)
        #expect((g.width, g.height) == (7, 7))
        #expect(g[1, 1, 0] == 50 && g[2, 2, 0] == 50)      // tile 0 at (1, 1)
        #expect(g[4, 1, 0] == 100 && g[5, 2, 0] == 100)    // tile 1 at (4, 1)
        #expect(g[1, 4, 0] == 150 && g[2, 5, 0] == 150)    // tile 2 at (1, 4)
        #expect(g[0, 0, 0] == 9 && g[3, 1, 0] == 9 && g[4, 4, 0] == 9 && g[6, 6, 0] == 9)  // padding, empty cell
        let row = try PixelImage.grid(tiles, columns: 3)
        #expect((row.width, row.height) == (6, 2) && row[4, 1, 2] == 150)
        #expect(throws: ImageError.self) { try PixelImage.grid([tiles[0], PixelImage(width: 3, height: 2)]) }
    }
}
