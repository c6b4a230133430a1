import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MCP
import NIOCore
import Paella
import PaellaCore
import PaellaIO
@testable import PaellaServer
import PaellaTestSupport
import Testing

/// An MCP client connected in-process (the SDK's in-memory transport) to a session of Paella's MCP server on the
/// bundled model, with the progress notifications it receives.
struct MCPSession {
    let client: Client
    let server: MCP.Server
    let progress: ProgressLog

    actor ProgressLog {
        private(set) var notifications: [ProgressNotification.Parameters] = []
        func add(_ notification: ProgressNotification.Parameters) { notifications.append(notification) }
    }

    static let bundledPipeline: Result<Pipeline, Error> = Result {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/paella-small").path
        return try Pipeline(folder: ModelFolder(path: path), compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()), loadVision: true)
    }

    static func start(_ mcp: PaellaMCP? = nil) async throws -> MCPSession {
        let mcp = try mcp ?? PaellaMCP(pipeline: bundledPipeline.get(), logger: quietLogger)
        let server = await mcp.makeServer()
        let client = Client(name: "paella-tests", version: "1")
        let progress = ProgressLog()
        await client.onNotification(ProgressNotification.self) { message in await progress.add(message.params) }
        let (clientSide, serverSide) = await InMemoryTransport.createConnectedPair()
        try await server.start(transport: serverSide)
        try await client.connect(transport: clientSide)
        return MCPSession(client: client, server: server, progress: progress)
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "paella.mcp.test")
        logger.logLevel = .warning
        return logger
    }

    func stop() async {
        await client.disconnect()
        await server.stop()
    }

    func call(_ tool: String, _ arguments: [String: Value], progressToken: ProgressToken? = nil) async throws -> (content: [Tool.Content], isError: Bool?) {
        try await client.callTool(name: tool, arguments: arguments, meta: progressToken.map { Metadata(progressToken: $0) })
    }

    /// The PNG images of a tool answer, decoded, and its text.
    static func images(_ content: [Tool.Content]) throws -> (images: [PixelImage], text: String) {
        var images: [PixelImage] = []
        var text = ""
        for item in content {
            switch item {
            case .image(let data, let mimeType, _, _):
                #expect(mimeType == "image/png")
                let bytes = try #require(Data(base64Encoded: data))
                images.append(try PixelImage.decode(Array(bytes), source: "tool answer").image)
            case .text(let line, _, _):
                text += line
            default:
                Issue.record("unexpected content \(item)")
            }
        }
        return (images, text)
    }

    /// The sentence of a tool error.
    static func errorText(_ answer: (content: [Tool.Content], isError: Bool?)) -> String? {
        guard answer.isError == true, answer.content.count == 1, case .text(let text, _, _) = answer.content[0] else { return nil }
        return text
    }
}

@Suite(.serialized) struct MCPTests {
    static let picture = TinyPipeline.picture(width: 64, height: 64)
    static var pictureBase64: Value { .string(Data(try! picture.encodePNG()).base64EncodedString()) }

    @Test func listsTheFourToolsWithSchemas() async throws {
        let session = try await MCPSession.start()
        defer { Task { await session.stop() } }
        let tools = try await session.client.listTools().tools
        #expect(tools.map(\.name).sorted() == ["edit_image", "generate_image", "interpolate", "vary_image"])
        for tool in tools {
            let schema = try #require(tool.inputSchema.objectValue)
            #expect(schema["type"] == "object")
            let properties = try #require(schema["properties"]?.objectValue)
            let required = try #require(schema["required"]?.arrayValue).compactMap(\.stringValue)
            #expect(!required.isEmpty && required.allSatisfy { properties[$0] != nil }, "\(tool.name)")
            // The schema names exactly the arguments the tool reads.
            #expect(Set(properties.keys) == MCPTool(rawValue: tool.name)?.argumentNames, "\(tool.name)")
        }
        let generate = try #require(tools.first { $0.name == "generate_image" })
        #expect(generate.inputSchema.objectValue?["properties"]?.objectValue?["steps"]?.objectValue?["maximum"] == .int(ServerLimits.default.maxSteps))
    }

