import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// The contrastive loss and every parameter's gradient (logit_scale included) of one CLIP batch against PyTorch
/// (bench/pytorch/clip_train_step.py, run into the folder `PAELLA_TRAIN_FIXTURES` names; skipped without it).
/// The configuration comes from the fixture's JSON. Tolerances: the loss within 1e-5 relative (float32 in
/// another order); each gradient within 1e-3 of its tensor's largest magnitude plus 1e-3 relative plus 1e-6 of
/// the largest gradient overall (float32 GEMMs, softmaxes and layer norms in another order through two
/// towers; a wrong backward pass is off by O(1) of the tensor's scale).
@Suite struct CLIPTrainerParityTests {
    static let folder = ProcessInfo.processInfo.environment["PAELLA_TRAIN_FIXTURES"]

    @Test(.enabled(if: folder != nil, "PAELLA_TRAIN_FIXTURES is not set"))
    func oneStepMatchesPyTorch() throws {
        let folder = try #require(Self.folder)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/clip_train_step.json"))) as? [String: Any])
        let config = try JSONDecoder().decode(CLIPConfig.self, from: JSONSerialization.data(withJSONObject: try #require(json["config"])))
        let loss = try #require(json["loss"] as? Double)
        let tensors = try SafeTensors(path: folder + "/clip_train_step.safetensors")
        let keys = try CLIPTrainer.parameterShapes(config)
        let parameters = TrainableParameters(try keys.map { (name: $0.name, tensor: try tensors.tensor("weight." + $0.name)) })
        let trainer = try CLIPTrainer(config: config, parameters: parameters, recipe: CLIPTrainingRecipe(totalSteps: 10),
                                      compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        let batch = try trainer.lossAndGradients(images: try tensors.tensor("input.images"), tokens: try tensors.tensor("input.tokens"))
        #expect(abs(batch.loss - loss) <= 1e-5 * abs(loss), "loss \(batch.loss), PyTorch \(loss)")
        let references = try batch.gradients.names.map { try tensors.tensor("grad." + $0).floats }
        let floor = 1e-6 * Double(references.map(maxAbs).max() ?? 0)
        var worst = 0.0
        for ((name, g), reference) in zip(zip(batch.gradients.names, batch.gradients.tensors), references) {
            #expect(g.count == reference.count, "\(name) size")
            let scale = Double(maxAbs(reference))
            for (a, b) in zip(g.floats, reference) {
                let error = abs(Double(a) - Double(b)), bound = 1e-3 * scale + 1e-3 * abs(Double(b)) + floor
                worst = max(worst, error / max(scale, floor))
                #expect(error <= bound, "\(name): \(a) vs PyTorch \(b)")
                if error > bound { break }
            }
        }
        print("CLIP parity: loss \(batch.loss) vs \(loss), worst gradient error / tensor scale \(worst)")
    }
}
