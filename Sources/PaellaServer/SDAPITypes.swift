// The data of AUTOMATIC1111's web UI API (`/sdapi/v1`) as its clients see it: request bodies read the way its
// pydantic models read them (unknown fields ignored, numbers given as strings accepted, every wrong type reported
// at once), errors in FastAPI's shape, and JSON values built for its free-form answers (`parameters`, `info`).
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Paella
import PaellaIO

/// An error in the shape FastAPI gives it: `{"detail": "sentence"}`, or for a request that does not validate,
/// 422 with `{"detail": [{"loc": ["body", field], "msg": ..., "type": ...}]}` (A1111's clients show `msg`).
struct FastAPIError: Error, Equatable {
    struct Item: Equatable {
        /// Where the problem is: "body", then the field, then an index into a list.
        var loc: [String]
        var msg: String
        /// pydantic's error type, e.g. `type_error.integer`, `value_error`.
        var type: String
    }

    var status: HTTPResponse.Status
    /// Validation problems; empty for an error that is one sentence (`message`).
    var items: [Item]
    var message: String
    var retryAfter: Int?

    /// 422 for the request fields `items`.
    static func invalid(_ items: [Item]) -> FastAPIError {
        FastAPIError(status: .unprocessableContent, items: items, message: items.first?.msg ?? "", retryAfter: nil)
    }

    /// 422 for one field (nil: the body as a whole), with the library's (or our) one sentence.
    static func invalid(_ field: String?, _ message: String) -> FastAPIError {
        invalid([Item(loc: ["body"] + (field.map { [$0] } ?? []), msg: message, type: "value_error")])
    }

    /// The sdapi name of each field the library bounds.
    private static let field: [RequestField: String] = [
        .count: "batch_size", .size: "width", .steps: "steps", .guidance: "cfg_scale", .strength: "denoising_strength",
        .prompt: "prompt", .negativePrompt: "negative_prompt",
    ]

    /// The sdapi names of the fields the shared helpers name the OpenAI way.
    private static let openAIField = ["n": "batch_size", "size": "width", "strength": "denoising_strength", "guidance": "cfg_scale",
                                      "image": "init_images"]

    /// What an sdapi client sees for any error a handler (or the authentication before it) throws: the library's
    /// refusals and our 400s as 422 naming the sdapi field, every other status with its sentence.
    static func from(_ error: any Error) -> FastAPIError {
        switch error {
        case let e as FastAPIError: return e
        case let e as PipelineError:
            switch e {
            case .outOfRange(let f, _): return invalid(field[f] ?? f.rawValue, e.description)
            case .invalidSize: return invalid("width", e.description)
            case .emptyPrompt: return invalid("prompt", e.description)
            case .maskSizeMismatch, .emptyMask: return invalid("mask", e.description)
            default: return from(APIError.from(e))
            }
        default:
            let api = APIError.from(error)
            if api.status == .badRequest {
                return invalid(api.param.map { openAIField[$0] ?? $0 }, api.message)
            }
            return FastAPIError(status: api.status, items: [], message: api.message, retryAfter: api.retryAfter)
        }
    }

    func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        let detail: JSONValue = items.isEmpty
            ? .string(message)
            : .array(items.map { .object([("loc", .array($0.loc.map { .string($0) })), ("msg", .string($0.msg)), ("type", .string($0.type))]) })
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONValue.object([("detail", detail)]).encoded)))
    }
}

/// The JSON body of an sdapi request, read field by field with pydantic's leniency: a number may come as a
/// string, an integral float counts as an integer, null is the default. Each wrong type is noted, and `check`
/// reports them all at once, as FastAPI does.
struct SDAPIBody {
    private let fields: [String: JSONValue]
    /// The members as sent, in order: `parameters` echoes them.
    let members: [(key: String, value: JSONValue)]
    private(set) var problems: [FastAPIError.Item] = []