    @Test func generateImageSendsProgressPerStepAndKeepsTheImageAsAResource() async throws {
        let session = try await MCPSession.start()
        defer { Task { await session.stop() } }
        let answer = try await session.call("generate_image", ["prompt": "a red circle on a white background", "seed": 7, "steps": 3,
                                                               "guidance": 3.5, "size": "64x64", "n": 2], progressToken: .string("gen-1"))
        #expect(answer.isError == false)
        let (images, text) = try MCPSession.images(answer.content)
        #expect(images.count == 2 && images.allSatisfy { $0.width == 64 && $0.height == 64 })
        #expect(text.contains("\"seed\":7") && text.contains("\"steps\":3") && text.contains("\"guidanceScale\":3.5"), "\(text)")
        #expect(text.contains("paella://images/1.png, paella://images/2.png"))
        // One notification per sampling step, in order, all before the answer.
        let progress = await session.progress.notifications
        #expect(progress.map(\.progress) == [1, 2, 3])
        #expect(progress.allSatisfy { $0.total == 3 && $0.progressToken == .string("gen-1") })

        let resources = try await session.client.listResources().resources
        #expect(resources.map(\.uri) == ["paella://images/1.png", "paella://images/2.png"])
        #expect(resources.allSatisfy { $0.mimeType == "image/png" })
        let contents = try await session.client.readResource(uri: "paella://images/2.png")
        let blob = try #require(contents.first?.blob)
        guard case .image(let data, _, _, _) = answer.content[1] else { Issue.record("second item is not an image"); return }
        #expect(blob == data)
        await #expect(throws: MCPError.self) { try await session.client.readResource(uri: "paella://images/9.png") }

        // The same seed and settings give the same image; without a progress token no notification is sent.
        let again = try await session.call("generate_image", ["prompt": "a red circle on a white background", "seed": 7, "steps": 3,
                                                              "guidance": 3.5, "size": "64x64", "n": 2])
        #expect(try MCPSession.images(again.content).images == images)
        #expect(await session.progress.notifications.count == 3)
    }

    @Test func editImageInpaintsAMaskOrARectangleAndEditsWithoutOne() async throws {
        let session = try await MCPSession.start()
        defer { Task { await session.stop() } }
        var mask = PixelImage(width: 64, height: 64, layout: .gray, repeating: 0)
        for y in 0..<32 { for x in 0..<32 { mask.pixels[y * 64 + x] = 255 } }
        let maskBase64 = Value.string(Data(try mask.encodePNG()).base64EncodedString())
        let cases: [(String, [String: Value])] = [
            ("inpaint", ["mask": maskBase64]),
            ("inpaint", ["rectangle": ["x": 0, "y": 0, "width": 32, "height": 32]]),
            ("edit", ["strength": 0.5]),
        ]
        for (mode, extra) in cases {
            var arguments: [String: Value] = ["image": Self.pictureBase64, "prompt": "a blue square", "seed": 1, "steps": 2]
            arguments.merge(extra) { $1 }
            let answer = try await session.call("edit_image", arguments)
            let (images, text) = try MCPSession.images(answer.content)
            #expect(answer.isError == false && images.count == 1 && images[0].width == 64, "\(mode): \(text)")
            #expect(text.hasPrefix("\(mode):"), "\(text)")
        }
    }

