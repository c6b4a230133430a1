// AUTOMATIC1111's web UI API (`/sdapi/v1`), which Open WebUI, SillyTavern and other front-ends speak to a local
// image backend, over the same pipeline, queue, limits and authentication as the rest of the server.
//
// What maps to what: txt2img is generation; img2img without a mask is structural editing with
// `denoising_strength` as its strength, with a mask it is inpainting (white = repaint, as A1111 reads masks).
// `batch_size` images are sampled together from one seed; `n_iter` batches run one after another, batch k from
// seed + k (the library's convention for batches), so `all_seeds` lists each image's batch seed. Fields Paella
// has no use for (samplers, schedulers, hires fix, face restoration, scripts, mask blur, inpainting fill) are
// accepted and ignored, as A1111 ignores the fields it does not know.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// The sdapi requests being computed, for GET /sdapi/v1/progress and POST /sdapi/v1/interrupt. A1111 runs one
/// job at a time and reports that one; here "the" job is the oldest sdapi request that is computing (else the
/// oldest waiting), and interrupting it leaves the others alone, as A1111's queued requests are.
final class SDAPIActivity: @unchecked Sendable {  // `runs` and `nextID` are behind `lock`
    /// Where one request is, as the progress endpoint reports it.
    struct Run {
        /// "txt2img" or "img2img", A1111's `state.job`.
        var job: String
        /// When the request arrived, as A1111's `job_timestamp` (yyyyMMddHHmmss).
        var timestamp: String
        /// `n_iter`: A1111's `job_count`.
        var iterations: Int
        /// The batch being sampled, from 0: A1111's `job_no`.
        var iteration = 0
        var step = 0, steps = 0
        /// When the first batch started computing (time spent waiting in the queue does not count for the ETA).
        var started: ContinuousClock.Instant?
        /// The tokens after the last sampling step of the current batch: the progress preview, and the images
        /// an interrupted request still returns.
        var tokens: Tensor?
        var interrupted = false
        var cancel: (@Sendable () -> Void)?
    }

    private let lock = NSLock()
    private var runs: [UInt64: Run] = [:]
    private var nextID: UInt64 = 0

    func begin(job: String, iterations: Int) -> UInt64 {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMddHHmmss"
        let run = Run(job: job, timestamp: formatter.string(from: Date()), iterations: iterations)
        return lock.withLock {
            defer { nextID += 1 }
            runs[nextID] = run
            return nextID
        }
    }

    /// Remembers how to stop the request; one interrupted before this point stops at once.
    func setCancel(_ id: UInt64, _ cancel: @escaping @Sendable () -> Void) {
        let interrupted = lock.withLock { () -> Bool in
            runs[id]?.cancel = cancel
            return runs[id]?.interrupted ?? false
        }
        if interrupted { cancel() }
    }

    func progress(_ id: UInt64, iteration: Int, _ p: PipelineProgress) {
        lock.withLock {
            guard var run = runs[id] else { return }
            if run.iteration != iteration { (run.iteration, run.tokens, run.step) = (iteration, nil, 0) }
            if run.started == nil { run.started = .now }
            if p.stage == .sampling { (run.step, run.steps) = (p.step, p.totalSteps) } else if run.steps == 0 { run.steps = p.totalSteps }
            if let tokens = p.tokens { run.tokens = tokens }
            runs[id] = run
        }
    }

    func end(_ id: UInt64) { lock.withLock { runs[id] = nil } }

    func run(_ id: UInt64) -> Run? { lock.withLock { runs[id] } }

    /// The job A1111 would report: the oldest computing one, else the oldest waiting one.
    var current: Run? { lock.withLock { currentID.flatMap { runs[$0] } } }

    private var currentID: UInt64? {
        runs.filter { $0.value.started != nil }.keys.min() ?? runs.keys.min()
    }

    /// Interrupts the current job: it stops before its next sampling step and answers with what it has.
    func interrupt() {
        let cancel = lock.withLock { () -> (@Sendable () -> Void)? in
            guard let id = currentID else { return nil }
            runs[id]?.interrupted = true
            return runs[id]?.cancel
        }
        cancel?()
    }
}

/// What txt2img and img2img share, read from the body and checked.
struct SDAPIRequest: Sendable {
    var prompt: String
    var negativePrompt: String?
    /// The first batch's seed (drawn when the client sent -1 or none).
    var seed: UInt64
    /// `batch_size` as the count, `steps` and `cfg_scale` as overrides.
    var settings: CommonSettings
    /// `n_iter`.
    var iterations: Int
    var width: Int?, height: Int?
    var sendImages: Bool
}

