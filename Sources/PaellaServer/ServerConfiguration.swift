import Foundation
import Paella

/// How big a request may be. Every limit is checked before the work it guards: sizes and counts before a job is
/// queued, upload bytes while the body is read, image pixels from the file's header before any pixel memory.
public struct ServerLimits: Sendable, Equatable {
    /// Characters of a prompt or negative prompt (OpenAI's dall-e-2 takes 1,000).
    public var maxPromptLength: Int
    /// Images per request (`n`).
    public var maxImages: Int
    /// Width or height of a generated image, in pixels.
    public var maxSide: Int
    /// Bytes of a request body (JSON or multipart, all parts together).
    public var maxUploadBytes: Int
    /// Pixels of an uploaded image (width x height), read from its header before it is decoded.
    public var maxInputPixels: Int
    /// Sampling steps a request may ask for.
    public var maxSteps: Int
    /// Frames of an interpolation job, regions of a composition.
    public var maxFrames: Int

    /// 1,000 characters, 4 images, 1024 pixels a side, 8 MiB uploads, 4096 x 4096 input pixels, 100 steps, 16
    /// frames: room
    /// for everything Paella v1 does (256 x 256 in 12 steps), small enough that one request cannot hold the CPU
    /// or the memory for long.
    public static let `default` = ServerLimits(maxPromptLength: 1000, maxImages: 4, maxSide: 1024,
                                               maxUploadBytes: 8 << 20, maxInputPixels: 4096 * 4096, maxSteps: 100)

    public init(maxPromptLength: Int, maxImages: Int, maxSide: Int, maxUploadBytes: Int, maxInputPixels: Int, maxSteps: Int,
                maxFrames: Int = 16) {
        self.maxPromptLength = maxPromptLength
        self.maxImages = maxImages
        self.maxSide = maxSide
        self.maxUploadBytes = maxUploadBytes
        self.maxInputPixels = maxInputPixels
        self.maxSteps = maxSteps
        self.maxFrames = maxFrames
    }
}

extension ServerLimits {
    /// These limits as the pipeline's: this policy (images, side, steps, frames, prompt length) within the memory
    /// bound of the loaded `pipeline`. Every number of a request is checked against them by the library.
    public func requestLimits(for pipeline: Pipeline) -> RequestLimits {
        RequestLimits(memoryBytes: pipeline.limits.memoryBytes, maxCount: maxImages, maxSteps: maxSteps, maxFrames: maxFrames,
                      maxRegions: maxFrames, maxSide: maxSide, maxPromptCharacters: maxPromptLength)
    }
}

/// Everything `paella serve` is told on its command line, checked once before anything binds.
public struct ServerConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// Bearer token every API request must carry; nil = no authentication (loopback only).
    public var apiKey: String?
    public var limits: ServerLimits
    /// Jobs computing at once. One by default: the model's thread pool already uses every core, so a second job
    /// at the same time only makes both slower.
    public var maxConcurrentJobs: Int
    /// Jobs waiting for a free slot; one more is refused with 429.
    public var maxQueuedJobs: Int
    /// Seconds a refused client is told to wait (`Retry-After`).
    public var retryAfterSeconds: Int
    /// Finished images kept for `response_format=url`; the oldest is dropped first.
    public var keptImages: Int
    /// Seconds that running jobs get to finish on shutdown before they are cancelled.
    public var shutdownGraceSeconds: Double
    /// Seconds a job may compute (time waiting in the queue not counted) before it is cancelled.
    public var jobTimeoutSeconds: Double
    /// This server's name among replicas behind one reverse proxy, or nil when it runs alone. It starts every job
    /// and image id ("a-..."), so that the proxy can send a job's state, events and images to the replica that
    /// holds them (docs/scaling-out.md); lowercase letters and digits, at most 16.
    public var replica: String?

    public init(host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, limits: ServerLimits = .default,
                maxConcurrentJobs: Int = 1, maxQueuedJobs: Int = 8, retryAfterSeconds: Int = 10, keptImages: Int = 256,
                shutdownGraceSeconds: Double = 10, jobTimeoutSeconds: Double = 300, replica: String? = nil) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.limits = limits
        self.maxConcurrentJobs = maxConcurrentJobs
        self.maxQueuedJobs = maxQueuedJobs
        self.retryAfterSeconds = retryAfterSeconds
        self.keptImages = keptImages
        self.shutdownGraceSeconds = shutdownGraceSeconds
        self.jobTimeoutSeconds = jobTimeoutSeconds
        self.replica = replica
    }

    /// A new random id for a job or an image, prefixed with the replica's name when it has one.
    func makeID() -> String {
        let random = UUID().uuidString.lowercased()
        return replica.map { "\($0)-\(random)" } ?? random
    }

    /// Refuses settings that cannot work or are unsafe, with one sentence saying what to change.
    public func validate() throws {
        guard (0...65535).contains(port) else { throw ServerConfigurationError("The port must be between 0 and 65535, got \(port).") }
        if let apiKey, apiKey.isEmpty { throw ServerConfigurationError("The API key is empty; give a non-empty --api-key or unset PAELLA_API_KEY.") }
        // Anyone who can reach a non-loopback address could run the model; a key keeps that to the people given it.
        if apiKey == nil && !Self.isLoopback(host) {
            throw ServerConfigurationError("Refusing to listen on \(host) without an API key: pass --api-key KEY (or set PAELLA_API_KEY), or listen on 127.0.0.1.")
        }
        guard maxConcurrentJobs >= 1 else { throw ServerConfigurationError("At least one job must be able to run (--jobs), got \(maxConcurrentJobs).") }
        guard maxQueuedJobs >= 0 else { throw ServerConfigurationError("The queue length (--queue) must be 0 or more, got \(maxQueuedJobs).") }
        guard jobTimeoutSeconds > 0 else { throw ServerConfigurationError("The job timeout (--timeout) must be more than 0 seconds, got \(jobTimeoutSeconds).") }
        guard retryAfterSeconds >= 1, keptImages >= 1, shutdownGraceSeconds >= 0 else {
            throw ServerConfigurationError("Retry-After and kept images must be at least 1, the shutdown grace at least 0.")
        }
        if let replica, !(1...16).contains(replica.count) || !replica.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) }) {
            throw ServerConfigurationError("The replica name (--replica) must be 1 to 16 lowercase letters or digits, got \"\(replica)\".")
        }
        let l = limits
        guard l.maxPromptLength >= 1, l.maxImages >= 1, l.maxSide >= 1, l.maxUploadBytes >= 1, l.maxInputPixels >= 1, l.maxSteps >= 1, l.maxFrames >= 2 else {
            throw ServerConfigurationError("Every server limit must be at least 1.")
        }
        // The server's limits narrow the library's, never widen them (a step count past the library's bound would
        // pass here and then be refused mid-request).
        let library = RequestLimits.default
        guard l.maxSteps <= library.maxSteps, l.maxImages <= library.maxCount, l.maxFrames <= library.maxFrames else {
            throw ServerConfigurationError("The server's step, image and frame limits may not exceed the library's (\(library.maxSteps) steps, "
                                           + "\(library.maxCount) images, \(library.maxFrames) frames).")
        }
    }

    /// Whether `host` names this machine only: `localhost`, an address in 127.0.0.0/8, or `::1`.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

/// A configuration `paella serve` refuses, as one sentence.
public struct ServerConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
