import HTTPTypes
import Hummingbird

/// Requires `Authorization: Bearer <key>` on every request but the public ones: health checks, which a load
/// balancer probes without credentials, stored images, whose random ids are their own permission, and the web page
/// with its assets, where the key is typed in (the page's own requests carry it).
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: [UInt8]

    init(key: String) { self.key = Array(key.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/" || path == "/healthz" || path.hasPrefix("/api/images/") || path.hasPrefix("/assets/") { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "This server needs an API key: send it as 'Authorization: Bearer KEY'.", code: "invalid_api_key")
        }
        let scheme = "bearer "
        guard header.count > scheme.count, header.prefix(scheme.count).lowercased() == scheme,
              constantTimeEquals(Array(header.dropFirst(scheme.count).utf8), key) else {
            throw APIError(.unauthorized, "The API key is wrong; send the server's key as 'Authorization: Bearer KEY'.", code: "invalid_api_key")
        }
        return try await next(request, context)
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
