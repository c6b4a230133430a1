import Foundation
import Testing
import Paella
import PaellaTestSupport

@Suite struct ShapeEvaluationTests {
    @Test func reportsEveryPartWithinRange() async throws {
        let pipeline = try TinyPipeline.get()
        let evaluation = ShapeEvaluation(prompts: 2, steps: [1, 2], seed: 3, batch: 1)
        let report = try await evaluation.run(pipeline)
        #expect(Set(report.generation.keys) == ["1", "2"] && report.prompts == 2)
        for scores in report.generation.values {
            #expect(Set(scores.keys) == Set(ShapeAttribute.allCases.map(\.rawValue)))
            #expect(scores.values.allSatisfy { (0...1).contains($0) })
        }
        #expect(report.reconstructionPSNR > 0 && (0...1).contains(report.codebookUsage))
        #expect(report.retrievalCandidates > 0 && (0...1).contains(report.retrievalImageToText))
        // Deterministic for a seed.
        let again = try await evaluation.run(pipeline)
        #expect(again.generation == report.generation && again.reconstructionPSNR == report.reconstructionPSNR)
    }
}
