// Port of `sample` from dome272/Paella utils.py and `gamma`/`add_noise` from modules.py (commit 3671515).
// Changed on purpose: guidance runs the conditional and unconditional passes as one batched forward; randomness
// comes from a RandomSource; a progress callback can stop the loop; task cancellation is checked between steps.
import Foundation
import PaellaCore
import PaellaModels

/// Which tokens renoising draws from: the loop's starting grid, the step's input, or fresh random tokens.
public enum RenoiseMode: String, Codable, Sendable {
    case start, prev, rand
}

/// What the progress callback sees after each step.
public struct SamplingProgress: Sendable {
    /// The schedule step just finished (from `startingStep` to `steps - 1`).
    public let step: Int
    /// The tokens after it `[B, H, W]` (int32).
    public let tokens: Tensor
}

/// Paella's sampling loop over a denoiser.
public struct Sampler: Sendable {
    public let denoiser: Denoiser
    public init(denoiser: Denoiser) { self.denoiser = denoiser }

    /// Tokens `[B, H, W]` (int32) for the conditioning `c` (`[B, c_clip]`, or a spatial `[B, H', W', c_clip]`).
    /// Without `tokens` the loop starts from a random grid of `height` x `width` (`size`); `tokens` is a
    /// starting grid (structural editing, with `startingStep`, upstream's `starting_t`); `mask` (like `tokens`,
    /// 1 = may change) restricts the change to part of it (inpainting, outpainting). `progress` runs after
    /// every step and stops the loop by returning false; a cancelled task stops it before the next step
    /// (`CancellationError`).
    public func sample(conditioning c: Tensor, unconditional: Tensor? = nil, tokens: Tensor? = nil, mask: Tensor? = nil,
                       settings: SamplingSettings = SamplingSettings(), height: Int = 32, width: Int = 32, startingStep: Int = 0,
                       random: inout some RandomSource, progress: (SamplingProgress) -> Bool = { _ in true }) throws -> Tensor {
        let batch = c.shape[0], labels = denoiser.config.numLabels
        let noiseLevels = settings.noiseLevels, temperatures = settings.temperatures
        precondition(settings.steps >= 1 && (0..<settings.steps).contains(startingStep) && settings.temperatureRange.count == 2,
                     "sample: need steps >= 1, a starting step below it and two temperatures, got \(settings), start \(startingStep)")
        let gridCount = tokens?.count ?? batch * height * width
        precondition((tokens.map { $0.rank == 3 && $0.shape[0] == batch } ?? true) && (mask.map { $0.count == gridCount } ?? true),
                     "sample: tokens \(tokens?.shape ?? []) and mask \(mask?.shape ?? []) must be [B, H, W] for \(batch) conditionings")
        var x: Tensor
        if let tokens {
            x = int32(tokens)
            if let mask {  // masked positions start from random tokens
                let noise = random.randint(labels, x.shape)
                x = select(noise, where: int32(mask), else: x)
            }
        } else {
            x = random.randint(labels, [batch, height, width])
        }
        let initial = x, mask = mask.map(int32)
        for i in startingStep..<settings.steps {
            if Task.isCancelled { throw CancellationError() }
            let logits = guidedLogits(x, conditioning: c, unconditional: unconditional, r: noiseLevels[i],
                                      scale: settings.guidanceScale).logits
            // Damaged weights (NaN, or bfloat16 bits read as float16) show at once; sampling from NaN logits would
            // draw arbitrary tokens and decode to a flat image. One pass over the first step's logits finds them.
            if i == startingStep && logits.nonFiniteCount > 0 { throw PipelineError.nonFiniteModelOutput(part: "denoiser") }
            x = update(logits: logits, tokens: x, initial: initial, mask: mask, step: i, temperature: temperatures[i],
                       settings: settings, random: &random).tokens
            if !progress(SamplingProgress(step: i, tokens: x)) { break }
        }
        return x
    }

