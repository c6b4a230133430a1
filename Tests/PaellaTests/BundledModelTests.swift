import Foundation
import Testing
import Paella
import PaellaCore
import PaellaIO

/// The model folder shipped in the repository (`models/paella-small`): it loads as every command loads it and
/// runs text-to-image and variations.
@Suite struct BundledModelTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models/paella-small").path

    @Test func loadsAndGenerates() async throws {
        let folder = try ModelFolder(path: Self.folder)
        #expect(folder.hasVisionTower)
        // The bundled-model issue's bound, "at most 25 MB", for the whole folder: weights (float16; 9.5 MB of them
        // the CLIP token embedding of all 49,408 BPE tokens), vocabulary and model.json.
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder)
        let bytes = try files.reduce(0) { total, file in
            total + ((try FileManager.default.attributesOfItem(atPath: Self.folder + "/" + file)[.size] as? Int) ?? 0)
        }
        #expect(files.count >= 5 && bytes <= 25_000_000, "the shipped model folder takes \(bytes) bytes")
        let pipeline = try Pipeline(folder: folder, compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()), loadVision: true)
        let side = pipeline.defaults.imageSize
        let result = try await pipeline.generate(GenerateRequest(prompt: "a large red circle at the top left on a white background",
                                                                 settings: CommonSettings(seed: 1, sampling: SamplingOverrides(steps: 2))))
        #expect(result.images.count == 1 && result.images[0].width == side && result.images[0].height == side)
        let varied = try await pipeline.vary(VaryRequest(image: result.images[0], settings: CommonSettings(seed: 2, sampling: SamplingOverrides(steps: 2))))
        #expect(varied.images.count == 1)
    }
}
