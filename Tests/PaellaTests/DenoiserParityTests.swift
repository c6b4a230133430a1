import Foundation
import Testing
import PaellaTestSupport
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// The tiny DenoiseUNet of the fixtures, its weights from either file format, against the logits upstream's
/// modules.py computed (denoiser_v1_tiny_io.safetensors; every size comes from the fixture files).
@Suite struct DenoiserParityTests {
    static func config() throws -> DenoiserConfig {
        try JSONDecoder().decode(DenoiserConfig.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("denoiser_v1_tiny.json"))))
    }

    /// The case names of an io fixture ("case0", "case1", ...), from its `caseN.x` entries.
    static func cases(_ io: SafeTensors) -> [String] {
        io.names.filter { $0.hasSuffix(".x") }.map { String($0.dropLast(2)) }.sorted()
    }

    static let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())

    @Test(arguments: ["denoiser_v1_tiny.safetensors", "denoiser_v1_tiny.pt"])
    func logitsOfGlobalAndSpatialConditioningMatchUpstream(file: String) throws {
        let denoiser = try Denoiser(config: Self.config(), path: Fixtures.path(file), compute: Self.compute)
        let io = try SafeTensors(path: Fixtures.path("denoiser_v1_tiny_io.safetensors"))
        let cases = Self.cases(io)
        #expect(!cases.isEmpty)
        for name in cases {
            let x = try io.tensor("\(name).x"), r = try io.tensor("\(name).r").floats
            for (conditioning, expected) in [("c", "logits"), ("c_spatial", "logits_spatial")] {
                var c = try io.tensor("\(name).\(conditioning)")
                if c.rank == 4 { c = c.permuted([0, 2, 3, 1]) }                   // NCHW -> channels-last
                let logits = denoiser(x, conditioning: c, r: r)
                let reference = try io.tensor("\(name).\(expected)").permuted([0, 2, 3, 1])
                #expect(logits.shape == reference.shape)
                // Fixture README: max |a-b| <= 1e-3 * max |ref| (the r embedding's sin/cos of arguments up to 1e4
                // differ between math libraries by up to 1e-3; float64 upstream differs by 9e-5 * max |ref|).
                let difference = maxAbsDifference(logits.floats, reference.floats)
                let bound = 1e-3 * maxAbs(reference.floats)
                #expect(difference <= bound, "\(file) \(name) \(expected): max |a-b| = \(difference) > \(bound)")
            }
        }
    }

    /// bfloat16 weights (`Precision.bf16`) against the same upstream logits: within bfloat16's rounding, and the
    /// argmax token the same at (nearly) every position.
    @Test func bfloat16WeightsStayCloseToUpstream() throws {
        let denoiser = try Denoiser(config: Self.config(), path: Fixtures.path("denoiser_v1_tiny.safetensors"), compute: Self.compute,
                                    precision: .bf16)
        let io = try SafeTensors(path: Fixtures.path("denoiser_v1_tiny_io.safetensors"))
        for name in Self.cases(io) {
            let x = try io.tensor("\(name).x"), r = try io.tensor("\(name).r").floats
            let logits = denoiser(x, conditioning: try io.tensor("\(name).c"), r: r).floats
            let reference = try io.tensor("\(name).logits").permuted([0, 2, 3, 1]).floats
            let error = zip(logits, reference).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
                / reference.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            let labels = try Self.config().numLabels
            let positions = logits.count / labels
            let agreeing = (0..<positions).filter { p in
                let a = logits[p * labels..<(p + 1) * labels], b = reference[p * labels..<(p + 1) * labels]
                return a.indices.max { a[$0] < a[$1] } == b.indices.max { b[$0] < b[$1] }
            }.count
            #expect(error < 2e-2, "\(name): relative error of the logits \(error)")
            #expect(Double(agreeing) >= 0.95 * Double(positions), "\(name): argmax agrees at \(agreeing) of \(positions) positions")
        }
    }

    @Test func rEmbeddingMatchesUpstream() throws {
        let loader = WeightLoader(synthetic: .shapesOnly)
        let denoiser = try Denoiser(config: Self.config(), weights: loader, compute: Self.compute)
        let io = try SafeTensors(path: Fixtures.path("denoiser_v1_tiny_io.safetensors"))
        for name in Self.cases(io) {
            let embedding = denoiser.rEmbedding(try io.tensor("\(name).r").floats)
            let reference = try io.tensor("\(name).r_embedding")
            #expect(embedding.shape == reference.shape)
            // Fixture README: within 2e-3 absolute (sin/cos of arguments up to 1e4 in float32).
            #expect(maxAbsDifference(embedding.floats, reference.floats) <= 2e-3)
        }
    }
}
