import Foundation
import Testing
import Paella
import PaellaTestSupport
import PaellaCore
import PaellaIO
import PaellaModels

/// Parity with ruDALL-E's GumbelVQ (rudalle 1.1.3 over taming-transformers 0.0.1) on the tiny fixture
/// `vqgan_tiny*` (Tests/Fixtures/README.md). Every size comes from the fixture files, so any fixture set of the
/// same layout (PAELLA_FIXTURES) must pass too.
@Suite("VQGAN parity")
struct VQGANParityTests {
    let config: VQGANConfig
    let io: SafeTensors
    let compute: Compute

    init() throws {
        config = try VQGANConfig(tamingParams: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("vqgan_tiny.json"))))
        io = try SafeTensors(path: Fixtures.path("vqgan_tiny_io.safetensors"))
        compute = try Compute(threads: 2)
    }

    func model(_ file: String) throws -> VQGAN {
        try VQGAN(contentsOf: Fixtures.path(file), config: config, compute: compute)
    }

    /// The fixture's NCHW float tensor `name` as channels-last.
    func nhwc(_ name: String) throws -> Tensor { try io.tensor(name).toFloat32().permuted([0, 2, 3, 1]) }

    /// Fixture README: VQGAN outputs within 1e-4 * max |ref| (float64 upstream differs from the float32
    /// fixtures by less than 1e-6 relative, so this leaves room only for summation order).
    func expectClose(_ actual: Tensor, _ expected: Tensor, _ what: String) {
        #expect(actual.shape == expected.shape, "\(what): shape")
        guard actual.shape == expected.shape else { return }
        let ref = expected.floats
        let diff = maxAbsDifference(actual.floats, ref)
        #expect(diff <= 1e-4 * maxAbs(ref), "\(what): max |a-b| = \(diff), max |ref| = \(maxAbs(ref))")
        print("VQGAN parity \(what): max |a-b| / max |ref| = \(diff / max(maxAbs(ref), .leastNormalMagnitude))")
    }

    @Test("quantizer logits and indices match upstream encode")
    func encode() throws {
        let vq = try model("vqgan_tiny.safetensors")
        let image = try nhwc("image")  // [B, H, W, 3]
        expectClose(try vq.quantizerLogits(image), try nhwc("proj_logits"), "proj_logits")
        // Indices exactly (fixture README): upstream logits.argmax(dim=1).
        let tokens = try vq.encode(image)
        let expected = try io.tensor("indices")
        #expect(tokens.shape == expected.shape)
        #expect(tokens.integers() == expected.integers())
    }

    @Test("decoding the fixture's indices matches upstream decode")
    func decode() throws {
        let vq = try model("vqgan_tiny.safetensors")
        let decoded = try vq.decode(try io.tensor("indices"))
        expectClose(decoded, try nhwc("decoded"), "decoded")
        #expect(decoded.floats.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    @Test("the Lightning .ckpt (with loss.* entries) and the safetensors file load to the same model")
    func checkpointFormats() throws {
        let ckptKeys = try WeightLoader.open(path: Fixtures.path("vqgan_tiny.ckpt")).keys
        #expect(ckptKeys.contains { VQGAN.isTrainingOnlyKey($0) }, "the fixture .ckpt should carry loss.* keys")
        let a = try model("vqgan_tiny.safetensors"), b = try model("vqgan_tiny.ckpt")
        #expect(a.codebook.floats == b.codebook.floats)
        let image = try nhwc("image")
        #expect(try a.quantizerLogits(image).floats == b.quantizerLogits(image).floats)
        let tokens = try io.tensor("indices")
        #expect(try a.decode(tokens).floats == b.decode(tokens).floats)
    }
}