/// One batch's images and the seed that made them.
private struct SDAPIBatch: Sendable {
    var images: [PixelImage]
    var seed: UInt64
    /// nil for the batch an interrupt stopped: its images are its tokens at that step.
    var parameters: GenerationParameters?
}

extension PaellaServer {
    /// A1111's routes under /sdapi/v1; their errors leave in FastAPI's shape (`OpenAIErrorMiddleware` hands them
    /// to `FastAPIError`).
    func addSDAPIRoutes(to router: Router<BasicRequestContext>) {
        router.post("/sdapi/v1/txt2img") { request, _ in try await self.sdTxt2img(request) }
        router.post("/sdapi/v1/img2img") { request, _ in try await self.sdImg2img(request) }
        router.get("/sdapi/v1/progress") { request, _ in try self.sdProgress(request) }
        router.post("/sdapi/v1/interrupt") { _, _ in
            self.sdapi.interrupt()
            return Self.sdJSON(.object([]))
        }
        router.get("/sdapi/v1/sd-models") { _, _ in
            let name = JSONValue.string(self.pipeline.modelName)
            return Self.sdJSON(.array([.object([("title", name), ("model_name", name), ("hash", .null), ("sha256", .null),
                                                ("filename", name), ("config", .null)])]))
        }
        router.get("/sdapi/v1/options") { _, _ in
            Self.sdJSON(.object([("sd_model_checkpoint", .string(self.pipeline.modelName)), ("sd_checkpoint_hash", .null),
                                 ("samples_format", .string("png")), ("live_previews_enable", .bool(true)),
                                 ("show_progress_every_n_steps", .int(1)), ("CLIP_stop_at_last_layers", .int(1))]))
        }
        router.post("/sdapi/v1/options") { request, _ in try await self.sdSetOptions(request) }
        // The lists a front-end fills its menus from (SillyTavern asks for each when it connects): Paella has one
        // sampler of its own and no schedulers, upscalers or VAEs to choose.
        router.get("/sdapi/v1/samplers") { _, _ in
            Self.sdJSON(.array([.object([("name", .string("Paella")), ("aliases", .strings(["paella"])), ("options", .object([]))])]))
        }
        router.get("/sdapi/v1/schedulers") { _, _ in
            Self.sdJSON(.array([.object([("name", .string("automatic")), ("label", .string("Automatic")), ("aliases", .null),
                                         ("default_rho", .null), ("need_inner_model", .null)])]))
        }
        router.get("/sdapi/v1/upscalers") { _, _ in
            Self.sdJSON(.array([.object([("name", .string("None")), ("model_name", .null), ("model_path", .null), ("model_url", .null),
                                         ("scale", .int(4))])]))
        }
        router.get("/sdapi/v1/latent-upscale-modes") { _, _ in Self.sdJSON(.array([])) }
        router.get("/sdapi/v1/sd-vae") { _, _ in Self.sdJSON(.array([])) }
    }

