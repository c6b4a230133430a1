// Data-parallel training over MPI: each rank trains on its slice of every batch, the gradients are summed over
// the ranks, and every rank applies the same update, so N ranks give the weights one process would.
import Foundation
import PaellaCore

/// A rank's part of one global batch.
public struct BatchShare: Sendable, Equatable {
    /// Positions in the global batch this rank trains on.
    public var range: Range<Int>
    /// The global batch size.
    public var total: Int
    /// The whole batch in one process.
    public static func whole(_ total: Int) -> BatchShare { BatchShare(range: 0..<total, total: total) }
    /// This slice's weight in a mean over the global batch.
    public var fraction: Double { Double(range.count) / Double(total) }
}

/// The ranks of a data-parallel job (one process: rank 0 of 1, no MPI). Every rank must make the same calls in
/// the same order.
public struct DataParallel: Sendable {
    public let rank: Int
    public let size: Int
    let communicator: MPICommunicator?
    /// Seconds spent in all-reduces so far (gradients and statistics).
    public var allreduceSeconds: Double { timer.seconds }
    private let timer = Stopwatch()

    /// One process, no MPI.
    public static let single = DataParallel(communicator: nil)

    init(communicator: MPICommunicator?) {
        self.communicator = communicator
        rank = communicator?.rank ?? 0
        size = communicator?.size ?? 1
    }

