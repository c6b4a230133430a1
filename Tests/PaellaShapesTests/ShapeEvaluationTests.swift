import Foundation
import Testing
import Paella
@testable import PaellaShapes
import PaellaIO
import PaellaTestSupport

@Suite struct ShapeEvaluationTests {
    @Test func reportsEveryPartWithinRange() async throws {
        let pipeline = try TinyPipeline.get()
        let evaluation = ShapeEvaluation(prompts: 2, steps: [1, 2], seed: 3, batch: 1, reconstructionScenes: 12)
        let report = try await evaluation.run(pipeline)
        #expect(Set(report.generation.keys) == ["1", "2"] && report.prompts == 2)
        for scores in report.generation.values {
            #expect(Set(scores.keys) == Set(ShapeAttribute.allCases.map(\.rawValue)))
            #expect(scores.values.allSatisfy { (0...1).contains($0) })
        }
        #expect(report.reconstructionPSNR > 0 && (0...1).contains(report.codebookUsage))
        #expect(report.retrievalCandidates > 0 && (0...1).contains(report.retrievalImageToText))
        #expect(report.reconstructionScenes == 12 && report.reconstruction.values.allSatisfy { (0...1).contains($0) })
        #expect(Set(report.clipAttributes.keys) == ["color", "shape", "position"])
        #expect(report.clipAttributes.values.allSatisfy { (0...1).contains($0) })
        #expect(Set(report.clipTextSimilarity.keys) == ["color", "shape", "position"])
        #expect(report.clipTextSimilarity.values.allSatisfy { (-1.0001...1.0001).contains($0) })
        // The probe needs four one-object scenes among the held-out ones (the evaluation draws them from seed + 1).
        let heldOut = ShapeSampler(seed: 4, split: .heldout)
        #expect((0..<12).filter { heldOut.sample(index: $0).scene.objects.count == 1 }.count >= 4)
        #expect(Set(report.clipTextProbe.keys) == ["color", "shape", "position", "size"])
        #expect(report.clipTextProbe.values.allSatisfy { (0...1).contains($0) })
        #expect((-1.0001...1.0001).contains(report.clipRewordedSimilarity) && report.clipRewordedSimilarity != 0)
        // An untrained tiny model meets no gate, and every part has its verdict.
        #expect(report.gates == ["generation": false, "reconstruction": false, "clip": false])
        // Deterministic for a seed.
        let again = try await evaluation.run(pipeline)
        #expect(again.generation == report.generation && again.reconstructionPSNR == report.reconstructionPSNR)
    }

    /// Only the parts asked for run; the generation gate takes the fewest steps and the gap to the most.
    @Test func runsOnlyThePartsAskedFor() async throws {
        let pipeline = try TinyPipeline.get()
        let report = try await ShapeEvaluation(prompts: 2, steps: [1], seed: 3, batch: 1, reconstructionScenes: 8,
                                               parts: [.reconstruction]).run(pipeline)
        #expect(report.generation.isEmpty && report.retrievalCandidates == 0 && report.reconstructionScenes == 8)
        #expect(Array(report.gates.keys) == ["reconstruction"])
        let good = ["color": 0.95, "shape": 0.8, "position": 0.9, "count": 0.95, "background": 1.0]
        var worse = good
        worse["shape"] = 0.74
        #expect(ShapeEvaluation.generationPasses(["8": good, "24": good]))
        #expect(!ShapeEvaluation.generationPasses(["8": worse, "24": good]))
        worse["shape"] = 0.8
        worse["color"] = 0.90
        #expect(!ShapeEvaluation.generationPasses(["8": worse, "24": ["color": 0.99, "shape": 0.8, "position": 0.9, "count": 0.95, "background": 1]]))
    }

    /// `imagesFolder` receives the prompts, one grid per step count and the reconstructions.
    @Test func savesTheImagesBehindTheNumbers() async throws {
        let pipeline = try TinyPipeline.get()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shape-eval-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let evaluation = ShapeEvaluation(prompts: 2, steps: [1], seed: 3, batch: 2, reconstructionScenes: 8, imagesFolder: folder)
        _ = try await evaluation.run(pipeline)
        let prompts = try String(contentsOfFile: folder + "/prompts.txt", encoding: .utf8).split(separator: "\n")
        #expect(prompts.count == 2)
        let grid = try PixelImage(contentsOf: folder + "/generated-1.png")
        let side = pipeline.defaults.imageSize
        #expect(grid.width == 2 * side + 3 * 2 && grid.height == 2 * side + 3 * 2)
        #expect(FileManager.default.fileExists(atPath: folder + "/reconstruction.png"))
    }
}
