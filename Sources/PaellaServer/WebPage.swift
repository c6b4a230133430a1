// The web page at `/`: plain HTML, CSS and JavaScript compiled into the binary (Page/*.swift hold them as raw string
// literals, so that the Linux binary needs no resource bundle), served with no external fetch: it works offline.
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Paella

/// The page and its two assets, rendered once per server: the HTML carries the model's name, defaults and limits
/// (so the page can show them without a request that needs the key), the assets live at content-hashed paths.
struct WebPage: Sendable {
    /// One file as served: its bytes, type and a strong validator.
    struct Asset: Sendable {
        let path: String
        let contentType: String
        let bytes: [UInt8]
        let etag: String

        init(path: String, contentType: String, text: String) {
            self.path = path
            self.contentType = contentType
            bytes = Array(text.utf8)
            etag = "\"\(WebPage.digest(bytes))\""
        }
    }

    /// What the page's script reads from the HTML (`<script type="application/json" id="config">`).
    struct Config: Encodable {
        var model: String
        var defaults: PipelineDefaults
        var limits: Limits
        /// Whether requests need `Authorization: Bearer KEY`: the page then asks for the key up front.
        var auth: Bool
        struct Limits: Encodable {
            var maxPromptLength: Int, maxImages: Int, maxSide: Int, maxSteps: Int, maxFrames: Int, maxUploadBytes: Int
            enum CodingKeys: String, CodingKey {
                case maxPromptLength = "max_prompt_length", maxImages = "max_images", maxSide = "max_side", maxSteps = "max_steps"
                case maxFrames = "max_frames", maxUploadBytes = "max_upload_bytes"
            }
        }
    }

    let index: Asset
    /// The stylesheet and the script by their path under /assets/.
    let assets: [String: Asset]

    init(config: Config) {
        let style = Asset(path: "page.\(Self.digest(Array(PageSource.css.utf8))).css", contentType: "text/css; charset=utf-8",
                          text: PageSource.css)
        let script = Asset(path: "page.\(Self.digest(Array(PageSource.script.utf8))).js", contentType: "text/javascript; charset=utf-8",
                           text: PageSource.script)
        let html = PageSource.html
            .replacingOccurrences(of: "{{style}}", with: "/assets/\(style.path)")
            .replacingOccurrences(of: "{{script}}", with: "/assets/\(script.path)")
            .replacingOccurrences(of: "{{config}}", with: Self.scriptSafeJSON(config))
        index = Asset(path: "", contentType: "text/html; charset=utf-8", text: html)
        assets = [style.path: style, script.path: script]
    }

    /// The page may load only its own assets, talk only to this server and show only images from it or from itself
    /// (`data:` previews, `blob:` uploads): the browser enforces that nothing is fetched from elsewhere.
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

    /// `asset` as a response: the page is revalidated on every load (`no-cache` with its ETag, a 304 when unchanged),
    /// the hashed assets are kept for a year, since a changed file gets a new path. A HEAD request (health checks,
    /// link checkers) gets the same headers, Content-Length included, and no body.
    func response(_ asset: Asset, request: Request) -> Response {
        var headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag,
            .cacheControl: asset.path.isEmpty ? "no-cache" : "public, max-age=31536000, immutable",
            .contentSecurityPolicy: Self.contentSecurityPolicy, .xContentTypeOptions: "nosniff", .referrerPolicy: "no-referrer",
        ]
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag }) {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentLength] = String(asset.bytes.count)
        let body = request.method == .head ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(bytes: asset.bytes))
        return Response(status: .ok, headers: headers, body: body)
    }

    /// 64-bit FNV-1a of `bytes` in hex: a cache key for the page's own files, not a security hash.
    static func digest(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return String(hash, radix: 16).leftPadded(to: 16)
    }

    /// `value` as JSON that can sit inside a `<script>` element: `<` is escaped, so no text in it (a model name)
    /// can close the element.
    static func scriptSafeJSON(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        return json.replacingOccurrences(of: "<", with: "\\u003c")
    }
}

extension PaellaServer {
    /// The page's config from this server's model and settings.
    var pageConfig: WebPage.Config {
        let l = configuration.limits
        return WebPage.Config(model: pipeline.modelName, defaults: pipeline.defaults,
                              limits: .init(maxPromptLength: l.maxPromptLength, maxImages: l.maxImages, maxSide: l.maxSide,
                                            maxSteps: l.maxSteps, maxFrames: l.maxFrames, maxUploadBytes: l.maxUploadBytes),
                              auth: configuration.apiKey != nil)
    }

    /// GET (and HEAD) / and /assets/{name}: the page, open without the key (it is where the key is typed in).
    func addPageRoutes(to router: Router<BasicRequestContext>) {
        let page = WebPage(config: pageConfig)
        for method in [HTTPRequest.Method.get, .head] {
            router.on("/", method: method) { request, _ in page.response(page.index, request: request) }
            router.on("/assets/{name}", method: method) { request, context in
                guard let name = context.parameters.get("name"), let asset = page.assets[name] else {
                    throw APIError(.notFound, "There is no such asset; load the page at / again.", code: "not_found")
                }
                return page.response(asset, request: request)
            }
        }
    }
}

extension HTTPField.Name {
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
