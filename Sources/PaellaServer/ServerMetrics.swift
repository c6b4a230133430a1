import Foundation
import Hummingbird
import Paella
import Prometheus

/// What GET /metrics reports, in Prometheus' text format: the queue, jobs by how they ended, the time of each
/// sampling step and of each request. A registry of the server's own (no global metrics system), so that
/// several servers in one process, as in the tests, count apart.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let running: Gauge
    let queued: Gauge
    let succeeded: Counter, failed: Counter, cancelled: Counter, refused: Counter
    let stepSeconds: DurationHistogram
    let requestSeconds: DurationHistogram

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        running = registry.makeGauge(name: "paella_jobs_running", help: "Jobs computing now.")
        queued = registry.makeGauge(name: "paella_jobs_queued", help: "Jobs waiting for a free slot.")
        func jobs(_ state: String) -> Counter {
            registry.makeCounter(name: "paella_jobs_total", labels: [("state", state)], help: "Jobs by how they ended.")
        }
        (succeeded, failed, cancelled, refused) = (jobs("succeeded"), jobs("failed"), jobs("cancelled"), jobs("refused"))
        // Paella v1 takes about 0.1-1 s a step on a CPU, the bundled model milliseconds; requests add decoding and queueing.
        let steps: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10].map { .milliseconds(Int($0 * 1000)) }
        stepSeconds = registry.makeDurationHistogram(name: "paella_step_duration_seconds", buckets: steps, help: "Time of one sampling step.")
        let requests: [Duration] = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300].map { .milliseconds(Int($0 * 1000)) }
        requestSeconds = registry.makeDurationHistogram(name: "paella_request_duration_seconds", buckets: requests,
                                                        help: "Time from a request's arrival to its response.")
    }

    /// Counts how a job ended.
    func ended(_ error: (any Error)?) {
        switch error {
        case nil: succeeded.increment()
        case is CancellationError: cancelled.increment()
        case is JobQueue.Refusal: refused.increment()
        default: failed.increment()
        }
    }

    /// A progress handler that times each sampling step of one request (from the previous step's report).
    func stepTimer() -> PipelineProgressHandler {
        let last = LastElapsed()
        return { [stepSeconds] p in
            guard p.stage == .sampling, let previous = last.swap(p.elapsed) else { _ = last.swap(p.elapsed); return }
            stepSeconds.record(.nanoseconds(Int64(max(0, p.elapsed - previous) * 1e9)))
        }
    }

    /// The text format, the queue's gauges read now.
    func text(queue: JobQueue) async -> [UInt8] {
        running.set(Double(await queue.running))
        queued.set(Double(await queue.waiting))
        return registry.emitToBuffer()
    }
}

/// The elapsed time of a request's previous report.
private final class LastElapsed: @unchecked Sendable {  // `value` is behind `lock`
    private let lock = NSLock()
    private var value: Double?
    func swap(_ new: Double) -> Double? { lock.withLock { defer { value = new }; return value } }
}

/// Times every request for `paella_request_duration_seconds`.
struct RequestTimingMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        defer { metrics.requestSeconds.record(ContinuousClock.now - start) }
        return try await next(request, context)
    }
}
