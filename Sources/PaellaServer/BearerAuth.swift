import Foundation
import HTTPTypes
import Hummingbird

/// Requires `Authorization: Bearer <key>` (or HTTP Basic with the key as password) on every request but the public
/// ones: health checks, which a load balancer probes without credentials, stored images, whose random ids are their
/// own permission, and the web page with its assets, where the key is typed in (the page's own requests carry it).
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: [UInt8]

    init(key: String) { self.key = Array(key.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/" || path == "/healthz" || path.hasPrefix("/api/images/") || path.hasPrefix("/assets/") { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "This server needs an API key: send it as 'Authorization: Bearer KEY'.", code: "invalid_api_key")
        }
        guard let presented = Self.presentedKey(header), constantTimeEquals(presented, key) else {
            throw APIError(.unauthorized, "The API key is wrong; send the server's key as 'Authorization: Bearer KEY' (or as the password of " +
                           "HTTP Basic credentials).", code: "invalid_api_key")
        }
        return try await next(request, context)
    }

    /// The key an `Authorization` header carries: a bearer token, or the password of HTTP Basic credentials
    /// (any user name), which is how A1111's clients (Open WebUI, SillyTavern) send their `user:password`.
    static func presentedKey(_ header: String) -> [UInt8]? {
        guard let space = header.firstIndex(of: " ") else { return nil }
        let scheme = header[..<space].lowercased(), credentials = header[space...].dropFirst()
        switch scheme {
        case "bearer": return credentials.isEmpty ? nil : Array(credentials.utf8)
        case "basic":
            guard let decoded = Data(base64Encoded: String(credentials)), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            return Array(decoded[decoded.index(after: colon)...])
        default: return nil
        }
    }
}

/// Whether `a` equals `b`, in a time that depends only on their lengths: every byte is compared whatever the
/// first difference, so response timing does not tell an attacker how much of a guessed key was right.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference: UInt8 = 0
    // Compare over the longer length, reading a zero past the end of the shorter one, so a short guess takes as
    // long as a right-length one.
    for i in 0..<max(a.count, b.count) {
        difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return difference == 0 && a.count == b.count
}
