#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPaellaKernels

/// A fixed set of worker threads that run `parallelFor` loops. Its size is configuration (default: the number
/// of cores), never global state. The calling thread takes part in every loop, so a pool of size 1 runs
/// everything inline with no thread hand-off.
public final class ThreadPool: @unchecked Sendable {
    /// Number of threads that work on a loop, the caller included.
    public let threadCount: Int
    private let shared: Shared
    private var workers: [pthread_t] = []

    /// The number of cores this process may use.
    public static var coreCount: Int { Int(pk_available_cores()) }

    public init(threads: Int = ThreadPool.coreCount) {
        precondition(threads >= 1, "ThreadPool: need at least one thread, got \(threads)")
        threadCount = threads
        shared = Shared()
        for _ in 1..<threads {
            // Each worker holds the shared state (not the pool), so the pool's deinit can stop and join them.
            let retained = Unmanaged.passRetained(shared).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let state = Unmanaged<Shared>.fromOpaque(raw!).takeRetainedValue()
                state.workerLoop()
                return nil
            }, retained)
            precondition(rc == 0, "ThreadPool: pthread_create failed with \(rc)")
            workers.append(thread)
        }
    }

    deinit {
        shared.shutDown()
        for t in workers { pthread_join(t, nil) }
    }

    /// Runs `body(i)` for every `i` in `0..<count`, spread over the pool; returns when all are done.
    /// Iterations must be independent. A call made while the pool is busy (from inside a loop body, or from
    /// another thread) runs inline on the calling thread instead of waiting.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threadCount == 1 || count == 1 || !shared.tryBeginLoop() {
            for i in 0..<count { body(i) }
            return
        }
        defer { shared.endLoop() }
        let level = pk_thread_isa()
        if level < 0 {
            withoutActuallyEscaping(body) { shared.run(count: count, body: $0) }
        } else {  // the caller forced its kernels' level (tests): the workers use it too while they run this loop
            withoutActuallyEscaping(body) { body in
                shared.run(count: count) { i in
                    let previous = pk_set_thread_isa(level)
                    body(i)
                    pk_set_thread_isa(previous)
                }
            }
        }
    }

    /// Splits `0..<total` into about one contiguous chunk per thread (at least `minChunk` long) and runs
    /// `body(range)` for each chunk in parallel.
    public func parallelChunks(_ total: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if total <= 0 { return }
        let chunks = max(1, min(threadCount, total / max(minChunk, 1)))
        let size = (total + chunks - 1) / chunks
        parallelFor(chunks) { c in
            let start = c * size
            let end = min(total, start + size)
            if start < end { body(start..<end) }
        }
    }

    /// The state the workers share with the pool; everything below `mutex` is guarded by it.
    private final class Shared: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var wake = pthread_cond_t()
        private var done = pthread_cond_t()
        private var loopMutex = pthread_mutex_t()  // held for a whole loop: one loop at a time
        private var job: ((Int) -> Void)?
        private var jobCount = 0
        private var nextIndex = 0
        private var unfinished = 0
        private var generation = 0
        private var shuttingDown = false

        init() {
            pthread_mutex_init(&mutex, nil)
            pthread_mutex_init(&loopMutex, nil)
            pthread_cond_init(&wake, nil)
            pthread_cond_init(&done, nil)
        }

        deinit {
            pthread_mutex_destroy(&mutex)
            pthread_mutex_destroy(&loopMutex)
            pthread_cond_destroy(&wake)
            pthread_cond_destroy(&done)
        }

        func tryBeginLoop() -> Bool { pthread_mutex_trylock(&loopMutex) == 0 }
        func endLoop() { pthread_mutex_unlock(&loopMutex) }

        func shutDown() {
            pthread_mutex_lock(&mutex)
            shuttingDown = true
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
        }

        func run(count: Int, body: @escaping (Int) -> Void) {
            pthread_mutex_lock(&mutex)
            job = body
            jobCount = count
            nextIndex = 0
            unfinished = count
            generation &+= 1
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
            runIterations()
            pthread_mutex_lock(&mutex)
            while unfinished > 0 { pthread_cond_wait(&done, &mutex) }
            job = nil
            pthread_mutex_unlock(&mutex)
        }

        // Takes iterations of the current job until none are left. Called with `mutex` unlocked.
        private func runIterations() {
            while true {
                do {
                    // The copy of the closure must be released before the iteration is reported finished: the
                    // caller wraps it in withoutActuallyEscaping, which traps if a reference outlives the loop.
                    pthread_mutex_lock(&mutex)
                    let body = nextIndex < jobCount ? job : nil
                    let i = nextIndex
                    if body != nil { nextIndex += 1 }
                    pthread_mutex_unlock(&mutex)
                    guard let body else { return }
                    body(i)
                }
                pthread_mutex_lock(&mutex)
                unfinished -= 1
                if unfinished == 0 { pthread_cond_signal(&done) }
                pthread_mutex_unlock(&mutex)
            }
        }

        func workerLoop() {
            var seen = 0
            while true {
                pthread_mutex_lock(&mutex)
                while !shuttingDown && (generation == seen || job == nil) {
                    pthread_cond_wait(&wake, &mutex)
                }
                if shuttingDown {
                    pthread_mutex_unlock(&mutex)
                    return
                }
                seen = generation
                pthread_mutex_unlock(&mutex)
                runIterations()
            }
        }
    }
}
