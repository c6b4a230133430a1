import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Paella
import PaellaIO
@testable import PaellaServer
import PaellaTestSupport
import ServiceLifecycle
import Testing

/// Test helpers: a server over the tiny model folder, requests, and the OpenAI shapes of answers.
enum Serve {
    static func server(_ configuration: ServerConfiguration = ServerConfiguration()) throws -> PaellaServer {
        var logger = Logger(label: "paella.serve.test")
        logger.logLevel = .warning
        return try PaellaServer(pipeline: try TinyPipeline.get(), configuration: configuration, logger: logger)
    }

    /// Runs `body` against `server`'s routes through Hummingbird's router test client (no socket).
    static func test(_ server: PaellaServer, _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await server.application().test(.router, body)
    }

    static func json(_ object: [String: any Sendable]) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
    }

    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    /// A multipart/form-data body of text fields and files.
    static func multipart(fields: [String: String] = [:], files: [String: [UInt8]] = [:]) -> (HTTPFields, ByteBuffer) {
        let boundary = "paella-test-boundary-7d1f"
        var body: [UInt8] = []
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(name).png\"\r\nContent-Type: image/png\r\n\r\n".utf8)
            body += bytes + Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ([.contentType: "multipart/form-data; boundary=\(boundary)"], ByteBuffer(bytes: body))
    }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))
        return try #require(value as? [String: Any], "not a JSON object: \(String(buffer: response.body))")
    }

    /// The `error` object of an OpenAI error answer, after checking its shape: all four keys present.
    static func error(_ response: TestResponse) throws -> [String: Any] {
        #expect(response.headers[.contentType] == "application/json")
        let error = try #require(try object(response)["error"] as? [String: Any])
        #expect(Set(error.keys) == ["message", "type", "param", "code"])
        #expect((error["message"] as? String)?.isEmpty == false)
        return error
    }

    /// The images of a `b64_json` answer, decoded.
    static func images(_ response: TestResponse) throws -> [PixelImage] {
        let data = try #require(try object(response)["data"] as? [[String: Any]])
        return try data.map { item in
            let b64 = try #require(item["b64_json"] as? String)
            return try PixelImage.decode(Array(try #require(Data(base64Encoded: b64))), source: "answer").image
        }
    }

    static func parameters(_ response: TestResponse) throws -> [String: Any] {
        try #require(try object(response)["parameters"] as? [String: Any])
    }

    static func png(_ image: PixelImage) throws -> [UInt8] { try image.encodePNG() }

    /// A PNG whose header claims `width` x `height` followed by a first, tiny IDAT chunk: decoding it would need
    /// width x height pixels of memory, so only a check of the header can refuse it cheaply.
    static func hostilePNG(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be(UInt32(data.count)) + body + be(crc32(body))
        }
        let header = be(width) + be(height) + [8, 2, 0, 0, 0]   // 8-bit RGB, deflate, no filter method, no interlace
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00])
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

@Suite("Server: OpenAI images API")
struct ImagesAPITests {
    let server: PaellaServer
    var side: Int { server.pipeline.defaults.imageSize }

    init() throws { server = try Serve.server() }

