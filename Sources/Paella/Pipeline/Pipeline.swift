// The modes of upstream's `paella_sampling.ipynb` (dome272/Paella, commit 9f139e7) as one pipeline over the
// denoiser, the sampler, the VQGAN and CLIP. Changed on purpose: images are encoded with the quantizer's argmax
// (the notebook adds Gumbel noise), so an image's tokens do not depend on the seed; variations use CLIP's own
// preprocessing (resize + center crop; the notebook squashes to 224 x 224); a negative prompt may replace the
// zero unconditional embedding.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// The loaded models a pipeline runs.
public struct PipelineModels: Sendable {
    public let denoiser: Denoiser
    public let vqgan: VQGAN
    public let textEncoder: CLIPTextEncoder
    /// Only variations need it.
    public let visionEncoder: CLIPVisionEncoder?
    public let tokenizer: CLIPTokenizer

    /// Checks that the models fit together: the VQGAN's codebook is the denoiser's vocabulary and CLIP's
    /// embedding is the denoiser's conditioning.
    public init(denoiser: Denoiser, vqgan: VQGAN, textEncoder: CLIPTextEncoder, visionEncoder: CLIPVisionEncoder? = nil,
                tokenizer: CLIPTokenizer) throws {
        guard vqgan.config.nEmbed == denoiser.config.numLabels else {
            throw PipelineError.incompatibleModels("The VQGAN has \(vqgan.config.nEmbed) codes but the denoiser predicts " +
                                                   "\(denoiser.config.numLabels) labels; use components made for each other")
        }
        guard textEncoder.config.embedDim == denoiser.config.cClip else {
            throw PipelineError.incompatibleModels("CLIP embeddings have \(textEncoder.config.embedDim) values but the " +
                                                   "denoiser expects \(denoiser.config.cClip); use components made for each other")
        }
        self.denoiser = denoiser
        self.vqgan = vqgan
        self.textEncoder = textEncoder
        self.visionEncoder = visionEncoder
        self.tokenizer = tokenizer
    }
}

/// Where a request is.
public struct PipelineProgress: Sendable, Equatable {
    public enum Stage: String, Sendable { case encoding, sampling, decoding }
    public let stage: Stage
    /// Sampling steps finished so far in this request (all frames of an interpolation together).
    public let step: Int
    public let totalSteps: Int
    /// Seconds since the request started.
    public let elapsed: Double
    /// After a sampling step, the tokens so far `[N, h, w]` (int32): decoded with the VQGAN they give a preview of
    /// the images at this step (a server's live preview); nil at the other stages.
    public let tokens: Tensor?

    public init(stage: Stage, step: Int, totalSteps: Int, elapsed: Double, tokens: Tensor? = nil) {
        self.stage = stage
        self.step = step
        self.totalSteps = totalSteps
        self.elapsed = elapsed
        self.tokens = tokens
    }

    /// Compares where the requests are; the preview tokens are not compared.
    public static func == (a: PipelineProgress, b: PipelineProgress) -> Bool {
        a.stage == b.stage && a.step == b.step && a.totalSteps == b.totalSteps && a.elapsed == b.elapsed
    }
}

public typealias PipelineProgressHandler = @Sendable (PipelineProgress) -> Void

/// Any request, for `run` and `events` (a server or a command line that picks the mode at run time).
public enum PipelineRequest: Sendable, Equatable {
    case generate(GenerateRequest)
    case interpolate(InterpolateRequest)
    case compose(ComposeRequest)
    case inpaint(InpaintRequest)
    case outpaint(OutpaintRequest)
    case edit(EditRequest)
    case vary(VaryRequest)
}

/// What `events` delivers: progress, then the result.
public enum PipelineEvent: Sendable {
    case progress(PipelineProgress)
    case finished(PipelineResult)
}

/// Text-to-image and the editing modes of Paella over loaded models: load once, serve many requests (also
/// concurrently; each request computes on the models' thread pool).
///
/// Requests run on a thread of their own, so a long generation never blocks Swift's cooperative threads;
/// cancelling the calling task stops the request before its next sampling step with `CancellationError`.
public final class Pipeline: Sendable {
    public let models: PipelineModels
    public let defaults: PipelineDefaults
    /// Written into every image's parameters.
    public let modelName: String
    /// What a request may ask for; every request is checked against them before it starts (`validate`).
    public let limits: RequestLimits
    /// The precision the models' weight matrices were loaded at (recorded in the parameters when not fp32, since
    /// a seed then gives a slightly different image).
    public let precision: Precision

