import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Paella
import ServiceLifecycle
import UnixSignals

/// `paella serve`: one loaded `Pipeline` behind an HTTP server that speaks OpenAI's images API.
///
/// Every request shares the pipeline; model work goes through a bounded `JobQueue`, finished images for
/// `response_format=url` are kept in an `ImageStore`. `application()` builds the Hummingbird application (tests
/// drive it through HummingbirdTesting); `run()` serves it until SIGINT or SIGTERM.
public final class PaellaServer: Sendable {
    public let pipeline: Pipeline
    public let configuration: ServerConfiguration
    public let queue: JobQueue
    public let images: ImageStore
    /// The jobs of the native API, kept as long as the images.
    let jobs: JobStore
    /// The A1111 (sdapi) requests computing, for its progress and interrupt endpoints.
    let sdapi = SDAPIActivity()
    let metrics = ServerMetrics()
    /// The sessions of the MCP endpoint, /mcp.
    public let mcpSessions: MCPSessions
    public let logger: Logger

    /// Checks `configuration` (a non-loopback host needs an API key) before anything is built.
    public init(pipeline: Pipeline, configuration: ServerConfiguration, logger: Logger = Logger(label: "paella.serve")) throws {
        try configuration.validate()
        self.pipeline = pipeline
        self.configuration = configuration
        self.queue = JobQueue(maxRunning: configuration.maxConcurrentJobs, maxWaiting: configuration.maxQueuedJobs)
        self.images = ImageStore(capacity: configuration.keptImages, makeID: configuration.makeID)
        self.jobs = JobStore(capacity: configuration.keptImages)
        self.mcpSessions = MCPSessions(loopbackOnly: ServerConfiguration.isLoopback(configuration.host), logger: logger)
        self.logger = logger
    }

    /// The routes: the web page at /, OpenAI's images API under /v1, the native jobs API and stored images under /api,
    /// A1111's under /sdapi, MCP at /mcp, the health check.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        // Outermost: every error below, authentication's included, leaves in OpenAI's error shape (FastAPI's under /sdapi).
        router.add(middleware: OpenAIErrorMiddleware())
        router.add(middleware: LogRequestsMiddleware(.info))
        router.add(middleware: RequestTimingMiddleware(metrics: metrics))
        if let key = configuration.apiKey { router.add(middleware: BearerAuthMiddleware(key: key)) }