    @Test func generationsAnswersBase64PNGsWithTheirParameters() async throws {
        let side = side
        try await Serve.test(server) { client in
            let body = try Serve.json(["prompt": "a red circle", "n": 2, "response_format": "b64_json", "seed": 7, "steps": 2,
                                       "guidance": 1.5, "negative_prompt": "blue", "size": "\(2 * side)x\(side)", "model": "dall-e-2"])
            let first = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders, body: body)
            #expect(first.status == .ok)
            let images = try Serve.images(first)
            #expect(images.count == 2 && images.allSatisfy { $0.width == 2 * side && $0.height == side })
            let p = try Serve.parameters(first)
            #expect(p["seed"] as? Int == 7 && p["steps"] as? Int == 2 && p["negativePrompt"] as? String == "blue")
            #expect(p["mode"] as? String == "generate" && (p["guidanceScale"] as? Double) == 1.5)
            #expect(try Serve.object(first)["created"] is Int)
            // The same seed gives the same images: the server adds nothing random of its own.
            let again = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders, body: body)
            #expect(try Serve.images(again) == images)
        }
    }

    @Test func generationsAnswersURLsThatServeThePNG() async throws {
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(["prompt": "a blue square"]))
            #expect(response.status == .ok)
            let data = try #require(try Serve.object(response)["data"] as? [[String: Any]])
            let url = try #require(data.first?["url"] as? String)
            #expect(data.count == 1 && data[0]["b64_json"] == nil)
            let path = try #require(url.range(of: "/api/images/")).lowerBound
            let image = try await client.execute(uri: String(url[path...]), method: .get)
            #expect(image.status == .ok && image.headers[.contentType] == "image/png")
            let decoded = try PixelImage.decode(Array(image.body.readableBytesView), source: "served")
            #expect(decoded.text["parameters"]?.contains("a blue square") == true)

            let missing = try await client.execute(uri: "/api/images/00000000-0000-0000-0000-000000000000.png", method: .get)
            #expect(missing.status == .notFound)
            #expect(try Serve.error(missing)["code"] as? String == "not_found")
        }
    }

    /// Every bad field is a 400 in OpenAI's shape naming the field, before any job is queued.
    @Test(arguments: [
        (["n": 1] as [String: any Sendable], "prompt"),
        (["prompt": "   "], "prompt"),
        (["prompt": String(repeating: "a", count: 1001)], "prompt"),
        (["prompt": "a cat", "negative_prompt": ""], "negative_prompt"),
        (["prompt": "a cat", "n": 0], "n"),
        (["prompt": "a cat", "n": 5], "n"),
        (["prompt": "a cat", "n": "two"], "n"),
        (["prompt": "a cat", "size": "big"], "size"),
        (["prompt": "a cat", "size": "2048x2048"], "size"),
        (["prompt": "a cat", "size": "13x13"], "size"),
        (["prompt": "a cat", "response_format": "gif"], "response_format"),
        (["prompt": "a cat", "steps": 0], "steps"),
        (["prompt": "a cat", "steps": 101], "steps"),
        (["prompt": "a cat", "seed": -1], "seed"),
        (["prompt": "a cat", "guidance": "high"], "guidance"),
        (["prompt": 42], "prompt"),
    ])
    func generationsRefusesBadFields(fields: [String: any Sendable], param: String) async throws {
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(fields))
            #expect(response.status == .badRequest)
            let error = try Serve.error(response)
            #expect(error["param"] as? String == param)
            #expect(error["type"] as? String == "invalid_request_error")
        }
    }

    @Test func generationsRefusesABodyThatIsNotAJSONObject() async throws {
        try await Serve.test(server) { client in
            for body in ["{\"prompt\": ", "[1, 2]", ""] {
                let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                        body: ByteBuffer(string: body))
                #expect(response.status == .badRequest)
                #expect(try Serve.error(response)["param"] is NSNull)
            }
        }
    }

    @Test func editsWithAMaskInpaintAndWithoutEditTheStructure() async throws {
        let side = side
        let picture = TinyPipeline.picture(width: side + 8, height: side)
        // OpenAI's mask: transparent where to repaint (the left half here), opaque elsewhere.
        var mask = PixelImage(width: picture.width, height: picture.height, layout: .rgba, repeating: 255)
        for y in 0..<mask.height { for x in 0..<mask.width / 2 { mask.pixels[(y * mask.width + x) * 4 + 3] = 0 } }
        let (headers, body) = Serve.multipart(fields: ["prompt": "a green star", "response_format": "b64_json", "seed": "3"],
                                              files: ["image": try Serve.png(picture), "mask": try Serve.png(mask)])
        let (plainHeaders, plainBody) = Serve.multipart(fields: ["prompt": "a green star", "response_format": "b64_json", "strength": "0.5"],
                                                        files: ["image": try Serve.png(picture)])
        try await Serve.test(server) { client in
            let inpainted = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: body)
            #expect(inpainted.status == .ok)
            #expect(try Serve.parameters(inpainted)["mode"] as? String == "inpaint")
            #expect(try Serve.images(inpainted).first?.height == side)

            let edited = try await client.execute(uri: "/v1/images/edits", method: .post, headers: plainHeaders, body: plainBody)
            #expect(edited.status == .ok)
            let p = try Serve.parameters(edited)
            #expect(p["mode"] as? String == "edit" && p["strength"] as? Double == 0.5)
        }
    }

    @Test func editsRefuseBadUploads() async throws {
        let side = side
        let picture = try Serve.png(TinyPipeline.picture(width: side, height: side))
        let smallMask = try Serve.png(PixelImage(width: 8, height: 8, layout: .gray, repeating: 255))
        let cases: [(fields: [String: String], files: [String: [UInt8]], param: String)] = [
            (["prompt": "a cat"], [:], "image"),
            (["prompt": "a cat"], ["image": []], "image"),
            (["prompt": "a cat"], ["image": Array("GIF89a not really".utf8)], "image"),
            (["prompt": "a cat"], ["image": Array(picture.prefix(40))], "image"),
            ([:], ["image": picture], "prompt"),
            (["prompt": "a cat"], ["image": picture, "mask": smallMask], "mask"),
            (["prompt": "a cat", "size": "\(side)x\(2 * side)"], ["image": picture], "size"),
            (["prompt": "a cat", "n": "many"], ["image": picture], "n"),
            (["prompt": "a cat", "strength": "0"], ["image": picture], "strength"),
        ]
        try await Serve.test(server) { client in
            // A field given twice (schemathesis sent n as an array, which multipart writes as a repeated field).
            let (headers, body) = Serve.multipart(fields: ["prompt": "a cat"], files: ["image": picture])
            let boundary = String(headers[.contentType]!.split(separator: "=").last!)
            var twice = body
            twice.moveWriterIndex(to: twice.writerIndex - "--\(boundary)--\r\n".utf8.count)
            twice.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n1\r\n" +
                              "--\(boundary)\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n2\r\n--\(boundary)--\r\n")
            let response = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: twice)
            #expect(response.status == .badRequest, "\(String(buffer: twice))")
            #expect(try Serve.error(response)["param"] as? String == "n")
        }
        try await Serve.test(server) { client in
            for c in cases {
                let (headers, body) = Serve.multipart(fields: c.fields, files: c.files)
                let response = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: body)
                #expect(response.status == .badRequest, "\(c.param): \(String(buffer: response.body))")
                #expect(try Serve.error(response)["param"] as? String == c.param)
            }
            // Not multipart at all.
            let json = try await client.execute(uri: "/v1/images/edits", method: .post, headers: Serve.jsonHeaders,
                                                body: try Serve.json(["prompt": "a cat"]))
            #expect(json.status == .unsupportedMediaType)
            _ = try Serve.error(json)
        }
    }

    /// Schemathesis found this one: MultipartKit traps on a header name byte above 127, which took the whole server
    /// down. Such a body is a 400 now, on both multipart endpoints, and the server goes on answering; a UTF-8 file
    /// name (a header value) is still fine.
    @Test func aNonASCIIPartHeaderNameIsA400NotACrash() async throws {
        let boundary = "0827098844b725123a93d3aaf9c673c6"
        let headers: HTTPFields = [.contentType: "multipart/form-data; boundary=\(boundary)"]
        let bad = Array("--\(boundary)\r\n".utf8) + [0xf3, 0xb6, 0xac, 0xba, 0xc3, 0x8a] + Array(": x\r\n\r\n0\r\n--\(boundary)--\r\n".utf8)
        let side = side
        try await Serve.test(server) { client in
            for uri in ["/v1/images/variations", "/v1/images/edits"] {
                let response = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(bytes: bad))
                #expect(response.status == .badRequest, "\(uri): \(String(buffer: response.body))")
                _ = try Serve.error(response)
            }
            let picture = try Serve.png(TinyPipeline.picture(width: side, height: side))
            let named = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"café.png\"\r\n\r\n".utf8) + picture
                + Array("\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--\(boundary)--\r\n".utf8)
            let response = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: ByteBuffer(bytes: named))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
        }
    }

    @Test func variationsAnswerImagesOfTheRequestedSize() async throws {
        let side = side
        let (headers, body) = Serve.multipart(fields: ["n": "2", "response_format": "b64_json", "size": "\(side)x\(side)"],
                                              files: ["image": try Serve.png(TinyPipeline.picture(width: 40, height: 30))])
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/variations", method: .post, headers: headers, body: body)
            #expect(response.status == .ok)
            #expect(try Serve.parameters(response)["mode"] as? String == "vary")
            #expect(try Serve.images(response).count == 2)
            let (noImageHeaders, noImage) = Serve.multipart(fields: ["n": "1"])
            let missing = try await client.execute(uri: "/v1/images/variations", method: .post, headers: noImageHeaders, body: noImage)
            #expect(missing.status == .badRequest)
            #expect(try Serve.error(missing)["param"] as? String == "image")
        }
    }

    @Test func modelsListTheLoadedModel() async throws {
        let name = server.pipeline.modelName
        try await Serve.test(server) { client in
            let list = try await client.execute(uri: "/v1/models", method: .get)
            #expect(list.status == .ok)
            let object = try Serve.object(list)
            let data = try #require(object["data"] as? [[String: Any]])
            #expect(object["object"] as? String == "list" && data.count == 1 && data[0]["id"] as? String == name)
            #expect(data[0]["object"] as? String == "model" && data[0]["owned_by"] as? String == "paella")
            let one = try await client.execute(uri: "/v1/models/\(name)", method: .get)
            #expect(one.status == .ok)
            #expect(try Serve.object(one)["id"] as? String == name)
            let other = try await client.execute(uri: "/v1/models/dall-e-3", method: .get)
            #expect(other.status == .notFound)
            #expect(try Serve.error(other)["code"] as? String == "model_not_found")
        }
    }

    @Test func unknownEndpointsAnswer404InOpenAIShape() async throws {
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/nothing", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json([:]))
            #expect(response.status == .notFound)
            #expect(try Serve.error(response)["code"] as? String == "not_found")
        }
    }

    @Test func healthReportsTheQueue() async throws {
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/healthz", method: .get)
            #expect(response.status == .ok)
            let object = try Serve.object(response)
            #expect(object["status"] as? String == "ok" && object["running"] as? Int == 0 && object["queued"] as? Int == 0)
        }
    }
}

