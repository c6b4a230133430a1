import Foundation
import Testing
import PaellaTestSupport
import Paella
import PaellaCore
import PaellaIO

/// Upstream's typical filtering (utils.sample) on recorded logits: every mask exactly, outside the rows the
/// fixture flags as fragile (a boundary within 1e-4 of the mass, closer than float32 can call).
@Suite struct TypicalFilterParityTests {
    @Test func masksMatchUpstreamExactly() throws {
        let fixture = try SafeTensors(path: Fixtures.path("typical_filter.safetensors"))
        let cases = fixture.names.filter { $0.hasSuffix(".logits") }.map { String($0.dropLast(7)) }.sorted()
        #expect(!cases.isEmpty)
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        for name in cases {
            let logits = try fixture.tensor("\(name).logits")
            let params = try fixture.tensor("\(name).params").floats        // [typical_mass, typical_min_tokens]
            let expected = try fixture.tensor("\(name).removed").integers()
            let fragile = try fixture.tensor("\(name).fragile_rows").integers()
            let removed = compute.typicalFilterMask(logits, mass: params[0], minTokens: Int(params[1])).integers()
            let n = logits.shape[1]
            for row in 0..<logits.shape[0] where fragile[row] == 0 {
                let mismatches = (row * n..<(row + 1) * n).filter { removed[$0] != expected[$0] }.count
                #expect(mismatches == 0, "\(name) row \(row): \(mismatches) of \(n) entries differ")
            }
            // The -inf version removes exactly the masked entries.
            let filtered = compute.typicalFilter(logits, mass: params[0], minTokens: Int(params[1])).floats
            #expect(filtered.indices.allSatisfy { (filtered[$0] == -.infinity) == (removed[$0] == 1) })
        }
    }
}

/// The bucketed selection of `typicalFilterMask` against the plain definition (upstream's full sort, cumulative
/// sum in double) on rows with many tied logits, where the order among equal scores decides.
@Suite struct TypicalFilterTests {
    /// Upstream's steps literally: sort by score (stable), cumulative softmax, threshold, min tokens.
    static func reference(_ row: [Float], mass: Float, minTokens: Int) -> [UInt8] {
        let m = row.max()!
        let logSum = Float(log(Double(row.reduce(Float(0)) { $0 + expf($1 - m) })))
        let logp = row.map { ($0 - m) - logSum }
        let entropy = -zip(logp, logp.map { expf($0) }).reduce(Float(0)) { $1.0 * $1.1 == $1.0 * $1.1 ? $0 + $1.0 * $1.1 : $0 }  // nansum
        let score = logp.map { abs(-$0 - entropy) }
        let order = row.indices.sorted { (score[$0], $0) < (score[$1], $1) }
        let total = row.reduce(Float(0)) { $0 + expf($1 - m) }
        var running = 0.0, last = 0
        for j in order {
            running += Double(expf(row[j] - m) / total)
            if Float(running) < mass { last += 1 }
        }
        let threshold = score[order[min(last, row.count - 1)]]
        var removed = [UInt8](repeating: 0, count: row.count)
        for (k, j) in order.enumerated() where score[j] > threshold && !(minTokens > 1 && k < minTokens) { removed[j] = 1 }
        return removed
    }

    @Test func quickselectAgreesWithTheFullSort() {
        var random = TestRandom(seed: 21)
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        for (n, mass, minTokens) in [(7, Float(0.3), 1), (100, 0.2, 1), (1000, 0.5, 3), (4096, 0.9, 40), (300, 0.05, 200)] {
            // Logits on a coarse grid: many exact ties in value and in score.
            let values = (0..<(4 * n)).map { _ in Float(random.int(0...12)) * 0.5 }
            let removed = compute.typicalFilterMask(Tensor(values, shape: [4, n]), mass: mass, minTokens: minTokens).integers()
            var mismatches = 0
            for r in 0..<4 {
                let expected = Self.reference(Array(values[r * n..<(r + 1) * n]), mass: mass, minTokens: minTokens)
                mismatches += (0..<n).filter { Int(expected[$0]) != removed[r * n + $0] }.count
            }
            #expect(mismatches == 0, "n \(n), mass \(mass), min tokens \(minTokens)")
        }
    }

    /// Masses at and past the ends (0: only the best-scoring entries stay; above 1: never reached, nothing is
    /// removed), masked (-inf) logits, and rows of v1's width whose scores spread over many buckets.
    @Test func edgeMassesMaskedLogitsAndWideRowsAgreeWithTheFullSort() {
        var random = TestRandom(seed: 22)
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        // (A mass of exactly 1 is left out: whether the last entries reach it depends on how each side rounds the
        // softmax, not on the selection.)
        for (n, mass) in [(50, Float(0)), (50, 1.5), (8192, 0.2), (8192, 0.9), (513, 0.05)] {
            var values = (0..<(3 * n)).map { _ in Float(random.int(-4000...4000)) / 500 }
            for k in stride(from: 0, to: values.count, by: 7) { values[k] = -.infinity }
            let filtered = compute.typicalFilter(Tensor(values, shape: [3, n]), mass: mass, minTokens: 1).floats
            var mismatches = 0
            for r in 0..<3 {
                let row = Array(values[r * n..<(r + 1) * n])
                let expected = Self.reference(row, mass: mass, minTokens: 1)
                mismatches += (0..<n).filter { (expected[$0] == 1 ? -Float.infinity : row[$0]) != filtered[r * n + $0] }.count
            }
            #expect(mismatches == 0, "n \(n), mass \(mass)")
            if mass > 1 { #expect(filtered.filter { $0 == -.infinity }.count == values.filter { $0 == -.infinity }.count) }
        }
    }
}
