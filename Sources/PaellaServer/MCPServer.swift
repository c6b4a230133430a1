// Paella over the Model Context Protocol, on the official Swift SDK: the tools of MCPTools.swift, progress
// notifications per sampling step, cancellation, and the images made in a session as resources. One `PaellaMCP`
// serves every session of a process (`paella mcp`'s one stdio connection, or each HTTP session of
// `paella serve`'s /mcp); each session gets an SDK `Server` of its own with its own images.
import Foundation
import Logging
import MCP
import Paella
import PaellaIO

/// Runs one request on the pipeline with a progress handler; `paella mcp` runs it on a queue of its own,
/// `paella serve` through the server's queue, timeout and metrics.
public typealias MCPCompute = @Sendable (PipelineRequest, PipelineProgressHandler?) async throws -> PipelineResult

public struct PaellaMCP: Sendable {
    public let pipeline: Pipeline
    /// What a tool call may ask for: the server's policy within the pipeline's memory bound.
    public let limits: RequestLimits
    /// Pixels of an image argument, checked from its header before it is decoded.
    public let maxInputPixels: Int
    /// Images a session keeps as resources; the oldest is dropped first.
    public let keptImages: Int
    let compute: MCPCompute
    let logger: Logger

    /// `compute` defaults to running requests one at a time on a queue of this instance (a few more may wait),
    /// as `paella serve` does by default: one request already uses every core.
    public init(pipeline: Pipeline, limits: ServerLimits = .default, keptImages: Int = 32, compute: MCPCompute? = nil,
                logger: Logger = Logger(label: "paella.mcp")) {
        self.pipeline = pipeline
        self.limits = limits.requestLimits(for: pipeline)
        self.maxInputPixels = limits.maxInputPixels
        self.keptImages = keptImages
        self.logger = logger
        if let compute {
            self.compute = compute
        } else {
            let queue = JobQueue(maxRunning: 1, maxWaiting: 8)
            self.compute = { request, progress in
                do {
                    return try await queue.run { try await pipeline.run(request, progress: progress) }
                } catch JobQueue.Refusal.full {
                    throw MCPToolError("Paella is busy with \(queue.maxRunning) running and \(queue.maxWaiting) waiting requests; try again when one has finished.")
                }
            }
        }
    }

    /// What `initialize` tells the client, for its model's context.
    static let instructions = """
        Paella generates and edits images on this machine. Tools return PNG images plus their parameters; pass the \
        reported seed again to reproduce an image. Images made in this session are listed as resources \
        (paella://images/N.png). Sizes are WIDTHxHEIGHT in pixels; the model's default size is the safe choice.
        """

    /// A new SDK server for one session, with the tools and this session's images registered. Start it on a
    /// transport (`start(transport:)`).
    public func makeServer() async -> Server {
        let server = Server(name: "paella", version: PaellaVersion.string, title: "Paella for Swift", instructions: Self.instructions,
                            capabilities: Server.Capabilities(resources: .init(subscribe: false, listChanged: true), tools: .init(listChanged: false)))
        let images = MCPSessionImages(capacity: keptImages)
        let tools = MCPTool.allCases.map { $0.definition(limits: limits) }
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: tools) }
        // The handlers reach their server weakly: the server keeps them, and a session's server must be freed when
        // the session ends.
        await server.withMethodHandler(CallTool.self) { [weak server] parameters in
            try await self.call(parameters, images: images, server: server)
        }
        await server.withMethodHandler(ListResources.self) { _ in ListResources.Result(resources: await images.list()) }
        await server.withMethodHandler(ReadResource.self) { parameters in
            guard let png = await images.png(parameters.uri) else {
                throw MCPError.invalidParams("There is no image \(parameters.uri.prefix(80)) in this session; resources/list names the " +
                                            "images kept (the last \(images.capacity)).")
            }
            return ReadResource.Result(contents: [.binary(Data(png), uri: parameters.uri, mimeType: "image/png")])
        }
        return server
    }

    /// Runs a tool. A bad argument, a request out of the limits, a busy queue or a failed run is a tool error
    /// (`isError`, one sentence the client's model can act on); an unknown tool is a protocol error; a cancelled
    /// run throws `CancellationError`, and the SDK then sends no answer, as MCP asks.
    func call(_ parameters: CallTool.Parameters, images: MCPSessionImages, server: Server?) async throws -> CallTool.Result {
        guard let tool = MCPTool(rawValue: parameters.name) else {
            throw MCPError.invalidParams("There is no tool '\(parameters.name.prefix(40))'; this server has " +
                                         "\(MCPTool.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        do {
            let arguments = try ToolArguments(parameters.arguments ?? [:], allowed: tool.argumentNames, owner: tool.rawValue)
            let request = try tool.request(arguments, maxInputPixels: maxInputPixels, limits: limits)
            try pipeline.validate(request, limits: limits)
            // Made only for a request that runs: its sending task lives until `finish`.
            let progress = server.flatMap { server in parameters._meta?.progressToken.map { ProgressForwarder(server: server, token: $0) } }
            let result: PipelineResult
            do {
                result = try await compute(request, progress?.handler)
                await progress?.finish()
            } catch {
                await progress?.finish()
                throw error
            }
            return try await answer(result, images: images, server: server)
        } catch is CancellationError {
            logger.info("tool call cancelled", metadata: ["tool": "\(tool.rawValue)"])
            throw CancellationError()
        } catch {
            logger.info("tool call refused", metadata: ["tool": "\(tool.rawValue)", "reason": "\(error)"])
            return CallTool.Result(content: [.text(text: String(describing: error), annotations: nil, _meta: nil)], isError: true)
        }
    }

    /// The images as PNG image content, then their parameters as text; each image is also kept as a resource.
    private func answer(_ result: PipelineResult, images: MCPSessionImages, server: Server?) async throws -> CallTool.Result {
        var content: [Tool.Content] = []
        var uris: [String] = []
        for image in result.images {
            let png = try image.encodePNG(text: result.parameters.pngText)
            uris.append(await images.add(png, parameters: result.parameters))
            content.append(.image(data: Data(png).base64EncodedString(), mimeType: "image/png", annotations: nil, _meta: nil))
        }
        let p = result.parameters
        var lines = ["\(p.mode): \(result.images.count) image\(result.images.count == 1 ? "" : "s") of \(p.width)x\(p.height), seed \(p.seed), " +
                     "\(p.steps) steps; kept as \(uris.joined(separator: ", ")).",
                     "parameters: \(p.json)"]
        lines += result.warnings.map { "warning: \($0)" }
        content.append(.text(text: lines.joined(separator: "\n"), annotations: nil, _meta: nil))
        logger.info("tool images", metadata: ["mode": "\(p.mode)", "count": "\(result.images.count)", "seed": "\(p.seed)"])
        try? await server?.notify(ResourceListChangedNotification.message())
        return CallTool.Result(content: content, isError: false)
    }
}