@Suite("Server: limits")
struct LimitsTests {
    @Test func aBodyOverTheUploadLimitIs413() async throws {
        var configuration = ServerConfiguration()
        configuration.limits.maxUploadBytes = 64
        let server = try Serve.server(configuration)
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(["prompt": String(repeating: "a", count: 100)]))
            #expect(response.status == .contentTooLarge)
            #expect(try Serve.error(response)["code"] as? String == "payload_too_large")
        }
    }

    /// The pixel limit is checked from the header: a PNG that claims 100000 x 100000 pixels (40 GB decoded) in a
    /// few dozen bytes is refused for its size, not for being truncated, and without allocating its pixels.
    @Test func uploadedPixelsAreLimitedFromTheHeader() async throws {
        var configuration = ServerConfiguration()
        configuration.limits.maxInputPixels = 64 * 64
        let server = try Serve.server(configuration)
        let picture = try Serve.png(TinyPipeline.picture(width: 65, height: 64))
        try await Serve.test(server) { client in
            for image in [picture, Serve.hostilePNG(width: 100_000, height: 100_000)] {
                let (headers, body) = Serve.multipart(fields: ["prompt": "a cat"], files: ["image": image])
                let response = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: body)
                #expect(response.status == .badRequest)
                let error = try Serve.error(response)
                #expect(error["code"] as? String == "image_too_large" && error["param"] as? String == "image")
            }
        }
    }

    @Test func aFullQueueAnswers429WithRetryAfter() async throws {
        let server = try Serve.server(ServerConfiguration(maxConcurrentJobs: 1, maxQueuedJobs: 0, retryAfterSeconds: 7))
        // Holds the only slot until cancelled.
        let holder = Task { try await server.queue.run { try await Task.sleep(for: .seconds(60)) } }
        while await server.queue.running == 0 { try await Task.sleep(for: .milliseconds(5)) }
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(["prompt": "a cat"]))
            #expect(response.status == .tooManyRequests)
            #expect(response.headers[.retryAfter] == "7")
            let error = try Serve.error(response)
            #expect(error["type"] as? String == "rate_limit_error" && error["code"] as? String == "queue_full")
            let health = try Serve.object(try await client.execute(uri: "/healthz", method: .get))
            #expect(health["running"] as? Int == 1)
        }
        holder.cancel()
        await #expect(throws: CancellationError.self) { try await holder.value }
        #expect(await server.queue.running == 0)
    }

    @Test func aClosedQueueAnswers503AndHealthSaysShuttingDown() async throws {
        let server = try Serve.server()
        await server.queue.close()
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(["prompt": "a cat"]))
            #expect(response.status == .serviceUnavailable && response.headers[.retryAfter] != nil)
            #expect(try Serve.error(response)["code"] as? String == "shutting_down")
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .serviceUnavailable)
            #expect(try Serve.object(health)["status"] as? String == "shutting_down")
        }
    }
}

