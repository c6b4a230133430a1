// MCP's streamable HTTP transport at /mcp of `paella serve`: the SDK's own server transport
// (`StatefulHTTPServerTransport`, one per session) carried over Hummingbird. POST takes JSON-RPC messages and
// answers a request as a server-sent-event stream; GET opens the session's stream of server messages (progress
// notifications travel there); DELETE ends the session. The router's bearer authentication covers /mcp like
// every API route.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import NIOCore
import ServiceLifecycle

/// The live MCP sessions of one server, by their `Mcp-Session-Id`. A session that has been idle for
/// `idleTimeout` is ended when a new one starts, and when `capacity` are live the least recently used makes room:
/// clients that never send DELETE do not pile up sessions. An ended session's id answers 404, which tells MCP
/// clients to initialize again.
public actor MCPSessions {
    struct Session {
        let server: MCP.Server
        let transport: StatefulHTTPServerTransport
        var lastUsed: ContinuousClock.Instant
    }

    public nonisolated let capacity: Int
    public nonisolated let idleTimeout: Duration
    /// The SDK's checks of Host, Origin, Accept, Content-Type, protocol version and session id.
    private let validation: any HTTPRequestValidationPipeline
    private let logger: Logger
    private var sessions: [String: Session] = [:]
    private var closed = false

    /// `loopbackOnly`: the server listens on loopback only, so requests naming another Host or a web Origin are
    /// refused (DNS rebinding); a server on another address is reached under other names and has an API key.
    public init(loopbackOnly: Bool, capacity: Int = 64, idleTimeout: Duration = .seconds(1800), logger: Logger) {
        self.capacity = max(1, capacity)
        self.idleTimeout = idleTimeout
        self.logger = logger
        self.validation = StandardValidationPipeline(validators: [
            loopbackOnly ? Self.loopbackNames : OriginValidator.disabled,
            AcceptHeaderValidator(mode: .sseRequired),
            ContentTypeValidator(),
            ProtocolVersionValidator(),
            SessionValidator(),
        ])
    }

    /// The SDK's loopback check (`OriginValidator.localhost()`) with the port-less names too (port 80, or a
    /// client that leaves the port out).
    private static let loopbackNames: OriginValidator = {
        let hosts = ["127.0.0.1", "localhost", "[::1]"]
        return OriginValidator(allowedHosts: hosts + hosts.map { $0 + ":*" },
                               allowedOrigins: hosts.flatMap { ["http://\($0)", "http://\($0):*", "https://\($0)", "https://\($0):*"] })
    }()

    public var count: Int { sessions.count }

    /// Hands `request` to its session's transport; an `initialize` without a session id starts a session on a
    /// server from `makeServer`.
    public func handle(_ request: MCP.HTTPRequest, makeServer: @Sendable () async -> MCP.Server) async -> MCP.HTTPResponse {
        if closed { return .error(statusCode: 503, .internalError("The server is shutting down; try again shortly.")) }
        if let id = request.header(HTTPHeaderName.sessionID) {
            guard var session = sessions[id] else {
                return .error(statusCode: 404, .invalidRequest("This MCP session has ended or never existed; send initialize again."))
            }
            session.lastUsed = .now
            sessions[id] = session
            let response = await session.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE", response.statusCode == 200 { await end(id) }
            return response
        }
        guard request.method.uppercased() == "POST", Self.isInitialize(request.body) else {
            return .error(statusCode: 400, .invalidRequest("Start with an initialize request; every later request needs the " +
                                                            "Mcp-Session-Id header its answer carries."))
        }
        await makeRoom()
        let transport = StatefulHTTPServerTransport(validationPipeline: validation, logger: logger)
        let server = await makeServer()
        do {
            try await server.start(transport: transport)
        } catch {
            return .error(statusCode: 500, .internalError("The MCP session could not start: \(error)."))
        }
        let response = await transport.handleRequest(request)
        guard let id = response.headers[HTTPHeaderName.sessionID], response.statusCode == 200 else {
            await server.stop()
            return response
        }
        sessions[id] = Session(server: server, transport: transport, lastUsed: .now)
        logger.info("mcp session started", metadata: ["session": "\(id)", "sessions": "\(sessions.count)"])
        return response
    }

    /// Ends every session (their streams close) and refuses new ones: graceful shutdown must not wait on the
    /// long-lived GET streams.
    public func closeAll() async {
        closed = true
        for id in Array(sessions.keys) { await end(id) }
    }

    private func end(_ id: String) async {
        guard let session = sessions.removeValue(forKey: id) else { return }
        await session.server.stop()
        logger.info("mcp session ended", metadata: ["session": "\(id)"])
    }

    private func makeRoom() async {
        let now = ContinuousClock.now
        for (id, session) in sessions where now - session.lastUsed > idleTimeout { await end(id) }
        while sessions.count >= capacity, let oldest = sessions.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key {
            await end(oldest)
        }
    }

    private static func isInitialize(_ body: Data?) -> Bool {
        guard let body, let message = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return false }
        return message["method"] as? String == "initialize"
    }
}

/// Ends the MCP sessions at graceful shutdown, so that their open streams do not hold the HTTP server up.
struct MCPSessionsShutdownService: Service {
    let sessions: MCPSessions

    func run() async throws {
        try? await gracefulShutdown()
        await sessions.closeAll()
    }
}

extension PaellaServer {
    /// Paella's MCP tools over this server's queue, timeout, metrics and limits.
    var mcp: PaellaMCP {
        PaellaMCP(pipeline: pipeline, limits: configuration.limits, compute: { request, progress in
            try await self.compute(request, progress: progress)
        }, logger: logger)
    }

    func addMCPRoutes(to router: Router<BasicRequestContext>) {
        for method in [HTTPTypes.HTTPRequest.Method.post, .get, .delete] {
            router.on("/mcp", method: method) { request, _ in try await self.mcpRequest(request) }
        }
    }

    /// One HTTP request of MCP's streamable HTTP transport, through the SDK's transport of its session.
    func mcpRequest(_ request: Request) async throws -> Response {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = headers[field.name.canonicalName].map { "\($0), \(field.value)" } ?? field.value }
        // HTTP/1's Host header arrives as the request's authority.
        if let authority = request.head.authority { headers[HTTPHeaderName.host] = authority }
        let body = request.method == .post ? Data(try await collect(request).readableBytesView) : nil
        let mcp = self.mcp
        let answer = await mcpSessions.handle(MCP.HTTPRequest(method: request.method.rawValue, headers: headers, body: body, path: request.uri.path),
                                              makeServer: { await mcp.makeServer() })
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        let status = HTTPTypes.HTTPResponse.Status(code: answer.statusCode)
        if case .stream(let stream, _) = answer {
            return Response(status: status, headers: fields, body: ResponseBody(asyncSequence: stream.map { ByteBuffer(bytes: $0) }))
        }
        return Response(status: status, headers: fields, body: answer.bodyData.map { ResponseBody(byteBuffer: ByteBuffer(bytes: $0)) } ?? ResponseBody())
    }
}