/// Sends `notifications/progress` for each sampling step, in order. The pipeline reports steps on its own thread;
/// they are queued here and sent by one task, so that they reach the client in step order.
final class ProgressForwarder: Sendable {
    private let steps: AsyncStream<(step: Int, total: Int)>.Continuation
    private let sender: Task<Void, Never>

    init(server: Server, token: ProgressToken) {
        let (stream, continuation) = AsyncStream.makeStream(of: (step: Int, total: Int).self)
        steps = continuation
        sender = Task {
            for await (step, total) in stream {
                let message = "Sampling step \(step) of \(total)"
                try? await server.notify(ProgressNotification.message(.init(progressToken: token, progress: Double(step), total: Double(total),
                                                                            message: message)))
            }
        }
    }

    var handler: PipelineProgressHandler {
        { [steps] progress in
            if progress.stage == .sampling { steps.yield((progress.step, progress.totalSteps)) }
        }
    }

    /// Waits until every step reported so far is sent: the answer must come after its progress.
    func finish() async {
        steps.finish()
        await sender.value
    }
}

/// The images made in one session, newest last, at most `capacity` of them: the session's resources.
actor MCPSessionImages {
    struct Entry {
        let uri: String
        let png: [UInt8]
        let parameters: GenerationParameters
    }

    nonisolated let capacity: Int
    private var entries: [Entry] = []
    private var made = 0

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Keeps `png` and returns its URI, dropping the oldest image when full.
    func add(_ png: [UInt8], parameters: GenerationParameters) -> String {
        made += 1
        let uri = "paella://images/\(made).png"
        entries.append(Entry(uri: uri, png: png, parameters: parameters))
        if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        return uri
    }

    func list() -> [Resource] {
        entries.map { entry in
            let p = entry.parameters
            let subject = p.prompt ?? p.prompts?.joined(separator: " -> ") ?? p.mode
            return Resource(name: String(entry.uri.dropFirst("paella://images/".count)), uri: entry.uri,
                            description: "\(p.mode) of '\(subject.prefix(80))', seed \(p.seed), \(p.width)x\(p.height)",
                            mimeType: "image/png", size: entry.png.count)
        }
    }

    func png(_ uri: String) -> [UInt8]? { entries.first { $0.uri == uri }?.png }
}

extension PaellaMCP {
    /// Serves one session on standard input and output (`paella mcp`) until the client closes standard input.
    /// Standard output carries only the protocol; the logger must write elsewhere (swift-log's default is stderr).
    public func runOnStandardIO() async throws {
        let server = await makeServer()
        logger.info("serving MCP on standard input and output", metadata: ["model": "\(pipeline.modelName)"])
        try await server.start(transport: StdioTransport(logger: logger))
        await server.waitUntilCompleted()
        await server.stop()
    }
}