    /// MPI's world when this process was started by `mpirun` or `srun` with more than one process (Open MPI
    /// loaded and initialised), else one process. Throws when a launcher started it but Open MPI cannot be used.
    public static func start(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DataParallel {
        guard MPILaunch.detect(environment) != nil else { return .single }
        return DataParallel(communicator: try MPILibrary.load(environment).initialize())
    }

    /// The MPI library in use (nil in one process).
    public var library: MPILibrary? { communicator?.library }

    /// Rank 0 writes the logs, samples and checkpoints.
    public var isMain: Bool { rank == 0 }

    /// Rank `rank`'s contiguous slice of a global batch of `total`: sizes differ by at most one.
    public func share(of total: Int) -> BatchShare {
        precondition(total >= size, "DataParallel: a batch of \(total) cannot be split over \(size) ranks")
        return BatchShare(range: (rank * total / size)..<((rank + 1) * total / size), total: total)
    }

    /// Sums the ranks' gradients, each rank's times `weight` (its share of the global batch, when the gradients
    /// are means over its slice), in place: the tensors are packed into flat buckets of at most 16 Mi floats,
    /// each summed by one `MPI_Allreduce`. One process: nothing changes (its share is the whole batch).
    public func sum(_ gradients: inout TrainableParameters, weight: Double) {
        guard let communicator else { return }
        let start = Date()
        defer { timer.add(Date().timeIntervalSince(start)) }
        let w = Float(weight)
        Self.forEachBucket(of: &gradients, floats: Self.bucketFloats) { bucket in
            for j in bucket.indices { bucket[j] *= w }
            communicator.allreduceSum(bucket)
        }
    }

    /// Packs consecutive tensors of `gradients` into flat buckets of at most `floats` elements (a larger tensor
    /// alone), lets `body` change each bucket, and writes it back.
    static func forEachBucket(of gradients: inout TrainableParameters, floats: Int,
                              _ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        var first = 0
        while first < gradients.tensors.count {
            var last = first + 1, count = gradients.tensors[first].count
            while last < gradients.tensors.count && count + gradients.tensors[last].count <= floats {
                count += gradients.tensors[last].count
                last += 1
            }
            var bucket = [Float](repeating: 0, count: count)
            bucket.withUnsafeMutableBufferPointer { flat in
                var offset = 0
                for i in first..<last {
                    gradients.tensors[i].withFloats { g in
                        for j in 0..<g.count { flat[offset + j] = g[j] }
                        offset += g.count
                    }
                }
                body(flat)
                offset = 0
                for i in first..<last {
                    gradients.tensors[i].withMutableFloats { g in
                        for j in 0..<g.count { g[j] = flat[offset + j] }
                        offset += g.count
                    }
                }
            }
            first = last
        }
    }

    /// `--exact-sums`: every rank holds the sum of its share's per-sample values, a node of the batch's
    /// `SampleTree` (`SampleTree.sharesAreSubtrees`); this adds the ranks' sums over the tree's top levels, so
    /// every rank ends with the whole batch's sum, bit for bit what one process gets. Two ranks: one all-reduce,
    /// which adds each element once (`a + b`, the root's one addition; IEEE addition is commutative, so both ranks
    /// get the same bits). More ranks: an all-reduce adds in an order of its own, so the ranks' sums are gathered
    /// (buckets of 16 Mi floats in all) and each rank adds them in the tree over ranks.
    public func combineExactly(_ sums: inout SampleSums, share: BatchShare) {
        guard let communicator else { return }
        precondition(SampleTree.sharesAreSubtrees(total: share.total, ranks: size) && share.range.count == share.total / size,
                     "DataParallel.combineExactly: \(size) ranks' shares of \(share.total) are not subtrees")
        let start = Date()
        defer { timer.add(Date().timeIntervalSince(start)) }
        if size == 2 {
            Self.forEachBucket(of: &sums.gradients, floats: Self.bucketFloats) { communicator.allreduceSum($0) }
            sums.statistics.withUnsafeMutableBufferPointer { communicator.allreduceSum($0) }
            return
        }
        /// The ranks' `values` gathered, then added in the tree over ranks.
        func combine<T: BinaryFloatingPoint>(_ values: UnsafeMutableBufferPointer<T>, _ reduce: (UnsafeMutableBufferPointer<T>) -> Void) {
            let n = values.count
            let all = allgather(UnsafeBufferPointer(values), at: rank * n, of: size * n, reduce)
            let total = SampleTree.sum(0..<size, leaf: { r in Array(all[(r * n)..<((r + 1) * n)]) }) { left, right in
                for j in left.indices { left[j] += right[j] }
            }
            for j in 0..<n { values[j] = total[j] }
        }
        Self.forEachBucket(of: &sums.gradients, floats: max(1, Self.bucketFloats / size)) { combine($0, communicator.allreduceSum) }
        sums.statistics.withUnsafeMutableBufferPointer { combine($0, communicator.allreduceSum) }
    }

    /// `local` placed at `offset` of a buffer of `count` elements, the rest filled by the other ranks' parts
    /// (every rank gets the whole buffer; the parts must not overlap). The buffer starts as -0, the identity of
    /// IEEE addition for every value (`x + -0 == x`, also for `x = -0`, which `+0` would turn into `+0`), and
    /// `reduce` sums it over the ranks: whatever order it adds in, each element comes out with its one writer's bits.
    private func allgather<T: BinaryFloatingPoint>(_ local: UnsafeBufferPointer<T>, at offset: Int, of count: Int,
                                                   _ reduce: (UnsafeMutableBufferPointer<T>) -> Void) -> [T] {
        var whole = [T](repeating: -T.zero, count: count)
        for i in local.indices { whole[offset + i] = local[i] }
        whole.withUnsafeMutableBufferPointer { reduce($0) }
        return whole
    }

    static let bucketFloats = 1 << 24

    /// Sums `values` over the ranks (every rank gets the sums).
    public func sum(_ values: [Double]) -> [Double] {
        guard let communicator else { return values }
        let start = Date()
        defer { timer.add(Date().timeIntervalSince(start)) }
        var result = values
        result.withUnsafeMutableBufferPointer { communicator.allreduceSum($0) }
        return result
    }

    /// The whole batch's `[total, ...]` tensor from each rank's `[share.count, ...]` slice (every rank gets it),
    /// bit for bit. Float32 tensors, or int32 ones (codes) whose values float32 holds exactly (below 2^24).
    public func gather(_ local: Tensor, share: BatchShare) -> Tensor {
        guard let communicator else { return local }
        precondition(local.shape.first == share.range.count, "DataParallel.gather: \(local.shape) is not a slice of \(share.range.count)")
        let integers = local.dtype == .int32
        let values = integers ? local.integers().map { Float($0) } : local.floats
        let row = values.count / max(share.range.count, 1)
        var shape = local.shape
        shape[0] = share.total
        let start = Date()
        let whole = values.withUnsafeBufferPointer {
            allgather($0, at: share.range.lowerBound * row, of: row * share.total, communicator.allreduceSum)
        }
        timer.add(Date().timeIntervalSince(start))
        return integers ? Tensor(int32: whole.map { Int32($0) }, shape: shape) : Tensor(whole, shape: shape)
    }

    /// Replaces the weights and optimizer moments on every rank by rank 0's (where a run starts or resumes).
    func broadcast(_ parameters: inout TrainableParameters, _ optimizer: inout AdamW) {
        guard let communicator else { return }
        func broadcast(_ tensors: inout TrainableParameters) {
            for i in tensors.tensors.indices {
                tensors.tensors[i].withMutableFloats { communicator.broadcast(UnsafeMutableRawBufferPointer($0)) }
            }
        }
        broadcast(&parameters)
        broadcast(&optimizer.expAvg)
        broadcast(&optimizer.expAvgSq)
    }

    /// Checks that every rank holds the same `parameters`, bit for bit: rank 0's checksum is sent to all, each
    /// rank compares its own, and the ranks that differ are summed into a list every rank sees, so that all
    /// stop together.
    public func checkAgreement(_ parameters: TrainableParameters, step: Int) throws {
        guard let communicator else { return }
        var checksum = parameters.checksum
        withUnsafeMutableBytes(of: &checksum) { communicator.broadcast($0) }
        var differs = [Double](repeating: 0, count: size)
        differs[rank] = checksum == parameters.checksum ? 0 : 1
        let all = sum(differs)
        let diverged = all.indices.filter { all[$0] != 0 }
        if !diverged.isEmpty { throw DataParallelError.diverged(ranks: diverged, step: step) }
    }

    /// Ends every process of the job with exit status `code` (one process: exits).
    public func abort(code: Int32) -> Never {
        guard let communicator else { exit(code) }
        communicator.abort(code: code)
    }

    /// Leaves MPI; call once on every rank after the last collective.
    public func finish() { communicator?.finalize() }
}

/// Why a data-parallel run stopped.
public enum DataParallelError: Error, CustomStringConvertible, Equatable {
    case diverged(ranks: [Int], step: Int)

    public var description: String {
        switch self {
        case .diverged(let ranks, let step):
            return "The weights of rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", ")) differ from rank 0's after batch \(step), so the ranks no longer train one model; the job stops (resume from the last checkpoint)."
        }
    }
}

extension TrainableParameters {
    /// FNV-1a over every float's bits, in order: equal exactly when the weights are bitwise equal (up to hash
    /// collisions).
    public var checksum: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in tensors {
            t.withFloats { v in for x in v { hash = (hash ^ UInt64(x.bitPattern)) &* 0x100_0000_01b3 } }
        }
        return hash
    }
}

/// A running total of seconds that a `Sendable` value can add to.
final class Stopwatch: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0.0
    var seconds: Double { lock.withLock { total } }
    func add(_ seconds: Double) { lock.withLock { total += seconds } }
}
