// The native jobs API: every mode of the pipeline as a job that answers at once with an id, reports its progress
// as server-sent events and can be cancelled. Images go in and out as base64 PNG/JPEG (a `data:` URL prefix is
// accepted, as a browser's canvas gives it).
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// The JSON body of POST /api/jobs: `mode` plus the fields that mode takes.
struct JobBody: Decodable {
    struct Region: Decodable { var prompt: String?, axis: String?, start: Int?, end: Int? }
    struct Blend: Decodable { var from: String?, to: String?, axis: String? }
    struct Extend: Decodable { var left: Int?, right: Int?, top: Int?, bottom: Int? }

    var mode: String?
    var prompt: String?, negativePrompt: String?
    var width: Int?, height: Int?
    var n: Int?, seed: Int64?, steps: Int?, guidance: Float?, temperature: [Float]?
    var from: String?, to: String?, frames: Int?, method: String?
    var regions: [Region]?, blend: Blend?
    var image: String?, mask: String?, rect: [Int]?
    var extend: Extend?
    var strength: Float?
    /// Inpainting, outpainting and editing: the input's shorter side is resized to this many pixels.
    var size: Int?

    enum CodingKeys: String, CodingKey {
        case mode, prompt, negativePrompt = "negative_prompt", width, height, n, seed, steps, guidance, temperature
        case from, to, frames, method, regions, blend, image, mask, rect, extend, strength, size
    }
}

extension PaellaServer {
    // MARK: Endpoints

    /// Checks the body, queues the job and answers 202 with its state, or 429 when the queue is full.
    func createJob(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body: JobBody = try Self.decodeJSON(try await collect(request))
        let (mode, pipelineRequest) = try pipelineRequest(body)
        let job = Job(id: configuration.makeID(), mode: mode)
        try await start(job, pipelineRequest)
        await jobs.add(job)
        var response = try json(job.snapshot, status: .accepted)
        response.headers[.location] = "/api/jobs/\(job.id)"
        return response
    }

    func getJob(_ context: BasicRequestContext) async throws -> Response {
        try json(try await job(context).snapshot)
    }