    @Test func varyImageAndInterpolate() async throws {
        let session = try await MCPSession.start()
        defer { Task { await session.stop() } }
        let varied = try await session.call("vary_image", ["image": Self.pictureBase64, "seed": 2, "steps": 2, "n": 2])
        #expect(try MCPSession.images(varied.content).images.count == 2)
        let frames = try await session.call("interpolate", ["from": "a red circle", "to": "a blue square", "frames": 3, "method": "slerp",
                                                            "seed": 3, "steps": 2], progressToken: .integer(5))
        let (images, text) = try MCPSession.images(frames.content)
        #expect(images.count == 3 && text.contains("\"frames\":3") && text.contains("\"method\":\"slerp\""), "\(text)")
        // Steps of all frames count together.
        #expect(await session.progress.notifications.map(\.progress) == [1, 2, 3, 4, 5, 6])
        #expect(try await session.client.listResources().resources.count == 5)
    }

    @Test func badArgumentsAreToolErrorsWithOneSentence() async throws {
        let session = try await MCPSession.start()
        defer { Task { await session.stop() } }
        let image = Self.pictureBase64
        let cases: [(String, [String: Value], String)] = [
            ("generate_image", ["prompt": "x", "steps": 100_000], "The step count 100000 is out of range; give 1 to 100."),
            ("generate_image", ["prompt": "x", "n": 50], "The image count 50 is out of range; give 1 to 4."),
            ("generate_image", ["prompt": "x", "size": "60x60"], "The image size 60x60 does not fit this model"),
            ("generate_image", ["prompt": "x", "size": "big"], "The argument size must be WIDTHxHEIGHT in pixels"),
            ("generate_image", ["prompt": "   "], "The argument prompt is empty; give some text."),
            ("generate_image", [:], "The argument prompt is empty; give some text."),
            ("generate_image", ["prompt": "x", "seed": -1], "The argument seed must be 0 or more, got -1."),
            ("generate_image", ["prompt": "x", "steps": "many"], "The argument steps must be an integer"),
            ("generate_image", ["prompt": "x", "sizes": "64x64"], "generate_image takes no 'sizes'; it takes guidance, n, negative_prompt, prompt, seed, size, steps."),
            ("generate_image", ["prompt": .string(String(repeating: "a", count: 1001))], "The prompt is 1001 characters long, out of range"),
            ("edit_image", ["prompt": "x"], "The argument image is missing"),
            ("edit_image", ["image": "%%%", "prompt": "x"], "The argument image is not base64"),
            ("edit_image", ["image": .string(Data("not an image".utf8).base64EncodedString()), "prompt": "x"], "The argument image"),
            ("edit_image", ["image": image, "prompt": "x", "strength": 2], "The strength 2.0 is out of range; give a number in (0, 1]."),
            ("edit_image", ["image": image, "prompt": "x", "strength": 0.5, "rectangle": ["x": 0, "y": 0, "width": 8, "height": 8]],
             "strength applies to structural edits only"),
            ("edit_image", ["image": image, "prompt": "x", "mask": image, "rectangle": ["x": 0, "y": 0, "width": 8, "height": 8]],
             "edit_image takes a mask or a rectangle, not both"),
            ("edit_image", ["image": image, "prompt": "x", "rectangle": ["x": 0, "y": 0, "width": 8]], "The argument rectangle needs height"),
            ("edit_image", ["image": image, "prompt": "x", "mask": .string(Data(try PixelImage(width: 8, height: 8, layout: .gray, repeating: 255).encodePNG()).base64EncodedString())],
             "The mask is 8x8 pixels but the image is 64x64"),
            ("interpolate", ["from": "a", "to": "b", "frames": 1], "The frame count 1 is out of range; give 2 to 16."),
            ("interpolate", ["from": "a", "to": "b", "method": "cubic"], "The argument method must be lerp or slerp, got 'cubic'."),
            ("vary_image", ["image": .string(Data(Serve.hostilePNG(width: 100_000, height: 100_000)).base64EncodedString())],
             "The argument image is 100000x100000 pixels, more than this server's limit"),
        ]
        for (tool, arguments, expected) in cases {
            let answer = try await session.call(tool, arguments)
            let text = MCPSession.errorText(answer)
            #expect(text?.hasPrefix(expected) == true, "\(tool) \(arguments.keys.sorted()): \(text ?? "no tool error: \(answer)")")
        }
        // Extreme numbers are refused with a sentence before anything is allocated, never a trap.
        let extremes: [(String, [String: Value])] = [
            ("generate_image", ["prompt": "x", "size": "1000000x1000000"]),
            ("generate_image", ["prompt": "x", "size": "99999999999999999999x64"]),
            ("generate_image", ["prompt": "x", "seed": .int(Int.max), "steps": .int(Int.min)]),
            ("generate_image", ["prompt": "x", "n": .int(Int.max)]),
            ("generate_image", ["prompt": "x", "guidance": 1e300]),
            ("generate_image", ["prompt": "x", "steps": 1e300]),
            ("edit_image", ["image": image, "prompt": "x", "short_side": .int(Int.max)]),
            ("edit_image", ["image": image, "prompt": "x", "short_side": -5]),
            ("edit_image", ["image": image, "prompt": "x", "rectangle": ["x": .int(Int.max), "y": .int(Int.max), "width": .int(Int.max), "height": 1]]),
            ("edit_image", ["image": image, "prompt": "x", "rectangle": ["x": -8, "y": 0, "width": 8, "height": 8]]),
            ("interpolate", ["from": "a", "to": "b", "frames": .int(Int.max)]),
        ]
        for (tool, arguments) in extremes {
            let answer = try await session.call(tool, arguments)
            #expect(MCPSession.errorText(answer)?.hasSuffix(".") == true, "\(tool) \(arguments): \(answer)")
        }
        // No tool of that name is a protocol error, not a tool result.
        await #expect(throws: MCPError.self) { _ = try await session.call("draw", ["prompt": "x"]) }
        #expect(try await session.client.listResources().resources.isEmpty)
    }

