import PaellaTestSupport
import Testing
@testable import PaellaCore

@Suite struct ElementwiseTests {
    /// NumPy broadcasting written out per output element: align shapes at the right, and read index 0 along
    /// every axis where an operand has size 1 (or no axis at all).
    static func naive(_ a: Tensor, _ b: Tensor, _ op: (Float, Float) -> Float) -> (shape: [Int], values: [Float]) {
        let rank = max(a.rank, b.rank)
        let pa = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let pb = [Int](repeating: 1, count: rank - b.rank) + b.shape
        let shape = zip(pa, pb).map { max($0, $1) }
        let (av, bv) = (a.floats, b.floats)
        let n = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        for flat in 0..<n {
            var rest = flat, ia = 0, ib = 0, sa = 1, sb = 1
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                let i = rest % shape[axis]
                rest /= shape[axis]
                ia += (pa[axis] == 1 ? 0 : i) * sa
                ib += (pb[axis] == 1 ? 0 : i) * sb
                sa *= pa[axis]
                sb *= pb[axis]
            }
            out[flat] = op(av[ia], bv[ib])
        }
        return (shape, out)
    }

    static let shapePairs: [([Int], [Int])] = [
        ([2, 3, 4, 5], [2, 3, 4, 5]),  // same shape
        ([2, 3, 4, 5], [1]),           // scalar on the right
        ([], [3, 5]),                  // rank-0 scalar on the left
        ([2, 3, 4, 17], [17]),         // bias over the channels
        ([2, 3, 4, 5], [1, 1, 4, 5]),  // trailing block with leading 1s
        ([5], [3, 2, 5]),              // vector on the left
        ([2, 3, 4, 5], [2, 1, 1, 5]),  // per-sample, per-channel (a conditioning vector over H, W)
        ([2, 1, 3], [1, 4, 1]),        // both sides broadcast
        ([5, 1], [1, 4]),              // outer product shape
        ([3, 1, 1], [3, 4, 2]),        // broadcast along the last axes (inner stride 0)
        ([1, 1], [2, 3]),
    ]

    @Test(arguments: shapePairs) func binaryOpsMatchNaiveBroadcasting(_ aShape: [Int], _ bShape: [Int]) {
        let shapes = (aShape, bShape)
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: UInt64(shapes.0.reduce(7, *) + shapes.1.count))
        let a = rng.tensor(shapes.0), b = rng.tensor(shapes.1)
        for (name, got, op) in [("add", compute.add(a, b), { (x: Float, y: Float) in x + y }),
                                ("sub", compute.sub(a, b), { (x: Float, y: Float) in x - y }),
                                ("mul", compute.mul(a, b), { (x: Float, y: Float) in x * y })] {
            let ref = Self.naive(a, b, op)
            #expect(got.shape == ref.shape, "\(name)")
            #expect(got.floats == ref.values, "\(name)")  // one float operation per element: bit-exact
        }
        #expect(broadcastShape(shapes.0, shapes.1) == Self.naive(a, b, +).shape)
    }

    @Test func largeInputsTakeTheParallelPathsCorrectly() {
        // Above the 16384-element grain the loops are split over threads; results must not change.
        let compute = OpsReference.compute()
        var rng = TestRandom(seed: 1)
        let a = rng.tensor([3, 50, 41, 7]), v = rng.tensor([41, 7]), s = rng.tensor([3, 1, 1, 7])
        #expect(compute.add(a, v).floats == Self.naive(a, v, +).values)
        #expect(compute.mul(a, s).floats == Self.naive(a, s, *).values)
        #expect(compute.sub(v, a).floats == Self.naive(v, a, -).values)
    }

    @Test func scaleLerpAndAddInPlace() {
        let compute = OpsReference.compute()
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([3, 2, 1, 0], shape: [2, 2])
        #expect(compute.scale(a, by: -0.5).floats == [-0.5, -1, -1.5, -2])
        // lerp(a, b, t) = a + t (b - a): t = 0 gives a, t = 1 gives b, t = 3 extrapolates (guidance scale 3).
        #expect(compute.lerp(a, b, 0).floats == a.floats)
        #expect(compute.lerp(a, b, 1).floats == b.floats)
        #expect(compute.lerp(a, b, 3).floats == [7, 2, -3, -8])
        var x = a
        let shared = x
        compute.addInPlace(&x, Tensor([10, 20], shape: [2]))
        #expect(x.floats == [11, 22, 13, 24])
        #expect(shared.floats == [1, 2, 3, 4])  // the copy-on-write storage of the original is untouched
        var y = a
        compute.addInPlace(&y, b)
        #expect(y.floats == [4, 4, 4, 4])
    }
}