    /// The job's events as `text/event-stream`, until it ends.
    func jobEvents(_ context: BasicRequestContext) async throws -> Response {
        let events = try await job(context).events().map { ByteBuffer(string: $0) }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: ResponseBody(asyncSequence: events))
    }

    /// Cancels a job (it stops before its next step, or leaves the queue) and answers its final state.
    func deleteJob(_ context: BasicRequestContext) async throws -> Response {
        let job = try await job(context)
        guard !job.snapshot.state.isFinal else {
            throw APIError(.conflict, "The job has already ended (\(job.snapshot.state.rawValue)); there is nothing to cancel.", code: "job_ended")
        }
        job.cancel()
        await job.waitUntilFinished()
        return try json(job.snapshot)
    }

    private func job(_ context: BasicRequestContext) async throws -> Job {
        guard let id = context.parameters.get("id"), let job = await jobs.job(id) else {
            throw APIError(.notFound, "There is no such job; jobs are kept for the last \(configuration.keptImages) requests only.", code: "not_found")
        }
        return job
    }

    /// Starts `job` in the queue and returns once it has a place (running or waiting); a full or closing queue
    /// throws its 429 or 503 here, before the client is given an id.
    private func start(_ job: Job, _ request: PipelineRequest) async throws {
        let gate = AdmissionGate()
        let task = Task {
            do {
                let result = try await compute(request, admitted: { gate.open() }) { job.update($0, preview: self.preview) }
                var links: [String] = []
                for image in result.images {
                    links.append("/api/images/\(await images.add(try image.encodePNG(text: result.parameters.pngText))).png")
                }
                job.succeed(images: links, parameters: result.parameters)
            } catch {
                gate.fail(error)
                if error is CancellationError { job.cancelled() } else { job.fail(APIError.from(error)) }
            }
        }
        job.setCancel { task.cancel() }
        try await gate.wait()
    }

    /// The first image of `tokens` `[N, h, w]` decoded, at most `previewSide` pixels a side, as a PNG `data:` URL.
    func preview(_ tokens: Tensor) -> String? {
        previewPNG(tokens).map { "data:image/png;base64," + Data($0).base64EncodedString() }
    }

    /// The first image of `tokens` `[N, h, w]` decoded, at most `previewSide` pixels a side, as PNG bytes.
    func previewPNG(_ tokens: Tensor) -> [UInt8]? {
        guard let image = try? pipeline.models.vqgan.decodeImages(tokens.slice(0..<1)).first else { return nil }
        let scale = min(1, Double(Self.previewSide) / Double(max(image.width, image.height)))
        let small = scale < 1
            ? image.resized(width: max(1, Int(Double(image.width) * scale)), height: max(1, Int(Double(image.height) * scale)), filter: .bilinear)
            : image
        return try? small.encodePNG(compressionLevel: 1)
    }

    /// Previews are for watching, not keeping: 128 pixels keep an event under about 50 KB.
    static let previewSide = 128

    // MARK: Reading a job

    /// The pipeline request a job body describes, every field checked against the limits (by the library:
    /// single fields before any image is decoded, the whole request at the end).
    func pipelineRequest(_ b: JobBody) throws -> (String, PipelineRequest) {
        let (mode, request) = try unvalidatedPipelineRequest(b)
        try pipeline.validate(request, limits: requestLimits)
        return (mode, request)
    }

    private func unvalidatedPipelineRequest(_ b: JobBody) throws -> (String, PipelineRequest) {
        let limits = requestLimits
        let size: String? = (b.width != nil || b.height != nil)
            ? "\(b.width ?? pipeline.defaults.imageSize)x\(b.height ?? pipeline.defaults.imageSize)" : nil
        var options = try imageOptions(n: b.n, size: size, responseFormat: nil, seed: b.seed, steps: b.steps, guidance: b.guidance)
        if let t = b.temperature {
            guard (1...2).contains(t.count) else {
                throw APIError.invalid("temperature takes one or two positive numbers.", param: "temperature")
            }
            options.settings.sampling.temperatureRange = [t[0], t[t.count - 1]]
            try limits.check(options.settings)
        }
        let settings = options.settings
        let mode = b.mode ?? "generate"
        switch mode {
        case "generate":
            return (mode, .generate(GenerateRequest(prompt: try checkPrompt(b.prompt, param: "prompt"),
                                                    negativePrompt: try b.negativePrompt.map { try checkPrompt($0, param: "negative_prompt") },
                                                    width: options.width, height: options.height, settings: settings)))
        case "interpolate":
            let frames = b.frames ?? 8
            try limits.check(frames: frames)
            guard let method = InterpolationMethod(rawValue: b.method ?? "lerp") else {
                throw APIError.invalid("method must be lerp or slerp.", param: "method")
            }
            return (mode, .interpolate(InterpolateRequest(from: try checkPrompt(b.from, param: "from"), to: try checkPrompt(b.to, param: "to"),
                                                          frames: frames, method: method, width: options.width, height: options.height,
                                                          settings: settings)))
        case "compose":
            return (mode, .compose(ComposeRequest(layout: try composeLayout(b), width: options.width, height: options.height, settings: settings)))
        case "inpaint":
            let image = try base64Image(b.image, field: "image").rgb()
            let mask: InpaintMask
            if let m = b.mask {
                mask = .image(repaintMask(try base64Image(m, field: "mask")))
            } else if let r = b.rect {
                guard r.count == 4 else { throw APIError.invalid("rect takes four numbers: x, y, width, height.", param: "rect") }
                mask = .rectangle(x: r[0], y: r[1], width: r[2], height: r[3])
            } else {
                throw APIError.invalid("Inpainting needs a mask (a base64 image, white = repaint) or a rect [x, y, width, height].", param: "mask")
            }
            return (mode, .inpaint(InpaintRequest(image: image, mask: mask, prompt: try checkPrompt(b.prompt, param: "prompt"),
                                                  size: b.size, settings: settings)))
        case "outpaint":
            let e = b.extend
            let extend = OutpaintRequest.Extension(left: e?.left ?? 0, right: e?.right ?? 0, top: e?.top ?? 0, bottom: e?.bottom ?? 0)
            try limits.check(extension: extend)
            let image = try base64Image(b.image, field: "image").rgb()
            return (mode, .outpaint(OutpaintRequest(image: image, extend: extend, prompt: try checkPrompt(b.prompt, param: "prompt"),
                                                    size: b.size, settings: settings)))
        case "edit":
            try limits.check(strength: b.strength)
            let image = try base64Image(b.image, field: "image").rgb()
            return (mode, .edit(EditRequest(image: image, prompt: try checkPrompt(b.prompt, param: "prompt"), strength: b.strength,
                                            size: b.size, settings: settings)))
        case "vary":
            let image = try base64Image(b.image, field: "image").rgb()
            return (mode, .vary(VaryRequest(image: image, width: options.width, height: options.height, settings: settings)))
        default:
            throw APIError.invalid("mode must be one of generate, interpolate, compose, inpaint, outpaint, edit, vary; got '\(mode.prefix(40))'.",
                                   param: "mode")
        }
    }

    private func composeLayout(_ b: JobBody) throws -> ComposeRequest.Layout {
        func axis(_ text: String?) throws -> ComposeRequest.Axis {
            guard let a = ComposeRequest.Axis(rawValue: text ?? "columns") else {
                throw APIError.invalid("axis must be columns or rows.", param: "axis")
            }
            return a
        }
        if let blend = b.blend {
            return .blend(from: try checkPrompt(blend.from, param: "from"), to: try checkPrompt(blend.to, param: "to"), along: try axis(blend.axis))
        }
        guard let regions = b.regions, !regions.isEmpty else {
            throw APIError.invalid("compose needs regions (1 to \(configuration.limits.maxFrames) of {prompt, axis, start, end}) or a blend {from, to, axis}.",
                                   param: "regions")
        }
        return .regions(try regions.map { r in
            guard let start = r.start, let end = r.end, start >= 0, start < end else {  // a Range needs start <= end
                throw APIError.invalid("Each region needs pixels 0 <= start < end.", param: "regions")
            }
            return ComposeRequest.Region(prompt: try checkPrompt(r.prompt, param: "prompt"), axis: try axis(r.axis), pixels: start..<end)
        })
    }

    /// An image sent as base64 (optionally a `data:` URL), under the same limits as an upload, as decoded: a mask
    /// keeps its alpha, whose fully transparent pixels are the ones to repaint (a browser canvas draws masks so).
    func base64Image(_ text: String?, field: String) throws -> PixelImage {
        guard let text else { throw APIError.invalid("The \(field) is missing; send it as base64 PNG or JPEG.", param: field) }
        let payload = text.hasPrefix("data:") ? String(text.drop { $0 != "," }.dropFirst()) : text
        guard let data = Data(base64Encoded: payload, options: .ignoreUnknownCharacters) else {
            throw APIError.invalid("The \(field) is not valid base64.", param: field)
        }
        return try uploadedImage(Array(data), field: field)
    }

}

/// Lets `createJob` wait until its job has a place in the queue (or was refused), whichever comes first.
private final class AdmissionGate: @unchecked Sendable {  // `outcome` and `waiter` are behind `lock`
    private let lock = NSLock()
    private var outcome: Result<Void, any Error>?
    private var waiter: CheckedContinuation<Void, any Error>?

    func open() { settle(.success(())) }
    func fail(_ error: any Error) { settle(.failure(error)) }

    private func settle(_ result: Result<Void, any Error>) {
        let w: CheckedContinuation<Void, any Error>? = lock.withLock {
            guard outcome == nil else { return nil }
            outcome = result
            defer { waiter = nil }
            return waiter
        }
        w?.resume(with: result)
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let ready: Result<Void, any Error>? = lock.withLock {
                if outcome == nil { waiter = c }
                return outcome
            }
            if let ready { c.resume(with: ready) }
        }
    }
}