    init(_ buffer: ByteBuffer) throws {
        let value: JSONValue
        do {
            value = try buffer.withUnsafeReadableBytes { try JSONParser.parse($0) }
        } catch let failure as JSONParser.Failure {
            throw FastAPIError.invalid([.init(loc: ["body"], msg: "The body is not valid JSON (\(failure.reason)); send a JSON object.",
                                              type: "value_error.jsondecode")])
        }
        guard case .object(let members) = value else {
            throw FastAPIError.invalid([.init(loc: ["body"], msg: "The body must be a JSON object.", type: "type_error.dict")])
        }
        self.members = members
        // A key sent twice counts once, the last one, as Python's json module reads it.
        fields = Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    /// Throws every problem noted so far as one 422.
    func check() throws {
        if !problems.isEmpty { throw FastAPIError.invalid(problems) }
    }

    private mutating func problem(_ key: String, _ msg: String, _ type: String, index: Int? = nil) {
        problems.append(.init(loc: ["body", key] + (index.map { [String($0)] } ?? []), msg: msg, type: type))
    }

    private func present(_ key: String) -> JSONValue? {
        guard let value = fields[key] else { return nil }
        if case .null = value { return nil }
        return value
    }

    mutating func int(_ key: String) -> Int? {
        guard let value = present(key) else { return nil }
        switch value {
        case .number(let text):
            if let exact = Int(text) { return exact }
            // 20.0 is an integer to pydantic; 20.5 is not.
            if let real = Double(text), real.rounded() == real, let exact = Int(exactly: real) { return exact }
        case .string(let text):
            if let exact = Int(text.trimmingCharacters(in: .whitespaces)) { return exact }
        default: break
        }
        problem(key, "value is not a valid integer", "type_error.integer")
        return nil
    }

    mutating func float(_ key: String) -> Float? {
        guard let value = present(key) else { return nil }
        switch value {
        case .number(let t): if let v = Float(t), v.isFinite { return v }
        case .string(let s): if let v = Float(s.trimmingCharacters(in: .whitespaces)), v.isFinite { return v }
        default: break
        }
        problem(key, "value is not a valid float", "type_error.float")
        return nil
    }

    mutating func string(_ key: String) -> String? {
        guard let value = present(key) else { return nil }
        guard case .string(let s) = value else {
            problem(key, "str type expected", "type_error.str")
            return nil
        }
        return s
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let value = present(key) else { return nil }
        if let b = Self.boolean(value) { return b }
        problem(key, "value could not be parsed to a boolean", "type_error.bool")
        return nil
    }

    /// What pydantic reads as a boolean: true, false, 0, 1, and those words, yes, no, on and off as strings.
    static func boolean(_ value: JSONValue) -> Bool? {
        switch value {
        case .bool(let b): return b
        case .number("0"): return false
        case .number("1"): return true
        case .string(let s):
            switch s.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: return nil
            }
        default: return nil
        }
    }

    mutating func strings(_ key: String) -> [String]? {
        guard let value = present(key) else { return nil }
        guard case .array(let items) = value else {
            problem(key, "value is not a valid list", "type_error.list")
            return nil
        }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                problem(key, "str type expected", "type_error.str", index: i)
                return nil
            }
            out.append(s)
        }
        return out
    }
}

extension JSONValue {
    static func int(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }
    /// Swift's shortest text of a finite float (7.0, 0.1), which is JSON.
    static func float(_ value: Float) -> JSONValue { value.isFinite ? .number(String(describing: value)) : .null }
    static func strings(_ values: [String]) -> JSONValue { .array(values.map { .string($0) }) }

    /// The value of `key` in an object.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    /// An object with `changes` set: existing members keep their place, new ones are added at the end.
    func merging(_ changes: [(key: String, value: JSONValue)]) -> JSONValue {
        guard case .object(var members) = self else { return self }
        for change in changes {
            if let i = members.firstIndex(where: { $0.key == change.key }) { members[i].value = change.value } else { members.append(change) }
        }
        return .object(members)
    }

    /// The JSON text, keys sorted, slashes unescaped.
    var encoded: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(EncodableJSON(self))) ?? Data("null".utf8)
    }

    var text: String { String(decoding: encoded, as: UTF8.self) }
}

/// Writes a `JSONValue` through an `Encoder` (numbers keep their value: integers exactly, others as doubles).
struct EncodableJSON: Encodable {
    let value: JSONValue
    init(_ value: JSONValue) { self.value = value }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        switch value {
        case .object(let members):
            var container = encoder.container(keyedBy: Key.self)
            for member in members { try container.encode(EncodableJSON(member.value), forKey: Key(stringValue: member.key)) }
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(EncodableJSON(item)) }
        default:
            var container = encoder.singleValueContainer()
            switch value {
            case .string(let s): try container.encode(s)
            case .bool(let b): try container.encode(b)
            case .null: try container.encodeNil()
            case .number(let text):
                if let i = Int64(text) { try container.encode(i) } else if let u = UInt64(text) { try container.encode(u) } else {
                    try container.encode(Double(text) ?? 0)
                }
            case .object, .array: break
            }
        }
    }
}