        addPageRoutes(to: router)
        router.post("/v1/images/generations") { request, context in try await self.generations(request, context) }
        router.post("/v1/images/edits") { request, context in try await self.edits(request, context) }
        router.post("/v1/images/variations") { request, context in try await self.variations(request, context) }
        router.get("/v1/models") { _, _ in try self.json(ModelList(data: [self.modelEntry])) }
        router.get("/v1/models/{id}") { _, context in
            guard context.parameters.get("id") == self.pipeline.modelName else {
                throw APIError(.notFound, "This server serves only the model \(self.pipeline.modelName).", param: "model", code: "model_not_found")
            }
            return try self.json(self.modelEntry)
        }
        router.get("/api/images/{id}.png") { _, context in
            guard let id = context.parameters.get("id"), let png = await self.images.png(id) else {
                throw APIError(.notFound, "There is no such image; images are kept for the last \(self.configuration.keptImages) results only.",
                               code: "not_found")
            }
            return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "private, max-age=86400"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: png)))
        }
        router.post("/api/jobs") { request, context in try await self.createJob(request, context) }
        router.get("/api/jobs/{id}") { _, context in try await self.getJob(context) }
        router.get("/api/jobs/{id}/events") { _, context in try await self.jobEvents(context) }
        router.delete("/api/jobs/{id}") { _, context in try await self.deleteJob(context) }
        addSDAPIRoutes(to: router)
        addMCPRoutes(to: router)
        router.get("/healthz") { _, _ in try await self.health() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: await self.metrics.text(queue: self.queue))))
        }
        return router
    }

    /// The Hummingbird application on the configured address.
    public func application() -> some ApplicationProtocol {
        Application(router: router(),
                    configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port),
                                                            serverName: "paella/\(PaellaVersion.string)"),
                    logger: logger)
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully: the queue closes (new jobs get 503), running
    /// jobs get `shutdownGraceSeconds` to finish and are cancelled after that, then the HTTP server stops.
    public func run() async throws {
        // The group shuts services down in reverse order: the drain first, the HTTP server once it is done.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [application(), JobDrainService(queue: queue, grace: configuration.shutdownGraceSeconds, logger: logger),
                       MCPSessionsShutdownService(sessions: mcpSessions)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("serving", metadata: ["model": "\(pipeline.modelName)", "address": "\(configuration.host):\(configuration.port)",
                                          "auth": "\(configuration.apiKey == nil ? "none" : "bearer")"])
        try await group.run()
    }

    // MARK: Small endpoints

    struct ModelEntry: Codable, Equatable {
        var id: String
        var object = "model"
        var created = 0
        var ownedBy = "paella"
        enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
    }

    struct ModelList: Codable, Equatable {
        var object = "list"
        var data: [ModelEntry]
    }

    var modelEntry: ModelEntry { ModelEntry(id: pipeline.modelName) }

    struct Health: Codable, Equatable {
        var status: String
        var model: String
        var running: Int
        var queued: Int
    }

    func health() async throws -> Response {
        let closed = await queue.isClosed
        let body = Health(status: closed ? "shutting_down" : "ok", model: pipeline.modelName,
                          running: await queue.running, queued: await queue.waiting)
        return try json(body, status: closed ? .serviceUnavailable : .ok)
    }

    /// `value` as a JSON response.
    func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    /// Runs `request` on the pipeline through the queue, under the timeout, timed and counted in the metrics; a
    /// full queue is a 429 and a closing one a 503, both with `Retry-After`.
    func compute(_ request: PipelineRequest, admitted: (@Sendable () -> Void)? = nil,
                 progress: PipelineProgressHandler? = nil) async throws -> PipelineResult {
        let timeout = configuration.jobTimeoutSeconds
        let timer = metrics.stepTimer()
        do {
            let result = try await queue.run(admitted: admitted) { [pipeline] in
                try await withTimeout(seconds: timeout) {
                    try await pipeline.run(request) { p in
                        timer(p)
                        progress?(p)
                    }
                }
            }
            metrics.ended(nil)
            return result
        } catch {
            metrics.ended(error)
            throw Self.refusal(error, configuration: configuration, queue: queue)
        }
    }

    /// The client's error for a queue refusal; any other error as it is.
    private static func refusal(_ error: any Error, configuration: ServerConfiguration, queue: JobQueue) -> any Error {
        switch error as? JobQueue.Refusal {
        case .full?:
            return APIError(.tooManyRequests, "The server is busy (\(queue.maxRunning) running, \(queue.maxWaiting) waiting); retry after " +
                            "\(configuration.retryAfterSeconds) seconds.", type: "rate_limit_error", code: "queue_full",
                            retryAfter: configuration.retryAfterSeconds)
        case .closed?:
            return APIError(.serviceUnavailable, "The server is shutting down; try again shortly.", type: "server_error",
                            code: "shutting_down", retryAfter: configuration.retryAfterSeconds)
        case nil:
            return error
        }
    }
}

/// Runs `work`, cancelling it after `seconds` (it stops before its next sampling step) with a 504 that says so.
func withTimeout<T: Sendable>(seconds: Double, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await work() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            throw APIError(.gatewayTimeout, "The request ran longer than this server's limit of \(seconds) seconds; ask for fewer steps, " +
                           "images or pixels.", type: "server_error", code: "timeout")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw CancellationError() }
        return first
    }
}

/// Waits for graceful shutdown, then closes the queue and gives running jobs a bounded time before cancelling
/// them, so that SIGTERM never waits on a long generation for more than the grace period.
struct JobDrainService: Service {
    let queue: JobQueue
    let grace: Double
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        await queue.close()
        if await queue.drain(within: grace) { return }
        logger.warning("cancelling running jobs after the shutdown grace period", metadata: ["seconds": "\(grace)"])
        await queue.cancelRunning()
        _ = await queue.drain(within: 30)
    }
}
