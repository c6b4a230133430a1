import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Paella
import PaellaIO

/// An error a client sees: an HTTP status and OpenAI's error body,
/// `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`, so that OpenAI's client libraries raise
/// their usual exception (they pick it by status) with our message in it.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible, Equatable {
    public var status: HTTPResponse.Status
    /// One sentence saying what is wrong and what to do.
    public var message: String
    /// OpenAI's error class: `invalid_request_error`, `rate_limit_error`, `server_error`...
    public var type: String
    /// The request field at fault, when there is one.
    public var param: String?
    public var code: String?
    /// `Retry-After` seconds, for 429 and 503.
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil,
                code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { message }

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The JSON body.
    var body: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(Body(error: Detail(message: message, type: type, param: param, code: code)))) ?? Data()
    }

    struct Body: Codable, Equatable {
        var error: Detail
    }

    /// `param` and `code` are written as `null` when absent, as OpenAI does.
    struct Detail: Codable, Equatable {
        var message: String, type: String, param: String?, code: String?
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
    }
}

/// The request parameter that carries each field the library bounds.
private let parameter: [RequestField: String] = [
    .count: "n", .typicalMass: "typical_mass", .renoiseSteps: "renoise_steps", .negativePrompt: "negative_prompt",
]

extension APIError {
    /// What a client sees for any error a handler throws: our own errors as they are, the library's one-sentence
    /// errors as 400 (they are all about the request), anything else as a 500 that does not leak internals.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as PipelineError:
            switch e {
            case .invalidSize: return .invalid(e.description, param: "size")
            case .emptyPrompt: return .invalid(e.description, param: "prompt")
            case .maskSizeMismatch, .emptyMask: return .invalid(e.description, param: "mask")
            case .noVisionTower: return APIError(.badRequest, "This server's model has no CLIP vision tower, which variations need.",
                                                 code: "model_not_supported")
            case .invalidOption, .incompatibleModels: return .invalid(e.description)
            case .outOfRange(let field, _): return .invalid(e.description, param: parameter[field] ?? field.rawValue)
            case .nonFiniteModelOutput:  // not the request's fault: the operator's model folder is damaged
                return APIError(.internalServerError, "The server's model computed values that are not finite numbers; its "
                                + "operator should check the model folder with `paella info --model DIR --verify`.",
                                type: "server_error", code: "model_damaged")
            }
        case let e as ImageError: return .invalid(e.description)
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "The request body is larger than this server accepts.", code: "payload_too_large")
        case let e as HTTPError:
            switch e.status {
            case .notFound: return APIError(.notFound, "There is no such endpoint; see GET /v1/models and the README for what this server offers.",
                                            code: "not_found")
            case .methodNotAllowed: return APIError(.methodNotAllowed, "This endpoint does not take that HTTP method.")
            default: return APIError(e.status, e.body ?? e.status.reasonPhrase + ".", type: e.status.code >= 500 ? "server_error" : "invalid_request_error")
            }
        case is CancellationError:
            return APIError(.serviceUnavailable, "The request was cancelled because the server is shutting down; try again shortly.",
                            type: "server_error", code: "shutting_down")
        default:
            return APIError(.internalServerError, "The server failed to handle this request; its log says why.", type: "server_error")
        }
    }
}

/// Turns every error thrown below it (routing, authentication, handlers) into OpenAI's error shape, and logs
/// server-side failures with their cause (the client only sees a generic sentence for those).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let api = APIError.from(error)
            if api.status == .internalServerError && !(error is APIError) && !(error is FastAPIError) {
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            }
            // A1111's clients read FastAPI's error shape.
            if request.uri.path.hasPrefix("/sdapi/") { return FastAPIError.from(error).response() }
            return try api.response(from: request, context: context)
        }
    }
}
