import Foundation
import Paella
import PaellaCore

/// One request of the native jobs API: its state, progress and result, shared by the task that runs it and the
/// requests that look at it or stream its events.
public final class Job: @unchecked Sendable {  // every mutable field is behind `lock`
    public enum State: String, Codable, Sendable {
        case queued, running, succeeded, failed, cancelled
        var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    /// What GET /api/jobs/{id} answers and what the events carry.
    public struct Snapshot: Encodable, Sendable {
        var id: String
        var mode: String
        var state: State
        var stage: String?
        var step: Int
        var totalSteps: Int
        /// Links to the finished images, in order.
        var images: [String]
        var parameters: GenerationParameters?
        var error: APIError.Detail?
        enum CodingKeys: String, CodingKey { case id, mode, state, stage, step, totalSteps = "total_steps", images, parameters, error }
    }

    public let id: String
    public let mode: String
    private let lock = NSLock()
    private var state = State.queued
    private var progress: PipelineProgress?
    private var images: [String] = []
    private var parameters: GenerationParameters?
    private var error: APIError?
    private var listeners: [UUID: AsyncStream<String>.Continuation] = [:]
    private var cancelWork: (@Sendable () -> Void)?
    private var finished: [CheckedContinuation<Void, Never>] = []

    init(id: String, mode: String) {
        self.id = id
        self.mode = mode
    }

    public var snapshot: Snapshot { lock.withLock { unlockedSnapshot } }

    private var unlockedSnapshot: Snapshot {
        Snapshot(id: id, mode: mode, state: state, stage: progress?.stage.rawValue, step: progress?.step ?? 0,
                 totalSteps: progress?.totalSteps ?? 0, images: images, parameters: parameters,
                 error: error.map { APIError.Detail(message: $0.message, type: $0.type, param: $0.param, code: $0.code) })
    }

    /// Remembers how to cancel the work, for DELETE and for a listener that goes away.
    func setCancel(_ cancel: @escaping @Sendable () -> Void) { lock.withLock { cancelWork = cancel } }

    public func cancel() { lock.withLock { cancelWork }?() }

    // MARK: Changes, each sent to every listener as a server-sent event

    /// A step or stage done. After a sampling step, when someone listens, `preview` renders the tokens so far
    /// (outside the lock: it decodes an image); nobody listening costs nothing.
    func update(_ p: PipelineProgress, preview: (Tensor) -> String?) {
        let listening = lock.withLock { () -> Bool in
            state = .running
            progress = p
            return !listeners.isEmpty
        }
        let image = listening ? p.tokens.flatMap(preview) : nil
        lock.withLock {
            broadcast(event: "progress", ProgressEvent(stage: p.stage.rawValue, step: p.step, totalSteps: p.totalSteps, elapsed: p.elapsed,
                                                       preview: image))
        }
    }

    func succeed(images: [String], parameters: GenerationParameters) {
        end(.succeeded) {
            self.images = images
            self.parameters = parameters
        }
    }

    func fail(_ error: APIError) { end(.failed) { self.error = error } }

    /// Cancelled by DELETE, by its last listener leaving, or by shutdown: not an error of the request.
    func cancelled() { end(.cancelled) {} }

    private func end(_ final: State, _ change: () -> Void) {
        let waiting: [CheckedContinuation<Void, Never>] = lock.withLock {
            guard !state.isFinal else { return [] }
            change()
            state = final
            broadcast(event: final.rawValue, unlockedSnapshot)
            for listener in listeners.values { listener.finish() }
            listeners.removeAll()
            cancelWork = nil
            defer { finished.removeAll() }
            return finished
        }
        for c in waiting { c.resume() }
    }

    /// Waits until the job has ended, whichever way.
    func waitUntilFinished() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = lock.withLock { () -> Bool in
                if state.isFinal { return true }
                finished.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    // MARK: Listening

    /// Listeners now (for tests that must know a stream is attached before the job moves).
    var listenerCount: Int { lock.withLock { listeners.count } }

    /// The job's server-sent events: its state now, each progress step, and its end (`succeeded`, `failed` or
    /// `cancelled` with the final state), after which the stream finishes. A listener that goes away before the
    /// end, when no other listener is left, cancels the job: nobody would see its result.
    func events() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .unbounded)
        let key = UUID()
        lock.withLock {
            continuation.yield(Self.message(event: "state", unlockedSnapshot))
            if state.isFinal {
                continuation.finish()
            } else {
                listeners[key] = continuation
            }
        }
        continuation.onTermination = { [weak self] reason in
            guard case .cancelled = reason, let self else { return }
            let abandoned = self.lock.withLock { () -> Bool in
                self.listeners[key] = nil
                return self.listeners.isEmpty && !self.state.isFinal
            }
            if abandoned { self.cancel() }
        }
        return stream
    }

    struct ProgressEvent: Encodable {
        var stage: String, step: Int, totalSteps: Int, elapsed: Double
        /// A small PNG of the first image at this step, as a `data:` URL (sampling steps only).
        var preview: String?
        enum CodingKeys: String, CodingKey { case stage, step, totalSteps = "total_steps", elapsed, preview }
    }

    private func broadcast(event: String, _ value: some Encodable) {
        let text = Self.message(event: event, value)
        for listener in listeners.values { listener.yield(text) }
    }

    /// One server-sent event: `event: NAME`, one `data:` line of JSON, a blank line.
    static func message(event: String, _ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        return "event: \(event)\ndata: \(json)\n\n"
    }
}

/// The jobs of the native API by id; once `capacity` are kept, the oldest finished one is forgotten.
actor JobStore {
    let capacity: Int
    private var jobs: [String: Job] = [:]
    private var order: [String] = []

    init(capacity: Int) { self.capacity = capacity }

    func add(_ job: Job) {
        jobs[job.id] = job
        order.append(job.id)
        while order.count > capacity, let index = order.firstIndex(where: { jobs[$0]?.snapshot.state.isFinal ?? true }) {
            jobs[order.remove(at: index)] = nil
        }
    }

    func job(_ id: String) -> Job? { jobs[id] }
}
