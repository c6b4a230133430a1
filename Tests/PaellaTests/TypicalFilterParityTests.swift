import Foundation
import Testing
import PaellaTestSupport
import Paella

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
