import PaellaTestSupport
import Testing
@testable import PaellaCore

@Suite struct ResizeTests {
    /// PyTorch's bilinear interpolation (align_corners=False), per output element in NCHW, written from
    /// aten/src/ATen/native/UpSample.h: scale = in / out; src = max(0, scale * (d + 0.5) - 0.5);
    /// i0 = floor(src); i1 = i0 + (i0 < in - 1 ? 1 : 0); lambda = src - i0.
    static func naiveBilinear(_ x: [Float], _ b: Int, _ c: Int, _ h: Int, _ w: Int, _ oh: Int, _ ow: Int) -> [Float] {
        func taps(_ d: Int, _ n: Int, _ o: Int) -> (Int, Int, Float) {
            let src = max(0, Float(n) / Float(o) * (Float(d) + 0.5) - 0.5)
            let i0 = Int(src)
            return (i0, i0 < n - 1 ? i0 + 1 : i0, src - Float(i0))
        }
        var out: [Float] = []
        for n in 0..<b { for ch in 0..<c { for oy in 0..<oh { for ox in 0..<ow {
            let (y0, y1, ly) = taps(oy, h, oh), (x0, x1, lx) = taps(ox, w, ow)
            func at(_ y: Int, _ xx: Int) -> Float { x[((n * c + ch) * h + y) * w + xx] }
            out.append((1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1)))
        }}}}
        return out
    }

    @Test func bilinearTwoByTwoToFourByFour() {
        // F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=4, mode="bilinear", align_corners=False).
        // scale = 2/4: outputs 0..3 read src = max(0, -0.25), 0.25, 0.75, 1.25 -> pixel pairs and lambdas
        // (0,1,0), (0,1,.25), (0,1,.75), (1,1,.25); a row [1, 2] becomes [1, 1.25, 1.75, 2], and likewise down.
        let x = Tensor([1, 2, 3, 4], shape: [1, 2, 2, 1])
        let y = OpsReference.compute().resizeBilinear(x, height: 4, width: 4)
        #expect(y.floats == [1.0, 1.25, 1.75, 2.0,
                             1.5, 1.75, 2.25, 2.5,
                             2.5, 2.75, 3.25, 3.5,
                             3.0, 3.25, 3.75, 4.0])
    }

    @Test func bilinearDownscaleReadsTheSourceCoordinate() {
        // A ramp x[i] = i interpolates to the source coordinate itself. 4 -> 3: scale 4/3, so
        // src = 0.5 * 4/3 - 0.5 = 1/6, 1.5 * 4/3 - 0.5 = 1.5, 2.5 * 4/3 - 0.5 = 17/6.
        let x = Tensor([0, 1, 2, 3], shape: [1, 1, 4, 1])
        let y = OpsReference.compute().resizeBilinear(x, height: 1, width: 3).floats
        #expect(maxAbsDifference(y, [1.0 / 6, 1.5, 17.0 / 6]) < 1e-6)
    }

    @Test(arguments: [(1, 3, 2, 3, 5, 4), (2, 5, 9, 7, 4, 3), (1, 17, 4, 4, 16, 16), (1, 1, 1, 1, 3, 2), (1, 2, 6, 5, 6, 5)])
    func bilinearMatchesReference(_ b: Int, _ c: Int, _ h: Int, _ w: Int, _ oh: Int, _ ow: Int) {
        var rng = TestRandom(seed: UInt64(c * 10 + oh))
        let x = rng.tensor([b, h, w, c])
        let y = OpsReference.compute().resizeBilinear(x, height: oh, width: ow)
        #expect(y.shape == [b, oh, ow, c])
        let ref = Self.naiveBilinear(OpsReference.toNCHW(x.floats, b, h, w, c), b, c, h, w, oh, ow)
        // The same float formula in the same order: equal up to a rounding or two.
        #expect(maxAbsDifference(OpsReference.toNCHW(y.floats, b, oh, ow, c), ref) < 1e-6)
    }

    @Test func nearestMatchesPyTorchIndices() {
        let compute = OpsReference.compute()
        // PyTorch "nearest": src = min(floor(d * in / out), in - 1). 3 -> 5: scale 0.6 gives 0, 0, 1, 1, 2.
        let row = Tensor([10, 11, 12], shape: [1, 1, 3, 1])
        #expect(compute.resizeNearest(row, height: 1, width: 5).floats == [10, 10, 11, 11, 12])
        // 5 -> 3: scale 5/3 gives floor(0), floor(1.67), floor(3.33) = 0, 1, 3.
        let five = Tensor([0, 1, 2, 3, 4], shape: [1, 5, 1, 1])
        #expect(compute.resizeNearest(five, height: 3, width: 1).floats == [0, 1, 3])
        // Random shapes against the formula, channels carried whole.
        var rng = TestRandom(seed: 8)
        for (h, w, oh, ow, c) in [(3, 4, 7, 5, 3), (8, 8, 3, 5, 17), (2, 3, 4, 6, 5), (5, 1, 5, 1, 1)] {
            let x = rng.tensor([2, h, w, c])
            let y = compute.resizeNearest(x, height: oh, width: ow)
            let xv = x.floats
            var expected: [Float] = []
            for n in 0..<2 { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
                let sy = min(Int((Float(oy) * (Float(h) / Float(oh))).rounded(.down)), h - 1)
                let sx = min(Int((Float(ox) * (Float(w) / Float(ow))).rounded(.down)), w - 1)
                expected.append(xv[((n * h + sy) * w + sx) * c + ch])
            }}}}
            #expect(y.floats == expected)
        }
    }

    @Test func upsampleNearest2xRepeatsEachPixelTwice() {
        var rng = TestRandom(seed: 12)
        let x = rng.tensor([2, 3, 5, 4])
        let y = OpsReference.compute().upsampleNearest2x(x)
        #expect(y.shape == [2, 6, 10, 4])
        let (xv, yv) = (x.floats, y.floats)
        var ok = true
        for n in 0..<2 { for oy in 0..<6 { for ox in 0..<10 { for c in 0..<4 {
            if yv[((n * 6 + oy) * 10 + ox) * 4 + c] != xv[((n * 3 + oy / 2) * 5 + ox / 2) * 4 + c] { ok = false }
        }}}}
        #expect(ok)
    }
}
