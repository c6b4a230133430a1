import Foundation

/// Admission control for model work: at most `maxRunning` jobs compute at once, at most `maxWaiting` wait for a
/// slot in arrival order, and any more are refused at once (the client is told to retry later) rather than
/// piling up memory and latency. On shutdown the queue closes: new jobs are refused, waiting ones are dropped,
/// running ones may finish or are cancelled.
public actor JobQueue {
    public enum Refusal: Error, Equatable {
        /// Every running and waiting place is taken.
        case full
        /// The server is shutting down.
        case closed
    }

    public let maxRunning: Int
    public let maxWaiting: Int
    public private(set) var running = 0
    public var waiting: Int { waiters.count }
    public private(set) var isClosed = false

    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID: UInt64 = 0
    /// The tasks of running jobs, so that shutdown can cancel them.
    private var cancels: [UInt64: @Sendable () -> Void] = [:]

    public init(maxRunning: Int, maxWaiting: Int) {
        precondition(maxRunning >= 1 && maxWaiting >= 0, "JobQueue: maxRunning >= 1 and maxWaiting >= 0")
        self.maxRunning = maxRunning
        self.maxWaiting = maxWaiting
    }

    /// Runs `work` once a slot is free, throwing `Refusal.full` at once when the queue is full. Cancelling the
    /// caller cancels `work`, or takes it out of the queue when it is still waiting. `admitted` is called as soon
    /// as the job has a place, running or waiting (so that a caller can answer before the job is done).
    public func run<T: Sendable>(admitted: (@Sendable () -> Void)? = nil,
                                 _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let id = nextID
        nextID += 1
        try await acquire(id, admitted: admitted)
        defer { release(id) }
        // The work runs in a task of its own that the queue can cancel at shutdown; the caller's cancellation
        // is passed on to it.
        let task = Task<T, any Error> { try await work() }
        cancels[id] = { task.cancel() }
        return try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }

    private func acquire(_ id: UInt64, admitted: (@Sendable () -> Void)?) async throws {
        if isClosed { throw Refusal.closed }
        if running < maxRunning && waiters.isEmpty {
            running += 1
            admitted?()
            return
        }
        guard waiters.count < maxWaiting else { throw Refusal.full }
        admitted?()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiters.append((id, continuation))
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
        // `release` handed its slot over to this job (running was not decremented), so nothing to count here.
    }

    private func cancelWaiter(_ id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    private func release(_ id: UInt64) {
        cancels[id] = nil
        if !waiters.isEmpty {
            // The slot passes straight to the oldest waiter, so a newcomer cannot overtake it.
            waiters.removeFirst().continuation.resume()
        } else {
            running -= 1
        }
    }

    /// Refuses new jobs and drops the waiting ones (they fail with `Refusal.closed`); running jobs go on.
    public func close() {
        isClosed = true
        let dropped = waiters
        waiters.removeAll()
        for waiter in dropped { waiter.continuation.resume(throwing: Refusal.closed) }
    }

    /// Cancels every running job (each stops before its next sampling step).
    public func cancelRunning() {
        for cancel in cancels.values { cancel() }
    }

    /// Waits until no job runs or `seconds` have passed; true when the queue drained in time.
    public func drain(within seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while running > 0 || !waiters.isEmpty {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }
}
