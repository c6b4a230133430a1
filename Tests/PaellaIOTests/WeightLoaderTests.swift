import Testing
import PaellaTestSupport
@testable import PaellaIO
import PaellaCore

@Suite struct WeightLoaderTests {
    @Test func reportsEveryMissingUnexpectedAndMisshapenKeyAtOnce() {
        let loader = WeightLoader(tensors: [
            ("block.linear.weight", Tensor(zeros: [4, 3])),
            ("block.linear.bias", Tensor(zeros: [5])),      // wrong shape: the model expects [4]
            ("block.extra", Tensor(zeros: [1])),            // unexpected
            ("loss.discriminator", Tensor(zeros: [2])),     // skipped by rule
        ], origin: "test.safetensors")
        let block = loader.scope("block")
        _ = block.tensor("linear.weight", shape: [4, 3])
        let bias = block.float32("linear.bias", shape: [4])
        _ = block.tensor("norm.weight", shape: [4])        // missing
        #expect(bias.shape == [4])  // the stand-in has the expected shape so loading can go on

        let error = #expect(throws: WeightLoadingError.self) { try loader.finish(skipping: { $0.hasPrefix("loss.") }) }
        #expect(error?.missing == ["block.norm.weight"])
        #expect(error?.unexpected == ["block.extra"])
        #expect(error?.mismatched == [.init(key: "block.linear.bias", expected: [4], found: [5])])
        let text = error?.description ?? ""
        #expect(text.contains("block.norm.weight") && text.contains("block.extra") && text.contains("test.safetensors"))
    }

    @Test func aCompleteLoadFinishesQuietly() throws {
        let loader = WeightLoader(tensors: [("w", Tensor([1, 2], shape: [2]))], origin: "memory")
        #expect(loader.float32("w", shape: [2]).floats == [1, 2])
        try loader.finish()
    }

    @Test func syntheticSourcesRecordRequests() throws {
        let shapes = WeightLoader(synthetic: .shapesOnly)
        _ = shapes.scope("a").tensor("b", shape: [2, 3])
        #expect(shapes.requested.map(\.name) == ["a.b"])
        #expect(shapes.requested.map(\.shape) == [[2, 3]])
        try shapes.finish()

        let random = WeightLoader(synthetic: .random(seed: 1, scale: 0.5))
        let values = random.tensor("x", shape: [1000]).floats
        #expect(values.allSatisfy { abs($0) <= 0.5 })
        #expect(Set(values).count > 900)  // not constant
    }

    @Test func opensBothCheckpointFormatsToTheSameKeys() throws {
        let safetensors = try WeightLoader.open(path: Fixtures.path("denoiser_v1_tiny.safetensors"))
        let pytorch = try WeightLoader.open(path: Fixtures.path("denoiser_v1_tiny.pt"))
        #expect(!safetensors.keys.isEmpty)
        #expect(safetensors.keys.sorted() == pytorch.keys.sorted())
    }
}
