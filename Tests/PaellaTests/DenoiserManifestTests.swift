import Foundation
import Testing
import PaellaTestSupport
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// The full-size v1 denoiser's parameter list against the released checkpoint's key/shape manifest, without
/// allocating its 2.3 GB: a shapes-only loader hands out read-only zeros whose layout conversions are free.
@Suite struct DenoiserManifestTests {
    @Test func v1LoadsExactlyTheReleasedKeysAndShapes() throws {
        let manifest = try #require(try Fixtures.json("denoiser_v1_full_manifest.json") as? [String: [Int]])
        let requested = try Denoiser.parameterShapes(.v1)
        var shapes: [String: [Int]] = [:]
        for (name, shape) in requested {
            #expect(shapes[name] == nil, "\(name) is loaded twice")
            shapes[name] = shape
        }
        #expect(Set(shapes.keys).subtracting(manifest.keys).sorted() == [], "keys the released file lacks")
        #expect(Set(manifest.keys).subtracting(shapes.keys).sorted() == [], "released keys the model does not load")
        for (name, shape) in manifest where shapes[name] != nil {
            #expect(shapes[name] == shape, "\(name): model \(shapes[name] ?? []) vs manifest \(shape)")
        }
    }

    @Test func loadingNamesMissingUnexpectedAndMisshapenKeys() throws {
        let config = try DenoiserParityTests.config()
        let file = try SafeTensors(path: Fixtures.path("denoiser_v1_tiny.safetensors"))
        var tensors = file.tensors.filter { $0.name != "down_blocks.0.0.ln.gamma" }
        tensors.append((name: "down_blocks.0.0.extra", tensor: Tensor(zeros: [1])))
        tensors = tensors.map { $0.name == "clf.bias" ? (name: $0.name, tensor: Tensor(zeros: [3])) : $0 }
        let loader = WeightLoader(tensors: tensors, origin: "edited.safetensors")
        let compute = Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM())
        let error = #expect(throws: WeightLoadingError.self) {
            _ = try Denoiser(config: config, weights: loader, compute: compute)
        }
        #expect(error?.missing == ["down_blocks.0.0.ln.gamma"])
        #expect(error?.unexpected == ["down_blocks.0.0.extra"])
        #expect(error?.mismatched.map(\.key) == ["clf.bias"])
    }
}