    /// `notifications/cancelled` stops the run before its next sampling step: the pipeline ends with a cancellation
    /// after a few of the steps asked for, the queue is free again, and no image is kept.
    @Test func cancellationStopsTheRun() async throws {
        let pipeline = try MCPSession.bundledPipeline.get()
        let queue = JobQueue(maxRunning: 1, maxWaiting: 0)
        let outcomes = Outcomes()
        let mcp = PaellaMCP(pipeline: pipeline, compute: { request, progress in
            do {
                let result = try await queue.run { try await pipeline.run(request, progress: progress) }
                await outcomes.add("finished")
                return result
            } catch {
                await outcomes.add(error is CancellationError ? "cancelled" : "\(error)")
                throw error
            }
        }, logger: MCPSession.quietLogger)
        let session = try await MCPSession.start(mcp)
        defer { Task { await session.stop() } }
        let steps = 100
        let call: MCP.RequestContext<CallTool.Result> = try await session.client.callTool(
            name: "generate_image", arguments: ["prompt": "a red circle", "steps": .int(steps), "size": "128x128"],
            meta: Metadata(progressToken: .string("long")))
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(120)
        while await session.progress.notifications.isEmpty && clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await session.progress.notifications.count >= 1)
        try await session.client.cancelRequest(call.requestID, reason: "test")
        await #expect(throws: CancellationError.self) { _ = try await call.value }
        while await outcomes.all.isEmpty && clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await outcomes.all == ["cancelled"])
        #expect(await queue.running == 0)
        #expect(await session.progress.notifications.count < steps)
        #expect(try await session.client.listResources().resources.isEmpty)
    }

    /// The streamable HTTP transport at /mcp of `paella serve`: behind the bearer key, a session from initialize
    /// to DELETE, answers as server-sent events.
    @Test func httpTransportServesSessionsBehindTheAPIKey() async throws {
        let server = try Serve.server(ServerConfiguration(apiKey: "sesame"))
        try await Serve.test(server) { client in
            var headers: HTTPFields = [.contentType: "application/json", .accept: "application/json, text/event-stream"]
            let initialize = try Serve.json(["jsonrpc": "2.0", "id": 1, "method": "initialize",
                                             "params": ["protocolVersion": "2025-06-18", "capabilities": [String: String](),
                                                        "clientInfo": ["name": "test", "version": "1"]] as [String: any Sendable]])
            let refused = try await client.execute(uri: "/mcp", method: .post, headers: headers, body: initialize)
            #expect(refused.status == .unauthorized)
            headers[.authorization] = "Bearer sesame"

            let noSession = try await client.execute(uri: "/mcp", method: .post, headers: headers,
                                                     body: try Serve.json(["jsonrpc": "2.0", "id": 2, "method": "tools/list"]))
            #expect(noSession.status == .badRequest)

            let started = try await client.execute(uri: "/mcp", method: .post, headers: headers, body: initialize)
            #expect(started.status == .ok && started.headers[.contentType] == "text/event-stream", "\(started.status) \(String(buffer: started.body))")
            let sessionHeader = try #require(HTTPField.Name("Mcp-Session-Id"))
            let session = try #require(started.headers[sessionHeader])
            #expect(try Self.sseResult(started)["serverInfo"] != nil)
            #expect(await server.mcpSessions.count == 1)
            headers[sessionHeader] = session
            headers[try #require(HTTPField.Name("MCP-Protocol-Version"))] = "2025-06-18"

            let initialized = try await client.execute(uri: "/mcp", method: .post, headers: headers,
                                                       body: try Serve.json(["jsonrpc": "2.0", "method": "notifications/initialized"]))
            #expect(initialized.status == .accepted)
            let listed = try await client.execute(uri: "/mcp", method: .post, headers: headers,
                                                  body: try Serve.json(["jsonrpc": "2.0", "id": 2, "method": "tools/list"]))
            #expect((try Self.sseResult(listed)["tools"] as? [Any])?.count == 4)
            let called = try await client.execute(uri: "/mcp", method: .post, headers: headers, body: try Serve.json([
                "jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": ["name": "generate_image", "arguments": ["prompt": "a red circle", "seed": 4, "steps": 2] as [String: any Sendable]]
                    as [String: any Sendable]]))
            let content = try #require(try Self.sseResult(called)["content"] as? [[String: Any]])
            let data = try #require(content.first?["data"] as? String)
            let png = try #require(Data(base64Encoded: data))
            #expect(content.first?["type"] as? String == "image" && (try? PixelImage.decode(Array(png), source: "answer")) != nil)

            let ended = try await client.execute(uri: "/mcp", method: .delete, headers: headers)
            #expect(ended.status == .ok)
            #expect(await server.mcpSessions.count == 0)
            let gone = try await client.execute(uri: "/mcp", method: .post, headers: headers,
                                                body: try Serve.json(["jsonrpc": "2.0", "id": 4, "method": "tools/list"]))
            #expect(gone.status == .notFound)
        }
    }

    /// `paella mcp` as a desktop agent runs it: JSON-RPC lines in on stdin, only JSON-RPC lines out on stdout (logs go
    /// to stderr), and it exits with status 0 when the client closes stdin.
    @Test func paellaMCPCommandSpeaksOnlyTheProtocolOnStdout() async throws {
        let input = Pipe()
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/paella-small").path
        let (process, stdout, stderr) = try PaellaCLI.start(["mcp", "--model", model, "--threads", "1"], input: input)
        let requests = [
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            #"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"generate_image","arguments":{"prompt":"a red circle","seed":5,"steps":2},"_meta":{"progressToken":"p"}}}"#,
        ]
        // A server that never answers is stopped, so the reads below end instead of blocking the suite.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + TimeGuard.seconds(120), execute: watchdog)
        defer { watchdog.cancel() }
        for request in requests { input.fileHandleForWriting.write(Data((request + "\n").utf8)) }
        // Read answers until the tool call's; the progress notifications come before it.
        var lines: [[String: Any]] = []
        var pending = Data()
        let reader = stdout.fileHandleForReading
        while !lines.contains(where: { $0["id"] as? Int == 2 }) {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            pending += chunk
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[pending.startIndex..<newline]
                pending = Data(pending[(newline + 1)...])
                let message = try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any], "not JSON-RPC: \(String(decoding: line, as: UTF8.self))")
                #expect(message["jsonrpc"] as? String == "2.0")
                lines.append(message)
            }
        }
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(log)")
        #expect(log.contains("serving MCP on standard input and output"))
        #expect(lines.first?["id"] as? Int == 1 && (lines.first?["result"] as? [String: Any])?["serverInfo"] != nil)
        #expect(lines.filter { $0["method"] as? String == "notifications/progress" }.count == 2)
        let result = try #require(lines.last?["result"] as? [String: Any])
        let content = try #require(result["content"] as? [[String: Any]])
        #expect(content.first?["type"] as? String == "image" && result["isError"] as? Bool == false)
    }

    /// Sessions that are never ended make room: past the capacity the least recently used one ends (its id then
    /// answers 404, which tells a client to initialize again); after `closeAll` (graceful shutdown) none starts.
    @Test func sessionsAreBoundedAndCloseOnShutdown() async throws {
        let sessions = MCPSessions(loopbackOnly: true, capacity: 2, logger: MCPSession.quietLogger)
        let mcp = PaellaMCP(pipeline: try TinyPipeline.get(), logger: MCPSession.quietLogger)
        let headers = ["Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Host": "127.0.0.1:8080"]
        let initialize = try JSONSerialization.data(withJSONObject: [
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": ["protocolVersion": "2025-06-18", "capabilities": [String: String](), "clientInfo": ["name": "t", "version": "1"]]])
        func start() async throws -> String {
            let answer = await sessions.handle(MCP.HTTPRequest(method: "POST", headers: headers, body: initialize), makeServer: { await mcp.makeServer() })
            return try #require(answer.headers[HTTPHeaderName.sessionID], "status \(answer.statusCode)")
        }
        func ping(_ id: String) async -> Int {
            let body = Data(#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.utf8)
            return await sessions.handle(MCP.HTTPRequest(method: "POST", headers: headers.merging([HTTPHeaderName.sessionID: id]) { $1 }, body: body),
                                         makeServer: { await mcp.makeServer() }).statusCode
        }
        let first = try await start()
        let second = try await start()
        #expect(await ping(first) == 200)   // now the second is the least recently used
        let third = try await start()
        #expect(await sessions.count == 2)
        #expect(await ping(second) == 404)
        #expect(await ping(first) == 200)
        #expect(await ping(third) == 200)
        // A request from a web page of another site (DNS rebinding) is refused on a loopback server.
        let foreign = await sessions.handle(MCP.HTTPRequest(method: "POST", headers: headers.merging(["Host": "evil.example:8080"]) { $1 },
                                                            body: initialize), makeServer: { await mcp.makeServer() })
        #expect(foreign.statusCode == 421)

        await sessions.closeAll()
        #expect(await sessions.count == 0)
        #expect(await ping(first) == 503)
    }

    /// The `result` of the JSON-RPC answer in a server-sent-event body.
    static func sseResult(_ response: TestResponse) throws -> [String: Any] {
        let lines = String(buffer: response.body).split(separator: "\n").filter { $0.hasPrefix("data: {") }
        for line in lines {
            let message = try JSONSerialization.jsonObject(with: Data(line.dropFirst("data: ".count).utf8)) as? [String: Any]
            if let result = message?["result"] as? [String: Any] { return result }
        }
        Issue.record("no result in \(String(buffer: response.body).prefix(300))")
        return [:]
    }

    actor Outcomes {
        private(set) var all: [String] = []
        func add(_ outcome: String) { all.append(outcome) }
    }
}
