// OpenAI's images API (POST /v1/images/generations, /edits, /variations) over the pipeline's modes: the
// request fields of OpenAI's reference, plus our own sampling fields (seed, steps, guidance, negative_prompt,
// strength). Fields OpenAI has and Paella does not use (model, quality, style, user) are accepted and ignored,
// so that unchanged clients work.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Paella
import PaellaIO

/// How the images come back: a link to /api/images/{id}.png, or the PNG itself in base64.
enum ResponseFormat: String {
    case url
    case b64JSON = "b64_json"
}

/// The options every images endpoint shares, checked against the server's limits before a job is queued.
struct ImageOptions {
    var width: Int?, height: Int?
    var format: ResponseFormat
    var settings: CommonSettings
}

/// The JSON body of POST /v1/images/generations.
struct GenerationBody: Decodable {
    var prompt: String?
    var n: Int?
    var size: String?
    var responseFormat: String?
    var seed: Int64?
    var steps: Int?
    var guidance: Float?
    var negativePrompt: String?

    enum CodingKeys: String, CodingKey {
        case prompt, n, size, responseFormat = "response_format", seed, steps, guidance, negativePrompt = "negative_prompt"
    }
}

/// An image a client sent that does not decode or is too large, as one sentence.
struct ImageInputError: Error {
    var message: String
    var tooLarge: Bool
}

/// What the images endpoints answer: OpenAI's `{"created", "data": [{"url"} or {"b64_json"}]}` plus the
/// parameters that made the images (the seed drawn when none was given, among them).
struct ImagesResponse: Encodable {
    struct Item: Encodable {
        var url: String?
        var b64JSON: String?
        enum CodingKeys: String, CodingKey { case url, b64JSON = "b64_json" }
    }
    var created: Int
    var data: [Item]
    var parameters: GenerationParameters
}

extension PaellaServer {
    // MARK: Endpoints

    func generations(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body: GenerationBody = try Self.decodeJSON(try await collect(request))
        let prompt = try checkPrompt(body.prompt, param: "prompt")
        let negative = try body.negativePrompt.map { try checkPrompt($0, param: "negative_prompt") }
        let options = try imageOptions(n: body.n, size: body.size, responseFormat: body.responseFormat, seed: body.seed,
                                       steps: body.steps, guidance: body.guidance)
        let generate = PipelineRequest.generate(GenerateRequest(prompt: prompt, negativePrompt: negative, width: options.width,
                                                                height: options.height, settings: options.settings))
        try pipeline.validate(generate, limits: requestLimits)
        let result = try await compute(generate)
        return try await respond(result, options.format, request: request)
    }

    /// With a mask: inpainting (OpenAI's semantics: transparent pixels of the mask are repainted; a mask without
    /// alpha is read Paella's way, white = repaint). Without one: structural editing of the whole image.
    func edits(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let form = try MultipartForm(body: try await collect(request), contentType: request.headers[.contentType])
        let image = try uploadedImage(try form.file("image") ?? form.file("image[]"), field: "image")
        let prompt = try checkPrompt(try form.text("prompt"), param: "prompt")
        let options = try imageOptions(form)
        let side = try shortSide(options, image: image)
        let job: PipelineRequest
        if let maskBytes = try form.file("mask") {
            let mask = try uploadedImage(maskBytes, field: "mask")
            guard mask.width == image.width, mask.height == image.height else {
                throw APIError.invalid("The mask is \(mask.width)x\(mask.height) pixels but the image is \(image.width)x\(image.height); " +
                                       "send a mask of the image's size.", param: "mask")
            }
            job = .inpaint(InpaintRequest(image: image.rgb(), mask: .image(repaintMask(mask)), prompt: prompt, size: side,
                                          settings: options.settings))
        } else {
            job = .edit(EditRequest(image: image.rgb(), prompt: prompt, strength: try form.float("strength"), size: side,
                                    settings: options.settings))
        }
        try pipeline.validate(job, limits: requestLimits)
        let result = try await compute(job)
        return try await respond(result, options.format, request: request)
    }