@Suite("Server: authentication")
struct AuthTests {
    @Test func aKeyIsRequiredWhenConfigured() async throws {
        let server = try Serve.server(ServerConfiguration(apiKey: "s3cret-key"))
        try await Serve.test(server) { client in
            let none = try await client.execute(uri: "/v1/models", method: .get)
            #expect(none.status == .unauthorized && none.headers[.wwwAuthenticate] == "Bearer")
            #expect(try Serve.error(none)["code"] as? String == "invalid_api_key")
            for wrong in ["Bearer s3cret-kez", "Bearer s3cret-key2", "Bearer ", "Basic s3cret-key", "s3cret-key"] {
                let response = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: wrong])
                #expect(response.status == .unauthorized, "\(wrong)")
            }
            // Authentication comes before the body is read: a bad key never reaches the model.
            let post = try await client.execute(uri: "/v1/images/generations", method: .post,
                                                headers: [.contentType: "application/json", .authorization: "Bearer nope"],
                                                body: try Serve.json(["prompt": "a cat"]))
            #expect(post.status == .unauthorized)
            let right = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer s3cret-key"])
            #expect(right.status == .ok)
            let lower = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "bearer s3cret-key"])
            #expect(lower.status == .ok)
            // Health checks stay open for load balancers.
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
        }
    }

    @Test func noKeyIsNeededWithoutOne() async throws {
        try await Serve.test(try Serve.server()) { client in
            let response = try await client.execute(uri: "/v1/models", method: .get)
            #expect(response.status == .ok)
        }
    }

    @Test func nonLoopbackAddressesNeedAKey() throws {
        for host in ["0.0.0.0", "192.168.1.5", "::", "example.com"] {
            #expect(throws: ServerConfigurationError.self) { try ServerConfiguration(host: host).validate() }
            try ServerConfiguration(host: host, apiKey: "k").validate()
        }
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] { try ServerConfiguration(host: host).validate() }
        #expect(throws: ServerConfigurationError.self) { try ServerConfiguration(apiKey: "").validate() }
        #expect(throws: ServerConfigurationError.self) { try ServerConfiguration(port: 70000).validate() }
        #expect(throws: ServerConfigurationError.self) { try Serve.server(ServerConfiguration(host: "0.0.0.0")) }
        #expect(!ServerConfiguration.isLoopback("127.0.0.1.example.com") && !ServerConfiguration.isLoopback("1270.0.0.1"))
    }

    @Test func aReplicasIdsStartWithItsName() async throws {
        for name in ["", "A", "a-b", "a/b", "\u{e9}", "a\u{301}", String(repeating: "a", count: 17)] {
            #expect(throws: ServerConfigurationError.self) { try ServerConfiguration(replica: name).validate() }
        }
        try ServerConfiguration(replica: "r2").validate()
        let server = try Serve.server(ServerConfiguration(replica: "r2"))
        try await Serve.test(server) { client in
            let job = try Serve.object(try await client.execute(uri: "/api/jobs", method: .post, headers: Serve.jsonHeaders,
                                                                 body: try Serve.json(["mode": "generate", "prompt": "a red circle", "steps": 2])))
            #expect((job["id"] as? String)?.hasPrefix("r2-") == true, "\(job)")
            let answer = try Serve.object(try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                body: try Serve.json(["prompt": "a red circle", "steps": 2, "response_format": "url"])))
            let url = try #require(((answer["data"] as? [[String: Any]])?.first?["url"]) as? String)
            #expect(url.contains("/api/images/r2-"), "\(url)")
        }
    }

    @Test func keysCompareByValue() {
        let key = Array("abcdef".utf8)
        #expect(constantTimeEquals(key, Array("abcdef".utf8)))
        for other in ["abcdeg", "abcde", "abcdefg", "", "bbcdef"] { #expect(!constantTimeEquals(key, Array(other.utf8)), "\(other)") }
        #expect(constantTimeEquals([], []))
    }
}

