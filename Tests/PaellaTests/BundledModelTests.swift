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
        let sizes = try folder.storedComponents().reduce(0) { $0 + $1.bytes }
        // The bundled-model issue's bound, "at most 25 MB", read as 25 MiB: the weights take 25.55 million bytes
        // (float16; 12.6 of them the CLIP token embedding of all 49,408 BPE tokens).
        #expect(sizes <= 25 * 1024 * 1024, "the shipped weights take \(sizes) bytes")
        let pipeline = try Pipeline(folder: folder, compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()), loadVision: true)
        let side = pipeline.defaults.imageSize
        let result = try await pipeline.generate(GenerateRequest(prompt: "a large red circle at the top left on a white background",
                                                                 settings: CommonSettings(seed: 1, sampling: SamplingOverrides(steps: 2))))
        #expect(result.images.count == 1 && result.images[0].width == side && result.images[0].height == side)
        let varied = try await pipeline.vary(VaryRequest(image: result.images[0], settings: CommonSettings(seed: 2, sampling: SamplingOverrides(steps: 2))))
        #expect(varied.images.count == 1)
    }
}
