import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaServer

/// `paella serve`: the images API over one loaded model, until SIGINT or SIGTERM.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve an OpenAI-compatible images API (generations, edits, variations) over one loaded model.",
        discussion: "Listens on 127.0.0.1 by default; any other address needs an API key, sent by clients as " +
            "'Authorization: Bearer KEY'. SIGINT or SIGTERM stop it gracefully.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var compute: ComputeOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 8080

    @Option(name: .customLong("api-key"), help: ArgumentHelp("Bearer token every API request must carry.",
                                                             discussion: "Default: $PAELLA_API_KEY; none on loopback."))
    var apiKey: String?

    @Option(help: "Jobs computing at once.")
    var jobs = 1

    @Option(help: "Jobs that may wait for a free slot; more get 429 with Retry-After.")
    var queue = 8

    @Option(help: "Seconds a job may compute before it is cancelled (504).")
    var timeout: Double = 300

    @Option(name: .customLong("max-images"), help: "Most images per request (n).")
    var maxImages = ServerLimits.default.maxImages

    @Option(name: .customLong("max-side"), help: "Largest width or height of a generated image, in pixels.")
    var maxSide = ServerLimits.default.maxSide

    @Option(name: .customLong("max-upload-bytes"), help: "Largest request body, in bytes.")
    var maxUploadBytes = ServerLimits.default.maxUploadBytes

    @Option(name: .customLong("max-input-pixels"), help: "Largest uploaded image, in pixels (width x height).")
    var maxInputPixels = ServerLimits.default.maxInputPixels

    @Option(help: ArgumentHelp("This replica's name behind a reverse proxy: it starts every job and image id, so the proxy can route a job's follow-ups to it.",
                               discussion: "Lowercase letters and digits; see docs/scaling-out.md."))
    var replica: String?

    func run() async throws {
        var limits = ServerLimits.default
        limits.maxImages = maxImages
        limits.maxSide = maxSide
        limits.maxUploadBytes = maxUploadBytes
        limits.maxInputPixels = maxInputPixels
        let key = apiKey ?? ProcessInfo.processInfo.environment["PAELLA_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let configuration = ServerConfiguration(host: host, port: port, apiKey: key, limits: limits,
                                                maxConcurrentJobs: jobs, maxQueuedJobs: queue, jobTimeoutSeconds: timeout,
                                                replica: replica)
        // Refuse an unsafe or impossible setting before spending seconds on loading the model.
        try reportingErrors { try configuration.validate() }
        // A request thread per job would otherwise spread freed memory over up to eight arenas per core.
        HeapMemory.limitArenas(to: max(2, ThreadPool.coreCount))
        let server = try reportingErrors { () throws -> PaellaServer in
            let folder = try ModelFolder(path: try model.folderPath())
            let pipeline = try Pipeline(folder: folder, compute: try compute.makeCompute(), loadVision: folder.hasVisionTower,
                                        limits: try model.limits(), precision: model.precision)
            return try PaellaServer(pipeline: pipeline, configuration: configuration)
        }
        try await reportingErrorsAsync { try await server.run() }
    }
}