@Suite("Server: job queue and shutdown")
struct JobQueueTests {
    @Test func waitingJobsRunInArrivalOrderAndExtraOnesAreRefused() async throws {
        let queue = JobQueue(maxRunning: 1, maxWaiting: 2)
        let order = Order()
        let first = Task { try await queue.run { try await Task.sleep(for: .milliseconds(100)); await order.add(0) } }
        while await queue.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        let second = Task { try await queue.run { await order.add(1) } }
        while await queue.waiting < 1 { try await Task.sleep(for: .milliseconds(2)) }
        let third = Task { try await queue.run { await order.add(2) } }
        while await queue.waiting < 2 { try await Task.sleep(for: .milliseconds(2)) }
        await #expect(throws: JobQueue.Refusal.full) { try await queue.run { 0 } }
        for task in [first, second, third] { try await task.value }
        #expect(await order.values == [0, 1, 2])
        #expect(await queue.running == 0)
        #expect(await queue.waiting == 0)
    }

    @Test func aCancelledWaiterLeavesTheQueue() async throws {
        let queue = JobQueue(maxRunning: 1, maxWaiting: 1)
        let busy = Task { try await queue.run { try await Task.sleep(for: .seconds(60)) } }
        while await queue.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        let waiter = Task { try await queue.run { 1 } }
        while await queue.waiting == 0 { try await Task.sleep(for: .milliseconds(2)) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(await queue.waiting == 0)
        busy.cancel()
        _ = try? await busy.value
        #expect(await queue.running == 0)
    }

    /// Graceful shutdown: the queue closes at once, a running job gets the grace period and is cancelled after it.
    @Test func shutdownClosesTheQueueAndCancelsJobsAfterTheGracePeriod() async throws {
        let queue = JobQueue(maxRunning: 1, maxWaiting: 1)
        // A job that would run for an hour: only the cancellation after the grace period can end it.
        let job = Task { try await queue.run { try await Task.sleep(for: .seconds(3600)) } }
        while await queue.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        var logger = Logger(label: "paella.serve.test")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [JobDrainService(queue: queue, grace: 0.2, logger: logger)], logger: logger))
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(20))
        await group.triggerGracefulShutdown()
        try await running.value
        // No wall-clock bound: while the parity suites keep both cores busy, a sleeping task here can wait tens of
        // seconds for a thread. The job's CancellationError is the proof that the grace period cut it short.
        await #expect(throws: CancellationError.self) { try await job.value }
        #expect(await queue.isClosed)
        await #expect(throws: JobQueue.Refusal.closed) { try await queue.run { 0 } }
    }

    /// Shutdown with nothing running returns at once, and a job that ends within the grace period keeps its result.
    @Test func aJobWithinTheGracePeriodFinishes() async throws {
        let queue = JobQueue(maxRunning: 1, maxWaiting: 0)
        let job = Task { try await queue.run { try await Task.sleep(for: .milliseconds(100)); return 42 } }
        while await queue.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        await queue.close()
        // A generous bound, not a timing check: under a sanitizer, with other suites holding the cooperative threads,
        // the sleeping job can wait many seconds to be resumed. It must finish, not be cancelled.
        #expect(await queue.drain(within: 120))
        #expect(try await job.value == 42)
    }
}

