import Foundation
import Paella
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// The presets against the key/shape manifests of the full OpenCLIP models (fixtures
/// `openclip_ViT-H-14_manifest.json`, `openclip_ViT-g-14_manifest.json`, written from OpenCLIP 3.3.0's
/// `create_model`): the config must equal the manifest's `config`, and the keys and shapes the towers ask for
/// must be exactly the manifest's (plus `logit_scale`, which only training uses). Zero-weight loading: the
/// weights stay in their [out, in] layout, so no page of the ~5 GB of stand-in zeros is ever touched.
@Suite struct CLIPManifestTests {
    @Test(arguments: [("openclip_ViT-H-14_manifest.json", CLIPConfig.vitH14),
                      ("openclip_ViT-g-14_manifest.json", CLIPConfig.vitG14)])
    func presetMatchesManifest(_ file: String, _ preset: CLIPConfig) throws {
        let json = try #require(try Fixtures.json(file) as? [String: Any])
        let configJSON = try JSONSerialization.data(withJSONObject: try #require(json["config"]))
        #expect(try JSONDecoder().decode(CLIPConfig.self, from: configJSON) == preset)

        let manifest = try #require(json["keys"] as? [String: [Int]])
        let loader = WeightLoader(synthetic: .shapesOnly)
        let model = try CLIPModel(weights: loader, config: preset, towers: .both)
        #expect(model.text != nil && model.vision != nil)
        var requested: [String: [Int]] = [:]
        for (name, shape) in loader.requested {
            #expect(requested[name] == nil, "\(name) requested twice")
            requested[name] = shape
        }
        requested["logit_scale"] = []
        #expect(Set(requested.keys).subtracting(manifest.keys).sorted() == [], "keys the model asks for beyond the manifest")
        #expect(Set(manifest.keys).subtracting(requested.keys).sorted() == [], "manifest keys the model does not load")
        for (name, shape) in manifest where requested[name] != nil {
            #expect(requested[name] == shape, "\(name): model \(requested[name]!) vs manifest \(shape)")
        }
        // Text-only loading asks for no vision weight and for every text weight.
        let textLoader = WeightLoader(synthetic: .shapesOnly)
        _ = try CLIPModel(weights: textLoader, config: preset, towers: .text)
        #expect(Set(textLoader.requested.map(\.name)) == Set(manifest.keys.filter { !$0.hasPrefix("visual.") && $0 != "logit_scale" }))
    }
}
