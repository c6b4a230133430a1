import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// The CLIP towers against `clip_tiny_io.safetensors` (OpenCLIP 3.3.0 `encode_text` / `encode_image` on the tiny
/// model of `clip_tiny.json`, float32). Tolerance (fixture README): max |a-b| <= 1e-4 * max |ref|; the same
/// upstream code in float64 differs from the fixture by less than 1e-6 of it.
@Suite struct CLIPParityTests {
    static func config() throws -> CLIPConfig {
        try JSONDecoder().decode(CLIPConfig.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("clip_tiny.json"))))
    }

    static func expectClose(_ got: Tensor, _ want: Tensor, _ what: String) {
        #expect(got.shape == want.shape, "\(what): shape \(got.shape) vs \(want.shape)")
        guard got.shape == want.shape else { return }
        let diff = maxAbsDifference(got.floats, want.floats), scale = maxAbs(want.floats)
        #expect(diff <= 1e-4 * scale, "\(what): max |diff| \(diff) > 1e-4 * \(scale)")
    }

    @Test(arguments: ["clip_tiny.safetensors", "clip_tiny.bin"])
    func textAndImageEmbeddings(_ file: String) throws {
        let io = try SafeTensors(path: Fixtures.path("clip_tiny_io.safetensors"))
        let model = try CLIPModel(path: Fixtures.path(file), config: try Self.config())
        let compute = try Compute(threads: 2)
        let text = try #require(model.text), vision = try #require(model.vision)
        Self.expectClose(text(try io.tensor("tokens"), compute: compute), try io.tensor("text_embeddings"), "\(file) text")
        let images = try io.tensor("images").toFloat32().permuted([0, 2, 3, 1])   // NCHW -> NHWC
        Self.expectClose(vision(images, compute: compute), try io.tensor("image_embeddings"), "\(file) image")
    }

    /// The fixture's token rows come from OpenCLIP's tokenizer on the texts in `clip_tiny.json`.
    @Test func tokenizerGivesTheFixtureTokens() throws {
        let json = try #require(try Fixtures.json("clip_tiny.json") as? [String: Any])
        let texts = try #require(json["texts"] as? [String])
        let tokens = try SafeTensors(path: Fixtures.path("clip_tiny_io.safetensors")).tensor("tokens")
        let tokenizer = try CLIPTokenizer(openCLIPVocabulary: CLIPTokenizer.locateVocabulary())
        #expect(tokenizer.contextTokens(texts, contextLength: tokens.shape[1]).integers() == tokens.integers())
    }

    /// The text-only model leaves the vision weights alone, yet still rejects other unexpected keys.
    @Test func textOnlyLoading() throws {
        let config = try Self.config()
        let file = try SafeTensors(path: Fixtures.path("clip_tiny.safetensors"))
        let loader = WeightLoader(tensors: file.tensors, origin: "clip_tiny")
        let model = try CLIPModel(weights: loader, config: config, towers: .text)
        #expect(model.text != nil && model.vision == nil)
        #expect(!loader.requested.contains { $0.name.hasPrefix("visual.") })

        let extra = WeightLoader(tensors: file.tensors + [("text_adapter.weight", Tensor(zeros: [2]))], origin: "extra")
        #expect(throws: WeightLoadingError.self) { try CLIPModel(weights: extra, config: config, towers: .text) }
        let noVision = WeightLoader(tensors: file.tensors.filter { !$0.name.hasPrefix("visual.") }, origin: "text only")
        #expect(throws: Never.self) { try CLIPModel(weights: noVision, config: config, towers: .text) }
        #expect(throws: WeightLoadingError.self) { try CLIPModel(weights: noVision, config: config, towers: .both) }
    }

    /// Trimming the positions after end-of-text does not change the pooled embedding.
    @Test func paddingPositionsDoNotMatter() throws {
        let io = try SafeTensors(path: Fixtures.path("clip_tiny_io.safetensors"))
        let model = try CLIPModel(path: Fixtures.path("clip_tiny.safetensors"), config: try Self.config(), towers: .text)
        let compute = try Compute(threads: 1)
        let tokens = try io.tensor("tokens")
        let text = try #require(model.text)
        let all = text(tokens, compute: compute)
        for row in 0 ..< tokens.shape[0] {
            let one = text(tokens.slice(row ..< row + 1), compute: compute)
            Self.expectClose(one, all.slice(row ..< row + 1), "row \(row) alone")
        }
    }

    @Test func imagePreprocessingNormalizes() throws {
        let image = PixelImage(width: 300, height: 200, layout: .rgb, repeating: 255)
        let t = try CLIPImagePreprocessing.tensor([image], size: 224)
        #expect(t.shape == [1, 224, 224, 3])
        let v = t.floats
        for c in 0 ..< 3 {
            #expect(abs(v[c] - (1 - CLIPImagePreprocessing.mean[c]) / CLIPImagePreprocessing.std[c]) < 1e-6)
        }
    }
}