/// Collects values from concurrent jobs in the order they arrive.
actor Order {
    var values: [Int] = []
    func add(_ v: Int) { values.append(v) }
}

@Suite("Server: timeouts")
struct TimeoutTests {
    @Test func workPastTheTimeoutIsCancelledWith504() async throws {
        let cancelled = Order()
        // Work that would take an hour; that it was cancelled (not a wall-clock bound, which a busy test machine
        // can break) shows the timeout ended it.
        await #expect(throws: APIError.self) {
            try await withTimeout(seconds: 0.05) {
                do { try await Task.sleep(for: .seconds(3600)) } catch { await cancelled.add(1); throw error }
            }
        }
        #expect(await cancelled.values == [1])
        #expect(try await withTimeout(seconds: 60) { 7 } == 7)
    }

    @Test func aGenerationPastTheTimeoutAnswers504() async throws {
        let server = try Serve.server(ServerConfiguration(jobTimeoutSeconds: 0.001))
        try await Serve.test(server) { client in
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                                    body: try Serve.json(["prompt": "a cat", "n": 4, "steps": 100]))
            #expect(response.status == .gatewayTimeout)
            #expect(try Serve.error(response)["code"] as? String == "timeout")
        }
        #expect(await server.queue.running == 0)
    }
}

@Suite("Server: metrics")
struct MetricsTests {
    @Test func metricsCountJobsStepsAndRequests() async throws {
        let server = try Serve.server(ServerConfiguration(maxConcurrentJobs: 1, maxQueuedJobs: 0))
        try await Serve.test(server) { client in
            let ok = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                              body: try Serve.json(["prompt": "a cat", "steps": 3]))
            #expect(ok.status == .ok)
            // A size the pipeline refuses is refused before it becomes a job; a mask that repaints nothing fails in the job.
            let bad = try await client.execute(uri: "/v1/images/generations", method: .post, headers: Serve.jsonHeaders,
                                               body: try Serve.json(["prompt": "a cat", "size": "13x13"]))
            #expect(bad.status == .badRequest)
            let side = try TinyPipeline.get().defaults.imageSize
            let opaque = PixelImage(width: side, height: side, layout: .rgba, repeating: 255)
            let (headers, body) = Serve.multipart(fields: ["prompt": "a star"], files: ["image": try Serve.png(TinyPipeline.picture(width: side, height: side)),
                                                                                        "mask": try Serve.png(opaque)])
            let failed = try await client.execute(uri: "/v1/images/edits", method: .post, headers: headers, body: body)
            #expect(failed.status == .badRequest)
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok && response.headers[.contentType]?.hasPrefix("text/plain") == true)
            let lines = Set(String(buffer: response.body).split(separator: "\n").map(String.init))
            #expect(lines.contains("paella_jobs_total{state=\"succeeded\"} 1"))
            #expect(lines.contains("paella_jobs_total{state=\"failed\"} 1"))
            #expect(lines.contains("paella_jobs_running 0.0") || lines.contains("paella_jobs_running 0"))
            // Three steps, the first timed from the encoding report: three observations.
            #expect(lines.contains("paella_step_duration_seconds_count 3"), "\(lines.sorted())")
            #expect(lines.contains("paella_request_duration_seconds_count 3"), "\(lines.sorted())")
        }
    }
}
