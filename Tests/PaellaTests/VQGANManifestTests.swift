import Foundation
import Testing
import Paella
import PaellaTestSupport
import PaellaCore
import PaellaIO
import PaellaModels

/// The full `.rudalleF8` preset asks for exactly the parameters of the released f8/8192 GumbelVQ
/// (`vqgan_f8_8192_manifest.json`: key -> shape of ruDALL-E's `vqgan.gumbelf8-sber` state dict, `loss.*` excluded).
@Suite("VQGAN manifest")
struct VQGANManifestTests {
    @Test("the rudalleF8 preset requests every manifest key with its shape, and nothing else")
    func fullPresetMatchesManifest() throws {
        guard let manifest = try Fixtures.json("vqgan_f8_8192_manifest.json") as? [String: [Int]] else {
            Issue.record("vqgan_f8_8192_manifest.json is not a key -> shape object")
            return
        }
        // `.shapesOnly` hands out zero tensors whose pages the kernel maps lazily; building the model converts
        // them to channels-last once (about 69M parameters, 276 MB, written once and freed at the end).
        let loader = WeightLoader(synthetic: .shapesOnly)
        _ = try VQGAN(config: .rudalleF8, weights: loader, compute: Compute(threads: 1, backend: .builtin))
        var requested: [String: [Int]] = [:]
        for (name, shape) in loader.requested {
            #expect(requested[name] == nil, "\(name) requested twice")
            requested[name] = shape
        }
        #expect(Set(requested.keys).subtracting(manifest.keys).sorted() == [], "requested but not in the manifest")
        #expect(Set(manifest.keys).subtracting(requested.keys).sorted() == [], "in the manifest but never requested")
        for (name, shape) in manifest where requested[name] != nil {
            #expect(requested[name] == shape, "\(name): model \(requested[name] ?? []), manifest \(shape)")
        }
        let parameters = manifest.values.reduce(0) { $0 + $1.reduce(1, *) }
        #expect(parameters == 68_995_971)  // the sum of the manifest's shapes (the released checkpoint's size)
    }
}
