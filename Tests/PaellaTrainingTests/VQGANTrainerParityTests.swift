import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// The loss and every parameter's gradient of one VQGAN training batch against PyTorch
/// (bench/pytorch/vqgan_train_step.py, run into the folder `PAELLA_TRAIN_FIXTURES` names; skipped without it).
/// Sizes and settings come from the fixture's JSON and tensor shapes. Tolerances: the loss within 1e-5
/// relative (float32 sums of a few thousand terms in another order); each gradient within 1e-3 of its tensor's
/// largest magnitude plus 1e-3 relative plus 1e-6 of the largest gradient overall (float32 GEMMs and reductions
/// in another order through ~20 layers; an error in the backward pass shows up as O(1) of the tensor's scale).
@Suite struct VQGANTrainerParityTests {
    static let folder = ProcessInfo.processInfo.environment["PAELLA_TRAIN_FIXTURES"]

    @Test(.enabled(if: folder != nil, "PAELLA_TRAIN_FIXTURES is not set"), arguments: VQGANTrainingRecipe.Quantizer.allCases)
    func oneStepMatchesPyTorch(_ quantizer: VQGANTrainingRecipe.Quantizer) throws {
        let folder = try #require(Self.folder)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/vqgan_train_step.json"))) as? [String: Any])
        let config = try JSONDecoder().decode(VQGANConfig.self, from: JSONSerialization.data(withJSONObject: try #require(json["config"])))
        let r = try #require(json["recipe"] as? [String: Double])
        let expected = try #require((json["results"] as? [String: [String: Double]])?[quantizer.rawValue])
        let tensors = try SafeTensors(path: folder + "/vqgan_train_step.safetensors")
        let keys = try VQGAN.parameterShapes(config)
        let parameters = TrainableParameters(try keys.map { (name: $0.name, tensor: try tensors.tensor("weight." + $0.name)) })
        var recipe = VQGANTrainingRecipe(totalSteps: 10, quantizer: quantizer)
        recipe.l1Weight = try #require(r["l1_weight"])
        recipe.l2Weight = try #require(r["l2_weight"])
        recipe.commitment = try #require(r["commitment"])
        recipe.klWeight = try #require(r["kl_weight"])
        recipe.temperatureStart = try #require(r["temperature"])
        recipe.temperatureEnd = recipe.temperatureStart
        var trainer = try VQGANTrainer(config: config, parameters: parameters, recipe: recipe,
                                       compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        if quantizer == .nearest {  // the trainer writes proj from the codebook; PyTorch's nearest path never reads it
            let i = try #require(trainer.parameters.names.firstIndex(of: "quantize.proj.weight"))
            trainer.parameters.tensors[i] = try tensors.tensor("weight.quantize.proj.weight")
        }
        let batch = try trainer.lossAndGradients(images: try tensors.tensor("input.images"),
                                                 uniforms: try tensors.tensor("input.uniforms"))
        let loss = try #require(expected["loss"])
        #expect(abs(batch.loss - loss) <= 1e-5 * abs(loss), "loss \(batch.loss), PyTorch \(loss)")
        #expect(abs(batch.quantizerLoss - (expected["quantizer_loss"] ?? 0)) <= 1e-5 * abs(loss))
        // Biases right before a group norm of one channel per group have an exact gradient of zero, which both
        // sides compute as rounding noise: 1e-6 of the largest gradient anywhere bounds that noise.
        let references = try batch.gradients.names.map { try tensors.tensor("grad.\(quantizer.rawValue).\($0)").floats }
        let floor = 1e-6 * Double(references.map(maxAbs).max() ?? 0)
        var worst = 0.0
        for ((name, g), reference) in zip(zip(batch.gradients.names, batch.gradients.tensors), references) {
            let scale = Double(maxAbs(reference))
            for (a, b) in zip(g.floats, reference) {
                let error = abs(Double(a) - Double(b)), bound = 1e-3 * scale + 1e-3 * abs(Double(b)) + floor
                worst = max(worst, error / max(scale, floor))
                #expect(error <= bound, "\(name): \(a) vs PyTorch \(b)")
                if error > bound { break }
            }
        }
        print("VQGAN \(quantizer) parity: loss \(batch.loss) vs \(loss), worst gradient error / tensor scale \(worst)")
    }
}