    func variations(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let form = try MultipartForm(body: try await collect(request), contentType: request.headers[.contentType])
        let image = try uploadedImage(try form.file("image"), field: "image")
        let options = try imageOptions(form)
        let vary = PipelineRequest.vary(VaryRequest(image: image.rgb(), width: options.width, height: options.height, settings: options.settings))
        try pipeline.validate(vary, limits: requestLimits)
        let result = try await compute(vary)
        return try await respond(result, options.format, request: request)
    }

    // MARK: Reading requests

    /// The request body, refused with 413 past the upload limit (Hummingbird stops reading there).
    func collect(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: configuration.limits.maxUploadBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "The request body is larger than this server's limit of \(configuration.limits.maxUploadBytes) bytes.",
                           code: "payload_too_large")
        }
    }

    /// Decodes a JSON body; a malformed body or a field of the wrong type is a 400 naming the field.
    static func decodeJSON<T: Decodable>(_ buffer: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let DecodingError.typeMismatch(type, context) {
            guard let field = context.codingPath.first?.stringValue else {
                throw APIError.invalid("The body must be a JSON object.")
            }
            throw APIError.invalid("The field \(field) must be \(Self.describe(type)).", param: field)
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            let field = context.codingPath[0].stringValue
            throw APIError.invalid("The field \(field) has a value out of range.", param: field)
        } catch {
            throw APIError.invalid("The body is not valid JSON; send a JSON object with at least a prompt.")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        default: return "of another type"
        }
    }

    /// This server's limits as the pipeline's: its policy (images, side, steps, frames, prompt length) within
    /// the memory bound of the loaded pipeline. Every number of a request is checked against them by the library.
    var requestLimits: RequestLimits { configuration.limits.requestLimits(for: pipeline) }

    /// A prompt that is present, not blank and within the length limit (the library's check, under `param`).
    func checkPrompt(_ prompt: String?, param: String) throws -> String {
        guard let prompt, !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.invalid("The \(param) is missing or empty; give some text.", param: param)
        }
        do {
            try requestLimits.check(prompt: prompt)
        } catch let error as PipelineError {
            throw APIError.invalid(error.description, param: param)
        }
        return prompt
    }

    /// The shared options of a multipart form.
    func imageOptions(_ form: MultipartForm) throws -> ImageOptions {
        let seed = try form.text("seed").map { text -> Int64 in
            guard let v = Int64(text.trimmingCharacters(in: .whitespaces)) else {
                throw APIError.invalid("The field seed must be an integer, got '\(text.prefix(40))'.", param: "seed")
            }
            return v
        }
        return try imageOptions(n: try form.int("n"), size: try form.text("size"), responseFormat: try form.text("response_format"),
                                seed: seed, steps: try form.int("steps"), guidance: try form.float("guidance"))
    }

    /// Reads `n`, `size`, `response_format`, `seed`, `steps` and `guidance`; the numbers are checked against the
    /// limits by the library (`RequestLimits.check`), the sizes with the whole request (`Pipeline.validate`).
    func imageOptions(n: Int?, size: String?, responseFormat: String?, seed: Int64?, steps: Int?, guidance: Float?) throws -> ImageOptions {
        var width: Int?, height: Int?
        if let size, size != "auto" {
            guard let parsed = Self.parseSize(size) else {
                throw APIError.invalid("size must be WIDTHxHEIGHT in pixels, e.g. 256x256, got '\(size.prefix(40))'.", param: "size")
            }
            (width, height) = parsed
        }
        guard let format = ResponseFormat(rawValue: responseFormat ?? "url") else {
            throw APIError.invalid("response_format must be url or b64_json, got '\((responseFormat ?? "").prefix(40))'.", param: "response_format")
        }
        if let seed, seed < 0 { throw APIError.invalid("seed must be 0 or more, got \(seed).", param: "seed") }
        let settings = CommonSettings(seed: seed.map { UInt64($0) }, count: n ?? 1,
                                      sampling: SamplingOverrides(steps: steps, guidanceScale: guidance))
        try requestLimits.check(settings)
        return ImageOptions(width: width, height: height, format: format, settings: settings)
    }

    /// `WIDTHxHEIGHT` (either case of x) as numbers; nil when it is not that form. The numbers are bounded later, with
    /// the whole request.
    static func parseSize(_ size: String) -> (width: Int, height: Int)? {
        let parts = size.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let w = parts[0], let h = parts[1] else { return nil }
        return (w, h)
    }

    /// Edits keep the input's shape, so `size` must be square: its side becomes the image's shorter side (the
    /// longer side that follows is bounded with the request, `Pipeline.validate`).
    func shortSide(_ options: ImageOptions, image: PixelImage) throws -> Int? {
        if let w = options.width, let h = options.height, w != h {
            throw APIError.invalid("Edits keep the image's proportions: give a square size (its side becomes the shorter side), got \(w)x\(h).",
                                   param: "size")
        }
        return options.width
    }

    /// Decodes an uploaded PNG or JPEG; its pixel count is checked from the header, before any pixel memory.
    func uploadedImage(_ bytes: [UInt8]?, field: String) throws -> PixelImage {
        guard let bytes else { throw APIError.invalid("The \(field) file is missing; send it as a multipart file field named \(field).", param: field) }
        guard !bytes.isEmpty else { throw APIError.invalid("The \(field) file is empty.", param: field) }
        do {
            return try Self.decodeImage(bytes, what: "The uploaded \(field)", maxPixels: configuration.limits.maxInputPixels)
        } catch let error as ImageInputError {
            throw APIError.invalid(error.message, param: field, code: error.tooLarge ? "image_too_large" : nil)
        }
    }

    /// Decodes a PNG or JPEG a client sent (`what` names it in the sentence); its pixel count is checked from the
    /// header, before any pixel memory.
    static func decodeImage(_ bytes: [UInt8], what: String, maxPixels: Int) throws -> PixelImage {
        do {
            return try PixelImage.decode(bytes, source: what, limits: ImageLimits(maxSide: maxPixels, maxPixels: maxPixels)).image
        } catch let ImageError.tooLarge(_, width, height, _) {
            throw ImageInputError(message: "\(what) is \(width)x\(height) pixels, more than this server's limit of \(maxPixels) pixels; " +
                                  "send a smaller image.", tooLarge: true)
        } catch let error as ImageError {
            throw ImageInputError(message: error.description, tooLarge: false)
        }
    }

    /// A mask in Paella's convention (gray, >= 128 = repaint) from an uploaded one: with alpha, OpenAI's
    /// convention (fully transparent = repaint); without, white = repaint already.
    func repaintMask(_ mask: PixelImage) -> PixelImage {
        guard mask.layout.hasAlpha else { return mask.converted(to: .gray) }
        let alpha = mask.channels - 1
        var out = PixelImage(width: mask.width, height: mask.height, layout: .gray, repeating: 0)
        for i in 0..<mask.width * mask.height where mask.pixels[i * mask.channels + alpha] == 0 { out.pixels[i] = 255 }
        return out
    }

    // MARK: Answering

    /// Encodes the images as PNGs carrying their parameters, and answers in `format`.
    func respond(_ result: PipelineResult, _ format: ResponseFormat, request: Request) async throws -> Response {
        var items: [ImagesResponse.Item] = []
        for image in result.images {
            let png = try image.encodePNG(text: result.parameters.pngText)
            switch format {
            case .b64JSON: items.append(ImagesResponse.Item(b64JSON: Data(png).base64EncodedString()))
            case .url: items.append(ImagesResponse.Item(url: "\(baseURL(request))/api/images/\(await images.add(png)).png"))
            }
        }
        let p = result.parameters
        logger.info("images", metadata: ["mode": "\(p.mode)", "count": "\(items.count)", "seed": "\(p.seed)", "size": "\(p.width)x\(p.height)"])
        return try json(ImagesResponse(created: Int(Date().timeIntervalSince1970), data: items, parameters: p))
    }

    private static let forwardedProto = HTTPField.Name("X-Forwarded-Proto")

    /// Where the client reached us: the request's Host, else the configured address; https when a reverse proxy
    /// says the client used it.
    func baseURL(_ request: Request) -> String {
        let proto = Self.forwardedProto.flatMap { request.headers[$0] }?.lowercased()
        let scheme = proto == "https" ? "https" : "http"
        let authority = request.head.authority ?? "\(configuration.host):\(configuration.port)"
        return "\(scheme)://\(authority)"
    }
}