    public init(models: PipelineModels, defaults: PipelineDefaults, modelName: String, limits: RequestLimits = .default,
                precision: Precision = .fp32) {
        self.models = models
        self.defaults = defaults
        self.modelName = modelName
        self.limits = limits
        self.precision = precision
    }

    var compute: Compute { models.denoiser.compute }

    // MARK: Public entry points

    public func generate(_ request: GenerateRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.generate(request))
        return try await running(progress) { try self.generate(request, $0) }
    }
    public func interpolate(_ request: InterpolateRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.interpolate(request))
        return try await running(progress) { try self.interpolate(request, $0) }
    }
    public func compose(_ request: ComposeRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.compose(request))
        return try await running(progress) { try self.compose(request, $0) }
    }
    public func inpaint(_ request: InpaintRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.inpaint(request))
        return try await running(progress) { try self.inpaint(request, $0) }
    }
    public func outpaint(_ request: OutpaintRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.outpaint(request))
        return try await running(progress) { try self.outpaint(request, $0) }
    }
    public func edit(_ request: EditRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.edit(request))
        return try await running(progress) { try self.edit(request, $0) }
    }
    public func vary(_ request: VaryRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        try validate(.vary(request))
        return try await running(progress) { try self.vary(request, $0) }
    }

    /// Runs any request; `progress` is called on the request's thread after each stage and step.
    public func run(_ request: PipelineRequest, progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        switch request {
        case .generate(let r): return try await generate(r, progress: progress)
        case .interpolate(let r): return try await interpolate(r, progress: progress)
        case .compose(let r): return try await compose(r, progress: progress)
        case .inpaint(let r): return try await inpaint(r, progress: progress)
        case .outpaint(let r): return try await outpaint(r, progress: progress)
        case .edit(let r): return try await edit(r, progress: progress)
        case .vary(let r): return try await vary(r, progress: progress)
        }
    }

    /// `request`'s progress and result as an async sequence; ending the iteration early cancels the request.
    public func events(_ request: PipelineRequest) -> AsyncThrowingStream<PipelineEvent, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let result = try await self.run(request) { continuation.yield(.progress($0)) }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Runs `mode` on a thread of its own; cancelling the calling task stops it before its next step.
    private func running(_ progress: PipelineProgressHandler?,
                         _ mode: @escaping @Sendable (RunContext) throws -> PipelineResult) async throws -> PipelineResult {
        let run = RunContext(progress: progress)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PipelineResult, Error>) in
                let thread = Thread {
                    let outcome = Result {
                        try run.checkCancelled()
                        var result = try mode(run)
                        result.warnings = run.warnings
                        return result
                    }
                    // The request's activations are freed by now; hand the pages back so that a server's resident
                    // size stays at what one request needs (see HeapMemory).
                    HeapMemory.releaseFreedMemory()
                    continuation.resume(with: outcome)
                }
                thread.stackSize = 16 << 20
                thread.start()
            }
        } onCancel: {
            run.cancel()
        }
    }
}

/// One request's cancellation flag, progress callback and step count.
final class RunContext: @unchecked Sendable {  // `cancelled` is behind `lock`; the rest is used by the request's thread
    private let lock = NSLock()
    private var cancelled = false
    private let handler: PipelineProgressHandler?
    private let start = Date()
    var stepsDone = 0
    var totalSteps = 0
    /// `PipelineResult.warnings`.
    var warnings: [String] = []

    init(progress: PipelineProgressHandler?) { handler = progress }

    func cancel() { lock.withLock { cancelled = true } }
    var isCancelled: Bool { lock.withLock { cancelled } }

    func checkCancelled() throws {
        if isCancelled { throw CancellationError() }
    }

    func report(_ stage: PipelineProgress.Stage, tokens: Tensor? = nil) {
        handler?(PipelineProgress(stage: stage, step: stepsDone, totalSteps: totalSteps,
                                  elapsed: Date().timeIntervalSince(start), tokens: tokens))
    }
}

// MARK: - Shared steps of the modes

extension Pipeline {
    /// The denoiser's token-grid multiple in pixels and the smallest side it takes.
    var pixelMultiple: Int { models.vqgan.config.downsamplingFactor * models.denoiser.config.sideMultiple }
    var minimumSide: Int { 2 * pixelMultiple }

