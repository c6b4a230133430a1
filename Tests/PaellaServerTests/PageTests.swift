import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Paella
@testable import PaellaServer
import Testing

/// The web page at `/` and its assets. What the page does in a browser is checked by scripts/check-server.sh
/// (headless Chromium against the real binary); these tests check what the server sends and that the three files
/// agree with each other.
@Suite("Server: web page")
struct PageTests {
    let server: PaellaServer

    init() throws { server = try Serve.server() }

    /// The asset paths the page links, in the order they appear.
    static func assetLinks(_ html: String) -> [String] {
        html.components(separatedBy: "\"/assets/").dropFirst().compactMap { $0.split(separator: "\"").first.map { "/assets/\($0)" } }
    }

    /// The JSON the page's script reads its settings from.
    static func config(_ html: String) throws -> [String: Any] {
        let start = try #require(html.range(of: "<script type=\"application/json\" id=\"config\">"))
        let end = try #require(html.range(of: "</script>", range: start.upperBound..<html.endIndex))
        return try #require(try JSONSerialization.jsonObject(with: Data(html[start.upperBound..<end.lowerBound].utf8)) as? [String: Any])
    }

    @Test func theRootServesThePageWithItsConfig() async throws {
        let server = server
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            #expect(response.headers[.cacheControl] == "no-cache")
            #expect(response.headers[.xContentTypeOptions] == "nosniff")
            #expect(response.headers[.contentSecurityPolicy]?.contains("connect-src 'self'") == true)
            let html = String(buffer: response.body)
            #expect(html.hasPrefix("<!doctype html>") && html.contains("name=\"viewport\""))
            let config = try Self.config(html)
            #expect(config["model"] as? String == server.pipeline.modelName)
            #expect((config["defaults"] as? [String: Any])?["image_size"] as? Int == server.pipeline.defaults.imageSize)
            #expect((config["limits"] as? [String: Any])?["max_images"] as? Int == server.configuration.limits.maxImages)
            #expect(config["auth"] as? Bool == false)
        }
    }

    @Test func theLinkedAssetsLoadWithTheirTypesAndAreCachedForAYear() async throws {
        try await Serve.test(server) { client in
            let html = String(buffer: try await client.execute(uri: "/", method: .get).body)
            let links = Self.assetLinks(html)
            #expect(links.count == 2, "\(links)")
            let expected = [("css", "text/css; charset=utf-8", PageSource.css), ("js", "text/javascript; charset=utf-8", PageSource.script)]
            for (ext, type, source) in expected {
                let link = try #require(links.first { $0.hasSuffix(".\(ext)") })
                let response = try await client.execute(uri: link, method: .get)
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == type)
                #expect(response.headers[.cacheControl] == "public, max-age=31536000, immutable")
                // The path carries the content's hash, so a changed file is a new path and the year of caching is safe.
                #expect(link.contains(WebPage.digest(Array(source.utf8))))
                #expect(String(buffer: response.body) == source)
            }
        }
    }

    @Test func anUnchangedPageIsA304() async throws {
        try await Serve.test(server) { client in
            let first = try await client.execute(uri: "/", method: .get)
            let etag = try #require(first.headers[.eTag])
            let again = try await client.execute(uri: "/", method: .get, headers: [.ifNoneMatch: etag])
            #expect(again.status == .notModified && again.body.readableBytes == 0)
            #expect(again.headers[.eTag] == etag)
            let other = try await client.execute(uri: "/", method: .get, headers: [.ifNoneMatch: "\"0000\""])
            #expect(other.status == .ok)
        }
    }

    @Test func headGivesThePagesHeadersWithoutItsBody() async throws {
        try await Serve.test(server) { client in
            let get = try await client.execute(uri: "/", method: .get)
            let head = try await client.execute(uri: "/", method: .head)
            #expect(head.status == .ok && head.body.readableBytes == 0)
            #expect(head.headers[.contentLength] == String(get.body.readableBytes))
            #expect(head.headers[.eTag] == get.headers[.eTag] && head.headers[.contentType] == get.headers[.contentType])
            let asset = try #require(Self.assetLinks(String(buffer: get.body)).first)
            #expect(try await client.execute(uri: asset, method: .head).status == .ok)
        }
    }

    @Test func anUnknownAssetIsA404InOpenAIShape() async throws {
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/assets/page.0123456789abcdef.js", method: .get)
            #expect(response.status == .notFound)
            #expect(try Serve.error(response)["code"] as? String == "not_found")
        }
    }

    /// The page is where the key is typed in, so it and its assets load without one; the API behind it does not.
    @Test func withAKeyThePageLoadsButTheAPINeedsTheKey() async throws {
        try await Serve.test(try Serve.server(ServerConfiguration(apiKey: "page-key"))) { client in
            let page = try await client.execute(uri: "/", method: .get)
            #expect(page.status == .ok)
            let html = String(buffer: page.body)
            #expect(try Self.config(html)["auth"] as? Bool == true)
            for link in Self.assetLinks(html) {
                #expect(try await client.execute(uri: link, method: .get).status == .ok, "\(link)")
            }
            let job = try await client.execute(uri: "/api/jobs", method: .post, headers: Serve.jsonHeaders, body: try Serve.json(["prompt": "a cat"]))
            #expect(job.status == .unauthorized)
            let events = try await client.execute(uri: "/api/jobs/some-id/events", method: .get)
            #expect(events.status == .unauthorized)
        }
    }

    /// A model name is shown by the page; whatever it holds, it cannot end the config's `<script>` element.
    @Test func theConfigCannotCloseItsScriptElement() throws {
        var config = server.pageConfig
        config.model = "</script><script>alert(1)</script>"
        let html = String(decoding: WebPage(config: config).index.bytes, as: UTF8.self)
        #expect(html.components(separatedBy: "</script>").count == PageSource.html.components(separatedBy: "</script>").count)
        #expect(try Self.config(html)["model"] as? String == config.model)
    }

    /// Every element the script looks up by id is in the HTML: a renamed id would break the page silently.
    @Test func everyIdTheScriptUsesIsInThePage() throws {
        let ids = Set(PageSource.html.components(separatedBy: " id=\"").dropFirst().compactMap { $0.split(separator: "\"").first.map(String.init) })
        let used = PageSource.script.components(separatedBy: "$('").dropFirst().compactMap { $0.split(separator: "'").first.map(String.init) }
        #expect(used.count > 20)
        for id in used { #expect(ids.contains(id), "page.js uses #\(id), which the HTML does not have") }
        // Ids built from a side name.
        for side in ["left", "right", "top", "bottom"] { #expect(ids.contains("extend-\(side)")) }
        // Every mode tab is a mode the jobs API takes and the script knows.
        let tabs = PageSource.html.components(separatedBy: "data-mode=\"").dropFirst().compactMap { $0.split(separator: "\"").first }
        #expect(Set(tabs) == ["generate", "inpaint", "outpaint", "edit", "vary", "interpolate"])
        for mode in tabs { #expect(PageSource.script.contains("  \(mode): { run: ")) }
    }

    /// The page works offline: none of its files refers to another host.
    @Test func thePageFetchesNothingFromElsewhere() {
        for (name, text) in [("html", PageSource.html), ("css", PageSource.css), ("js", PageSource.script)] {
            #expect(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"), "page.\(name) names another host")
            #expect(!text.contains("@import"), "page.\(name) imports another file")
        }
    }
}
