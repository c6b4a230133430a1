import Foundation
import HTTPTypes
import MultipartKit
import NIOCore

/// The parts of a `multipart/form-data` body by field name: what OpenAI's edits and variations endpoints take
/// (an image file, an optional mask file, text fields).
struct MultipartForm {
    /// Each field's bytes; a repeated field keeps its first value.
    private(set) var parts: [String: [UInt8]] = [:]
    /// Fields given more than once: a 400 when read, except `name[]` files (OpenAI's several images), which keep
    /// their first.
    private(set) var repeated: Set<String> = []

    /// Parses `body`, whose `Content-Type` header was `contentType`.
    init(body: ByteBuffer, contentType: String?) throws {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data"),
              let boundary = Self.parameter("boundary", in: contentType), !boundary.isEmpty else {
            throw APIError(.unsupportedMediaType, "This endpoint takes multipart/form-data (an image file and text fields), with a boundary.")
        }
        guard Self.headerNamesAreASCII(Array(body.readableBytesView), boundary: Array(boundary.utf8)) else {
            throw APIError.invalid("The multipart body has a part header whose name is not ASCII; send it as multipart/form-data.")
        }
        let parser = MultipartParser(boundary: boundary)
        var name: String?
        var bytes: [UInt8] = []
        var collected: [String: [UInt8]] = [:]
        var repeated: Set<String> = []
        parser.onHeader = { field, value in
            if field.lowercased() == "content-disposition" { name = Self.parameter("name", in: value) }
        }
        parser.onBody = { buffer in bytes += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        parser.onPartComplete = {
            if let n = name {
                if collected[n] == nil { collected[n] = bytes } else { repeated.insert(n) }
            }
            name = nil
            bytes = []
        }
        do {
            try parser.execute(body)
        } catch {
            throw APIError.invalid("The multipart body could not be read (\(error)); send it as multipart/form-data.")
        }
        parts = collected
        self.repeated = repeated
    }

    /// A text field, nil when absent; a field that is not UTF-8 is a 400 naming it.
    func text(_ field: String) throws -> String? {
        guard let bytes = try value(field) else { return nil }
        guard let s = String(bytes: bytes, encoding: .utf8) else { throw APIError.invalid("The field \(field) is not UTF-8 text.", param: field) }
        return s
    }

    /// An integer field, nil when absent.
    func int(_ field: String) throws -> Int? {
        guard let s = try text(field) else { return nil }
        guard let v = Int(s.trimmingCharacters(in: .whitespaces)) else {
            throw APIError.invalid("The field \(field) must be an integer, got '\(s.prefix(40))'.", param: field)
        }
        return v
    }

    /// A number field, nil when absent.
    func float(_ field: String) throws -> Float? {
        guard let s = try text(field) else { return nil }
        guard let v = Float(s.trimmingCharacters(in: .whitespaces)), v.isFinite else {
            throw APIError.invalid("The field \(field) must be a number, got '\(s.prefix(40))'.", param: field)
        }
        return v
    }

    /// A file field's bytes, nil when absent.
    func file(_ field: String) throws -> [UInt8]? { field.hasSuffix("[]") ? parts[field] : try value(field) }

    /// A field's bytes, nil when absent; a field given more than once is a 400 naming it.
    private func value(_ field: String) throws -> [UInt8]? {
        guard !repeated.contains(field) else {
            throw APIError.invalid("The field \(field) is given more than once; send it once.", param: field)
        }
        return parts[field]
    }

    /// Whether every part header's name (the bytes before its colon) is ASCII. MultipartKit's parser looks header
    /// name bytes up in a 128-entry table and traps on any byte above 127, so such a body must be refused before it
    /// is parsed. Every `--boundary` is taken as a delimiter, even inside a part, which can only refuse more.
    static func headerNamesAreASCII(_ body: [UInt8], boundary: [UInt8]) -> Bool {
        let delimiter = Array("--".utf8) + boundary
        let crlf: [UInt8] = [13, 10]
        var from = 0
        while let start = find(delimiter, in: body, from: from) {
            // The delimiter's own line, then header lines until a blank one.
            guard var line = find(crlf, in: body, from: start + delimiter.count).map({ $0 + 2 }) else { return true }
            while line < body.count {
                let end = find(crlf, in: body, from: line) ?? body.count
                if end == line { break }
                var i = line
                while i < end && body[i] != UInt8(ascii: ":") {
                    if body[i] > 127 { return false }
                    i += 1
                }
                line = end + 2
            }
            from = start + delimiter.count
        }
        return true
    }

    /// The first index at or after `from` where `needle` starts in `haystack`.
    private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        var i = from
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0] && haystack[i..<i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// The value of `key=value` (quoted or not) in a header value such as `form-data; name="image"`.
    static func parameter(_ key: String, in header: String) -> String? {
        for piece in header.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == key else { continue }
            var value = pair[1].trimmingCharacters(in: .whitespaces)
            if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            return value
        }
        return nil
    }
}