    /// The token grid of an image of `width` x `height` pixels (the model's default size when nil).
    func tokenGrid(width: Int?, height: Int?) throws -> (height: Int, width: Int) {
        let w = width ?? defaults.imageSize, h = height ?? defaults.imageSize
        try checkSize(width: w, height: h)
        let f = models.vqgan.config.downsamplingFactor
        return (h / f, w / f)
    }

    func checkSize(width: Int, height: Int) throws {
        let m = pixelMultiple
        // No upper bound here: `validate` bounds sizes by the memory they need.
        guard width % m == 0, height % m == 0, width >= minimumSide, height >= minimumSide else {
            throw PipelineError.invalidSize(width: width, height: height, multiple: m, minimum: minimumSide)
        }
    }

    /// CLIP text embeddings `[N, embed]` of `prompts`. A prompt longer than CLIP's context is cut (tokenizing
    /// stops there) with a warning, as diffusers does: its end would have no effect.
    func textEmbeddings(_ prompts: [String], what: String = "prompt", run: RunContext) throws -> Tensor {
        for p in prompts where p.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw PipelineError.emptyPrompt(what) }
        let context = models.textEncoder.config.text.contextLength
        let (tokens, cuts) = models.tokenizer.contextTokensReportingCuts(prompts, contextLength: context)
        if cuts.contains(true) {
            run.warnings.append("The \(what) is longer than the \(context - 2) tokens CLIP reads, so its end was cut and has no effect.")
        }
        return models.textEncoder(tokens, compute: compute)
    }

    /// `x` `[1, ...]` repeated `count` times along the batch axis.
    func repeated(_ x: Tensor, _ count: Int) -> Tensor {
        count == 1 ? x : compute.concat([Tensor](repeating: x, count: count), axis: 0)
    }

    /// Runs the sampler, reporting each step and stopping when the request is cancelled.
    func sample(conditioning c: Tensor, unconditional: Tensor? = nil, tokens: Tensor? = nil, mask: Tensor? = nil,
                _ settings: SamplingSettings, grid: (height: Int, width: Int), startingStep: Int = 0, seed: UInt64,
                run: RunContext, prepare: (inout TorchCompatibleGenerator) -> Tensor? = { _ in nil }) throws -> Tensor {
        var random = TorchCompatibleGenerator(seed: seed)
        let start = prepare(&random) ?? tokens
        let sampler = Sampler(denoiser: models.denoiser)
        let result = try sampler.sample(conditioning: c, unconditional: unconditional, tokens: start, mask: mask, settings: settings,
                                        height: grid.height, width: grid.width, startingStep: startingStep, random: &random) { step in
            run.stepsDone += 1
            run.report(.sampling, tokens: step.tokens)
            return !run.isCancelled
        }
        try run.checkCancelled()
        return result
    }

    /// Decodes token grids `[N, h, w]` one at a time (the decoder's activations are the largest buffers).
    func decode(_ tokens: Tensor, run: RunContext) throws -> [PixelImage] {
        run.report(.decoding)
        return try (0..<tokens.shape[0]).flatMap { i -> [PixelImage] in
            try run.checkCancelled()
            let pixels = try models.vqgan.decode(tokens.slice(i..<i + 1))
            if pixels.nonFiniteCount > 0 { throw PipelineError.nonFiniteModelOutput(part: "VQGAN decoder") }
            return PixelImage.images(from: pixels)
        }
    }

    /// The parameters every mode records; modes fill in their own fields afterwards.
    func parameters(mode: String, _ m: SamplingSettings, seed: UInt64, count: Int, grid: (height: Int, width: Int),
                    startingStep: Int = 0) -> GenerationParameters {
        let f = models.vqgan.config.downsamplingFactor
        return GenerationParameters(
            mode: mode, model: modelName, prompt: nil, negativePrompt: nil, prompts: nil, regions: nil, seed: seed,
            count: count, width: grid.width * f, height: grid.height * f, steps: m.steps, startingStep: startingStep,
            guidanceScale: m.guidanceScale, temperatureRange: m.temperatureRange,
            typicalMass: m.typicalFiltering ? m.typicalMass : nil, renoiseSteps: m.renoiseUntil,
            renoiseMode: m.renoiseMode, strength: nil, frames: nil, method: nil, extend: nil,
            precision: precision == .fp32 ? nil : precision, paellaVersion: PaellaVersion.string)
    }
}