    static func sdJSON(_ value: JSONValue) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.encoded)))
    }

    // MARK: txt2img and img2img

    func sdTxt2img(_ request: Request) async throws -> Response {
        var body = try SDAPIBody(try await collect(request))
        let common = try sdRequest(&body)
        return try await sdRun(job: "txt2img", common, body: body, defaults: pipeline.defaults.generate, strength: nil) { settings in
            .generate(GenerateRequest(prompt: common.prompt, negativePrompt: common.negativePrompt, width: common.width, height: common.height,
                                      settings: settings))
        }
    }

    func sdImg2img(_ request: Request) async throws -> Response {
        var body = try SDAPIBody(try await collect(request))
        let initImages = body.strings("init_images")
        let strength = body.float("denoising_strength") ?? Self.a1111DenoisingStrength
        // A1111 reads an empty mask as none.
        let maskText = body.string("mask").flatMap { $0.isEmpty ? nil : $0 }
        let invert = body.int("inpainting_mask_invert") ?? 0
        // Read for their types only: Paella repaints whole tokens (a token is repainted when any of its pixels is
        // masked, the others keep their exact values), so a blurred edge or a fill has nothing to change.
        _ = (body.int("mask_blur"), body.int("mask_blur_x"), body.int("mask_blur_y"), body.int("inpainting_fill"), body.int("resize_mode"))
        let common = try sdRequest(&body)
        guard let first = initImages?.first else {
            throw FastAPIError.invalid("init_images", "init_images is missing or empty; send the image to change as base64 PNG or JPEG.")
        }
        guard invert == 0 || invert == 1 else {
            throw FastAPIError.invalid("inpainting_mask_invert", "inpainting_mask_invert must be 0 (white repaints) or 1 (black repaints).")
        }
        // Checked with a mask too, where Paella does not use it: a value out of range is refused in either mode.
        try requestLimits.check(strength: strength)
        let image = try base64Image(first, field: "init_images").rgb()
        // Edits keep the image's proportions: the smaller of width and height becomes its shorter side.
        let side = [common.width, common.height].compactMap { $0 }.min()
        if let maskText {
            let mask = Self.a1111RepaintMask(try base64Image(maskText, field: "mask"), invert: invert == 1)
            return try await sdRun(job: "img2img", common, body: body, defaults: pipeline.defaults.inpaint, strength: strength) { settings in
                .inpaint(InpaintRequest(image: image, mask: .image(mask), prompt: common.prompt, size: side, settings: settings))
            }
        }
        return try await sdRun(job: "img2img", common, body: body, defaults: pipeline.defaults.edit, strength: strength) { settings in
            .edit(EditRequest(image: image, prompt: common.prompt, strength: strength, size: side, settings: settings))
        }
    }

    /// A1111's default `denoising_strength`.
    static let a1111DenoisingStrength: Float = 0.75

    /// A mask read as A1111 reads one: an alpha channel that is not fully opaque is the mask (opaque = repaint),
    /// otherwise its gray level; above 128 is repainted, or at most 128 with `invert`. Paella's convention out:
    /// gray, 255 = repaint.
    static func a1111RepaintMask(_ mask: PixelImage, invert: Bool) -> PixelImage {
        let alpha = mask.layout.hasAlpha ? mask.channels - 1 : nil
        let count = mask.width * mask.height
        let useAlpha = alpha.map { a in (0..<count).contains { mask.pixels[$0 * mask.channels + a] != 255 } } ?? false
        let gray = useAlpha ? nil : mask.converted(to: .gray)
        var out = PixelImage(width: mask.width, height: mask.height, layout: .gray, repeating: 0)
        for i in 0..<count {
            let level = gray.map { $0.pixels[i] } ?? mask.pixels[i * mask.channels + (alpha ?? 0)]
            out.pixels[i] = (level > 128) != invert ? 255 : 0
        }
        return out
    }

    /// Reads and checks the fields txt2img and img2img share; every wrong type is reported at once (422), then
    /// each value against the limits by the library.
    func sdRequest(_ body: inout SDAPIBody) throws -> SDAPIRequest {
        let prompt = body.string("prompt"), negative = body.string("negative_prompt")
        let seed = body.int("seed"), steps = body.int("steps"), cfg = body.float("cfg_scale")
        let width = body.int("width"), height = body.int("height")
        let batchSize = body.int("batch_size") ?? 1, iterations = body.int("n_iter") ?? 1
        let sendImages = body.bool("send_images") ?? true
        _ = (body.string("sampler_name"), body.string("sampler_index"), body.string("scheduler"))
        try body.check()

        let checkedPrompt = try checkPrompt(prompt, param: "prompt")
        // A1111 sends "" for no negative prompt.
        let checkedNegative = try negative.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
            .map { try checkPrompt($0, param: "negative_prompt") }
        let firstSeed: UInt64
        switch seed {
        case .none, .some(-1): firstSeed = CommonSettings.randomSeed()
        case let s? where s >= 0: firstSeed = UInt64(s)
        case let s?: throw FastAPIError.invalid("seed", "The seed \(s) is out of range; give -1 for a random seed, or 0 or more.")
        }
        let settings = CommonSettings(seed: firstSeed, count: batchSize, sampling: SamplingOverrides(steps: steps, guidanceScale: cfg))
        try requestLimits.check(settings)
        let maxImages = configuration.limits.maxImages
        let (total, overflow) = batchSize.multipliedReportingOverflow(by: iterations)
        guard iterations >= 1, !overflow, total <= maxImages else {
            throw FastAPIError.invalid("n_iter", "batch_size x n_iter is \(overflow ? "too many" : String(total)) images; this server makes 1 to " +
                                       "\(maxImages) a request, so ask for fewer (n_iter at least 1).")
        }
        return SDAPIRequest(prompt: checkedPrompt, negativePrompt: checkedNegative, seed: firstSeed, settings: settings,
                            iterations: iterations, width: width, height: height, sendImages: sendImages)
    }

    /// Runs the request's batches through the queue, watched by the progress endpoint, and answers A1111's
    /// `{"images", "parameters", "info"}`. An interrupted request answers 200 with the batches done and the
    /// interrupted batch as its tokens were at the last step, as A1111 returns what it has.
    private func sdRun(job: String, _ common: SDAPIRequest, body: SDAPIBody, defaults: SamplingSettings, strength: Float?,
                       _ make: @escaping @Sendable (CommonSettings) -> PipelineRequest) async throws -> Response {
        let estimate = try pipeline.validate(make(common.settings), limits: requestLimits)
        let activity = sdapi
        let id = activity.begin(job: job, iterations: common.iterations)
        defer { activity.end(id) }
        let work = Task { () throws -> [SDAPIBatch] in
            var batches: [SDAPIBatch] = []
            for k in 0..<common.iterations {
                if activity.run(id)?.interrupted == true { break }
                try Task.checkCancellation()
                var settings = common.settings
                settings.seed = common.seed &+ UInt64(k)
                do {
                    let result = try await self.compute(make(settings), progress: { activity.progress(id, iteration: k, $0) })
                    batches.append(SDAPIBatch(images: result.images, seed: settings.seed ?? 0, parameters: result.parameters))
                } catch is CancellationError where activity.run(id)?.interrupted == true {
                    if let tokens = activity.run(id)?.tokens, let images = try? self.pipeline.models.vqgan.decodeImages(tokens) {
                        batches.append(SDAPIBatch(images: images, seed: settings.seed ?? 0, parameters: nil))
                    }
                    break
                }
            }
            return batches
        }
        activity.setCancel(id) { work.cancel() }
        let batches = try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }

        var images: [String] = []
        if common.sendImages {
            for batch in batches {
                for image in batch.images {
                    images.append(Data(try image.encodePNG(text: batch.parameters?.pngText ?? [:])).base64EncodedString())
                }
            }
        }
        let steps = common.settings.sampling.steps ?? defaults.steps
        let cfg = common.settings.sampling.guidanceScale ?? defaults.guidanceScale
        let timestamp = activity.run(id)?.timestamp ?? ""
        let info = sdInfo(common, width: estimate.width, height: estimate.height, steps: steps, cfg: cfg, strength: strength, timestamp: timestamp)
        // A1111 echoes the request with its defaults filled in (the images themselves left out); here the
        // defaults are the values this request ran with.
        var used: [(key: String, value: JSONValue)] = [
            ("prompt", .string(common.prompt)), ("negative_prompt", .string(common.negativePrompt ?? "")),
            ("seed", body.members.last { $0.key == "seed" }?.value ?? .int(-1)),
            ("batch_size", .int(common.settings.count)), ("n_iter", .int(common.iterations)), ("steps", .int(steps)),
            ("cfg_scale", .float(cfg)), ("width", .int(estimate.width)), ("height", .int(estimate.height)), ("send_images", .bool(common.sendImages)),
        ]
        if let strength { used += [("denoising_strength", .float(strength)), ("init_images", .null), ("mask", .null)] }
        let parameters = JSONValue.object(body.members).merging(used)
        logger.info("sdapi", metadata: ["job": "\(job)", "images": "\(images.count)", "seed": "\(common.seed)"])
        return Self.sdJSON(.object([("images", .strings(images)), ("parameters", parameters), ("info", .string(info.text))]))
    }

    /// A1111's `info`: what made the images (as `Processed.js()` writes it), as a JSON text.
    private func sdInfo(_ r: SDAPIRequest, width: Int, height: Int, steps: Int, cfg: Float, strength: Float?, timestamp: String) -> JSONValue {
        let count = r.settings.count * r.iterations
        let seeds = (0..<r.iterations).flatMap { k in Array(repeating: r.seed &+ UInt64(k), count: r.settings.count) }
        let negative = r.negativePrompt ?? ""
        let version = "Paella for Swift \(PaellaVersion.string)"
        let infotexts = seeds.map { seed in
            "\(r.prompt)\n" + (negative.isEmpty ? "" : "Negative prompt: \(negative)\n") +
                "Steps: \(steps), Sampler: Paella, CFG scale: \(cfg), Seed: \(seed), Size: \(width)x\(height), Model: \(pipeline.modelName)" +
                (strength.map { ", Denoising strength: \($0)" } ?? "") + ", Version: \(version)"
        }
        return .object([
            ("prompt", .string(r.prompt)), ("all_prompts", .strings(Array(repeating: r.prompt, count: count))),
            ("negative_prompt", .string(negative)), ("all_negative_prompts", .strings(Array(repeating: negative, count: count))),
            ("seed", .int(r.seed)), ("all_seeds", .array(seeds.map { .int($0) })),
            ("subseed", .int(-1)), ("all_subseeds", .array(Array(repeating: .int(-1), count: count))), ("subseed_strength", .int(0)),
            ("width", .int(width)), ("height", .int(height)), ("sampler_name", .string("Paella")), ("cfg_scale", .float(cfg)),
            ("steps", .int(steps)), ("batch_size", .int(r.settings.count)), ("restore_faces", .bool(false)),
            ("face_restoration_model", .null), ("sd_model_name", .string(pipeline.modelName)), ("sd_model_hash", .null),
            ("sd_vae_name", .null), ("sd_vae_hash", .null), ("seed_resize_from_w", .int(-1)), ("seed_resize_from_h", .int(-1)),
            ("denoising_strength", strength.map { .float($0) } ?? .null), ("extra_generation_params", .object([])),
            ("index_of_first_image", .int(0)), ("infotexts", .strings(infotexts)), ("styles", .array([])),
            ("job_timestamp", .string(timestamp)), ("clip_skip", .int(1)), ("is_using_inpainting_conditioning", .bool(false)),
            ("version", .string(version)),
        ])
    }

    // MARK: Progress and options

    /// A1111's progress: the current job's share done (batches before it and steps of this one), the seconds
    /// left at the rate so far, its state, and a preview of its first image at the last step.
    func sdProgress(_ request: Request) throws -> Response {
        let skipImage = try request.uri.queryParameters.getAll("skip_current_image").reduce(false) { skip, text in
            guard let value = SDAPIBody.boolean(.string(text)) else {
                throw FastAPIError.invalid([.init(loc: ["query", "skip_current_image"], msg: "value could not be parsed to a boolean",
                                                  type: "type_error.bool")])
            }
            return skip || value
        }
        guard let run = sdapi.current else {
            return Self.sdJSON(.object([("progress", .int(0)), ("eta_relative", .int(0)), ("state", Self.sdState(nil)),
                                        ("current_image", .null), ("textinfo", .null)]))
        }
        let steps = max(run.steps, 1)
        let done = steps * run.iteration + run.step, total = steps * max(run.iterations, 1)
        let progress = done > 0 ? Double(done) / Double(total) : 0
        let elapsed = run.started.map { start -> Double in
            let d = ContinuousClock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        } ?? 0
        let eta = progress > 0 ? elapsed / progress - elapsed : 0
        let image = skipImage ? nil : run.tokens.flatMap(previewPNG).map { JSONValue.string(Data($0).base64EncodedString()) }
        return Self.sdJSON(.object([("progress", .number(String(progress))), ("eta_relative", .number(String(eta))),
                                    ("state", Self.sdState(run)), ("current_image", image ?? .null), ("textinfo", .null)]))
    }

    /// A1111's `state.dict()`; with no job, its idle values.
    private static func sdState(_ run: SDAPIActivity.Run?) -> JSONValue {
        .object([("skipped", .bool(false)), ("interrupted", .bool(run?.interrupted ?? false)), ("stopping_generation", .bool(false)),
                 ("job", .string(run?.job ?? "")), ("job_count", .int(run?.iterations ?? 0)), ("job_timestamp", .string(run?.timestamp ?? "0")),
                 ("job_no", .int(run?.iteration ?? 0)), ("sampling_step", .int(run?.step ?? 0)), ("sampling_steps", .int(run?.steps ?? 0))])
    }

    /// Front-ends post the options back to choose a model: the loaded one is accepted (by its title or name),
    /// another is refused, and every other option is accepted and ignored.
    func sdSetOptions(_ request: Request) async throws -> Response {
        var body = try SDAPIBody(try await collect(request))
        let checkpoint = body.string("sd_model_checkpoint")
        try body.check()
        if let checkpoint, checkpoint != pipeline.modelName {
            throw FastAPIError.invalid("sd_model_checkpoint", "This server serves only the model \(pipeline.modelName); choose it, or start " +
                                       "paella serve with --model for another.")
        }
        return Self.sdJSON(.null)
    }
}
