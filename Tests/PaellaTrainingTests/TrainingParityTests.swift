import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import PaellaTraining
import Testing

/// The recorded upstream training run `train_v1_tiny` (fixture README): every size and setting comes from the
/// fixture JSON and tensor shapes, so another fixture set of the same layout passes too.
struct TrainingFixture {
    let json: [String: Any]
    let file: SafeTensors
    let config: DenoiserConfig
    let recipe: DenoiserTrainingRecipe
    let steps: Int

    init() throws {
        json = try #require(try Fixtures.json("train_v1_tiny.json") as? [String: Any])
        file = try SafeTensors(path: Fixtures.path("train_v1_tiny.safetensors"))
        let model = try #require(json["model"])
        config = try JSONDecoder().decode(DenoiserConfig.self, from: JSONSerialization.data(withJSONObject: model))
        steps = try #require(json["steps"] as? Int)
        recipe = try Self.recipe(json)
    }

    /// The recipe the fixture describes: its `schedule`, `optimizer` and `loss` strings (PyTorch call syntax,
    /// arguments not named there at PyTorch's defaults) and `grad_clip_norm`.
    static func recipe(_ json: [String: Any]) throws -> DenoiserTrainingRecipe {
        let schedule = arguments(try #require(json["schedule"] as? String))
        let optimizer = arguments(try #require(json["optimizer"] as? String))
        let loss = arguments(try #require(json["loss"] as? String))
        func number(_ args: [String: String], _ key: String, _ fallback: Double? = nil) throws -> Double {
            guard let text = args[key] else { return try #require(fallback, "fixture: no \(key)") }
            let parts = text.split(separator: "/").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            let values = try parts.map { try #require($0, "fixture: \(key)=\(text) is not a number") }
            return values.dropFirst().reduce(values[0], /)
        }
        var r = DenoiserTrainingRecipe(schedule: OneCycleLR(
            maxLR: try number(schedule, "max_lr"), totalSteps: Int(try number(schedule, "total_steps")),
            pctStart: try number(schedule, "pct_start", 0.3), divFactor: try number(schedule, "div_factor", 25),
            finalDivFactor: try number(schedule, "final_div_factor", 1e4),
            annealStrategy: OneCycleLR.Anneal(rawValue: schedule["anneal_strategy"]?.trimmingCharacters(in: CharacterSet(charactersIn: "'\"")) ?? "cos") ?? .cos,
            cycleMomentum: (schedule["cycle_momentum"] ?? "True") == "True",
            baseMomentum: try number(schedule, "base_momentum", 0.85), maxMomentum: try number(schedule, "max_momentum", 0.95)))
        let betas = (optimizer["betas"] ?? "(0.9,0.999)").trimmingCharacters(in: CharacterSet(charactersIn: "()"))
            .split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        r.beta1 = betas.first ?? 0.9
        r.beta2 = betas.last ?? 0.999
        r.eps = try number(optimizer, "eps", 1e-8)
        r.weightDecay = try number(optimizer, "weight_decay", 0.01)
        r.labelSmoothing = try number(loss, "label_smoothing", 0)
        r.gradientClipNorm = try #require(json["grad_clip_norm"] as? Double)
        r.accumulationSteps = json["accum_grad"] as? Int ?? 1
        return r
    }

    /// `name=value` pairs of a call like `f(a=1, b=(2,3), c='x')` (commas inside parentheses kept).
    static func arguments(_ call: String) -> [String: String] {
        guard let open = call.firstIndex(of: "("), let close = call.lastIndex(of: ")") else { return [:] }
        var pairs: [String: String] = [:], depth = 0, current = ""
        func flush() {
            let parts = current.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { pairs[parts[0]] = parts[1].components(separatedBy: " ").first ?? parts[1] }
            current = ""
        }
        for ch in call[call.index(after: open)..<close] {
            if ch == "(" { depth += 1 } else if ch == ")" { depth -= 1 }
            if ch == "," && depth == 0 { flush() } else { current.append(ch) }
        }
        flush()
        return pairs
    }

    func tensor(_ name: String) throws -> Tensor { try file.tensor(name) }

    func doubles(_ key: String) throws -> [Double] { try #require(json[key] as? [Double], "fixture: no \(key)") }

    /// The parameters under `prefix` ("init." or "final."), in the model's loading order.
    func parameters(_ prefix: String) throws -> TrainableParameters {
        TrainableParameters(try Denoiser.parameterShapes(config).map { (name: $0.name, tensor: try tensor(prefix + $0.name)) })
    }

    func batch(_ step: Int) throws -> DenoiserTrainingBatch {
        DenoiserTrainingBatch(targets: try tensor("step\(step).target"), noised: try tensor("step\(step).noised"),
                              r: try tensor("step\(step).r").floats, conditioning: try tensor("step\(step).c"))
    }
}

@Suite struct TrainingParityTests {
    static func compute() -> Compute { Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()) }

    @Test func reproducesTheRecordedRun() throws {
        let f = try TrainingFixture()
        var trainer = try DenoiserTrainer(config: f.config, parameters: try f.parameters("init."), recipe: f.recipe, compute: Self.compute())
        let (losses, norms, lrs) = (try f.doubles("losses"), try f.doubles("grad_norms"), try f.doubles("lrs"))
        try #require(losses.count == f.steps && norms.count == f.steps && lrs.count == f.steps)

        // Step 0's gradient of every parameter: max |a - b| <= 1e-3 * the largest |gradient| over all parameters
        // (README: float32 summation order and cancellation in the scalar ln.gamma / ln.beta gradients).
        // (Recorded after upstream's `(loss / accum_grad).backward()`, so scaled like it.)
        let grads = try trainer.lossAndGradients(try f.batch(0), scale: 1 / Double(f.recipe.accumulationSteps)).gradients
        let reference = try grads.names.map { try f.tensor("grad0." + $0) }
        let largest = reference.map { maxAbs($0.floats) }.max() ?? 0
        var worst = (gradient: 0.0 as Float, loss: 0.0, norm: 0.0, lr: 0.0, weight: 0.0 as Float)
        for (i, name) in grads.names.enumerated() {
            worst.gradient = max(worst.gradient, maxAbsDifference(grads.tensors[i].floats, reference[i].floats) / largest)
            #expect(grads.tensors[i].shape == reference[i].shape, "\(name)")
            let d = maxAbsDifference(grads.tensors[i].floats, reference[i].floats)
            #expect(d <= 1e-3 * largest, "step-0 gradient of \(name): max |a-b| \(d) > 1e-3 * \(largest)")
        }

        for step in 0..<f.steps {
            let result = try trainer.train(try f.batch(step))
            worst.loss = max(worst.loss, abs(result.loss - losses[step]) / abs(losses[step]))
            worst.norm = max(worst.norm, abs(result.gradientNorm - norms[step]) / abs(norms[step]))
            worst.lr = max(worst.lr, abs(result.learningRate - lrs[step]))
            // README: losses within 1e-4 relative, gradient norms 1e-3 relative, learning rates 1e-9.
            #expect(abs(result.loss - losses[step]) <= 1e-4 * abs(losses[step]), "step \(step) loss \(result.loss) vs \(losses[step])")
            #expect(abs(result.gradientNorm - norms[step]) <= 1e-3 * abs(norms[step]), "step \(step) grad norm \(result.gradientNorm) vs \(norms[step])")
            #expect(abs(result.learningRate - lrs[step]) <= 1e-9, "step \(step) lr \(result.learningRate) vs \(lrs[step])")
        }

        // Final weights: max |a - b| <= 1e-3 * max |ref| per tensor (README).
        let final = try f.parameters("final.")
        for (i, name) in final.names.enumerated() {
            let got = try #require(trainer.parameters[name])
            let d = maxAbsDifference(got.floats, final.tensors[i].floats)
            worst.weight = max(worst.weight, d / maxAbs(final.tensors[i].floats))
            #expect(d <= 1e-3 * maxAbs(final.tensors[i].floats), "final \(name): max |a-b| \(d)")
        }
        print("train parity (\(f.steps) steps): worst relative step-0 gradient \(worst.gradient), loss \(worst.loss), grad norm \(worst.norm), lr abs \(worst.lr), final weight \(worst.weight)")
    }
}
