import Testing
@testable import PaellaCore

@Suite struct TensorTests {
    @Test func bfloat16RoundTrip() {
        // 1 + 2^-8 lies exactly between two bfloat16 values; round-to-nearest-even goes down to 1.
        #expect(bfloat16ToFloat(floatToBFloat16(1 + 1 / 256)) == 1)
        #expect(bfloat16ToFloat(floatToBFloat16(-2.5)) == -2.5)
        #expect(bfloat16ToFloat(floatToBFloat16(.nan)).isNaN)
    }

    @Test func copyOnWrite() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2])
        var b = a
        b.withMutableFloats { $0[0] = 9 }
        #expect(a.floats == [1, 2, 3, 4])
        #expect(b.floats == [9, 2, 3, 4])
    }

    @Test func reshapeAndSlice() {
        let t = Tensor((0..<12).map(Float.init), shape: [3, 4])
        #expect(t.reshaped([2, -1]).shape == [2, 6])
        #expect(t.slice(1..<3).floats == (4..<12).map(Float.init))
    }

    @Test func threadPoolCoversEveryIndexOnce() {
        let pool = ThreadPool(threads: 4)
        var hits = [Int](repeating: 0, count: 1000)
        hits.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            pool.parallelFor(1000) { p[$0] += 1 }
        }
        #expect(hits.allSatisfy { $0 == 1 })
    }
}