    /// The model's logits `[B, H, W, V]` at noise level `r`; with `scale >= 0`, classifier-free guidance
    /// `lerp(uncond, cond, scale)`, both passes in one batch of 2B (the unconditional one with zero conditioning,
    /// or `unconditional` when given).
    public func guidedLogits(_ x: Tensor, conditioning c: Tensor, unconditional u: Tensor? = nil, r: Float,
                             scale: Float) -> (logits: Tensor, conditional: Tensor, unconditional: Tensor?) {
        let batch = x.shape[0], compute = denoiser.compute
        precondition(u.map { $0.shape == c.shape } ?? true, "guidedLogits: unconditional \(u?.shape ?? []) differs from conditioning \(c.shape)")
        if scale < 0 {
            let logits = denoiser(x, conditioning: c, r: [Float](repeating: r, count: batch))
            return (logits, logits, nil)
        }
        let both = denoiser(compute.concat([x, x], axis: 0),                      // [2B, H, W]
                            conditioning: compute.concat([c.toFloat32(), u?.toFloat32() ?? Tensor(zeros: c.shape)], axis: 0),
                            r: [Float](repeating: r, count: 2 * batch))           // [2B, H, W, V]
        let conditional = both.slice(0..<batch), unconditional = both.slice(batch..<2 * batch)
        return (compute.lerp(unconditional, conditional, scale), conditional, unconditional)
    }

    /// One step after the model: typical filtering, Gumbel-max draw at `temperature`, the mask (masked-out
    /// positions keep the starting tokens), then renoising towards the next noise level while
    /// `step < renoiseSteps`. `tokens` is the step's input (what mode `prev` renoises with).
    public func update(logits: Tensor, tokens: Tensor, initial: Tensor, mask: Tensor?, step i: Int, temperature: Float,
                       settings: SamplingSettings, random: inout some RandomSource) -> (sampled: Tensor, tokens: Tensor) {
        let compute = denoiser.compute
        let shape = Array(logits.shape.dropLast()), labels = logits.shape[logits.rank - 1]
        var flat = logits.reshaped([-1, labels])                                  // [B*H*W, V]
        if settings.typicalFiltering {
            flat = compute.typicalFilter(flat, mass: settings.typicalMass, minTokens: settings.typicalMinTokens)
        }
        let uniforms = random.uniform(flat.shape)
        let sampled = compute.gumbelArgmax(logits: flat, uniforms: uniforms, temperature: temperature).reshaped(shape)
        var x = sampled
        if let mask { x = select(x, where: int32(mask), else: int32(initial)) }
        if i < settings.renoiseUntil && i + 1 < settings.steps {  // (upstream fails on a renoise past the last step)
            let r = settings.noiseLevels[i + 1]
            switch settings.renoiseMode {
            case .start: x = addNoise(x, r: r, replacements: int32(initial), random: &random)
            case .prev: x = addNoise(x, r: r, replacements: int32(tokens), random: &random)
            case .rand: x = addNoise(x, r: r, replacements: nil, random: &random)
            }
        }
        return (sampled, x)
    }

    /// Upstream `add_noise`: each token is replaced, with probability `gamma(r) = cos(r pi / 2)`, by the token at
    /// the same position of `replacements` (or, when nil, a uniformly random one).
    public func addNoise(_ x: Tensor, r: Float, replacements: Tensor?, random: inout some RandomSource) -> Tensor {
        let gamma = Foundation.cos(r * Float.pi / 2)
        let u = random.uniform(x.shape)                                           // Bernoulli(gamma) as u < gamma
        let noise = replacements ?? random.randint(denoiser.config.numLabels, x.shape)
        let replaced = Tensor(int32: u.floats.map { $0 < gamma ? 1 : 0 }, shape: x.shape)
        return select(int32(noise), where: replaced, else: int32(x))
    }
}

/// `torch.linspace(start, end, count)` in float32, bit for bit (its scalar path: the first half counts up from
/// `start`, the second half down from `end`, each a fused multiply-add).
func linspace(_ start: Float, _ end: Float, _ count: Int) -> [Float] {
    if count == 1 { return [start] }
    let step = (end - start) / Float(count - 1)
    return (0..<count).map { i in
        i < count / 2 ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(count - 1 - i))
    }
}

/// Tokens as int32 (from any integer dtype).
private func int32(_ t: Tensor) -> Tensor {
    t.dtype == .int32 ? t : Tensor(int32: t.integers().map { Int32(truncatingIfNeeded: $0) }, shape: t.shape)
}

/// `a` where `condition` is non-zero, else `b` (upstream's `a * mask + (1 - mask) * b` on tokens).
private func select(_ a: Tensor, where condition: Tensor, else b: Tensor) -> Tensor {
    precondition(a.shape == b.shape && condition.count == a.count, "select: shapes \(a.shape), \(condition.shape), \(b.shape) differ")
    let (av, cv, bv) = (a.integers(), condition.integers(), b.integers())
    return Tensor(int32: (0..<av.count).map { Int32(truncatingIfNeeded: cv[$0] != 0 ? av[$0] : bv[$0]) }, shape: a.shape)
}
