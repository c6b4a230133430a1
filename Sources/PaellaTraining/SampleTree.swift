// Reproducible gradient sums (`--exact-sums`): a batch's gradient as per-sample gradients added in one fixed
// binary tree over the global sample index, so that the same bits come out whatever the number of processes.
//
// Floating-point addition is commutative but not associative: a + b == b + a always, but (a + b) + c and
// a + (b + c) may differ in the last bits. A GEMM over a batch, or an all-reduce over ranks, adds the samples'
// terms in an order that depends on how the batch was split; AdamW then turns last-bit differences of gradients
// that are round-off noise (zero in exact arithmetic) into weight moves of about the learning rate. Fixing the
// tree fixes every addition, so equal per-sample gradients give equal sums.
import Foundation
import PaellaCore

/// The fixed binary tree over sample positions `0..<total` in which `--exact-sums` adds per-sample values.
///
/// A node `[lo, hi)` with more than one position has the children `[lo, mid)` and `[mid, hi)`, `mid = lo + (hi -
/// lo) / 2`. A node's shape depends on its range alone, so a process that sums positions `r * s ..< (r + 1) * s`
/// computes exactly the subtree one process computes for them when that range is a node of the whole batch's
/// tree: when the ranks are a power of two dividing the batch (`sharesAreSubtrees`).
public enum SampleTree {
    /// The first position of `range`'s right child.
    static func middle(_ range: Range<Int>) -> Int { range.lowerBound + range.count / 2 }

    /// The values `leaf(i)` of the positions `range` (not empty) added in the tree's order: `add(&left, right)`
    /// at every inner node, left operand first. Leaves are made in order of position, and at most one pending
    /// sum per level is held at a time (depth log2(count)), so `leaf` may return large values (gradients).
    public static func sum<Value>(_ range: Range<Int>, leaf: (Int) throws -> Value,
                                  add: (inout Value, Value) -> Void) rethrows -> Value {
        precondition(!range.isEmpty, "SampleTree.sum: an empty range")
        if range.count == 1 { return try leaf(range.lowerBound) }
        let mid = middle(range)
        var left = try sum(range.lowerBound..<mid, leaf: leaf, add: add)
        add(&left, try sum(mid..<range.upperBound, leaf: leaf, add: add))
        return left
    }

    /// Whether each of `ranks` equal contiguous shares of a batch of `total` positions is a node of the batch's
    /// tree, so that the ranks' sums combined over the top of the tree equal one process's sum bit for bit: the
    /// ranks must be a power of two that divides the batch.
    public static func sharesAreSubtrees(total: Int, ranks: Int) -> Bool {
        ranks > 0 && ranks & (ranks - 1) == 0 && total % ranks == 0
    }
}

/// Per-sample values summed by `--exact-sums`: the gradient and statistics (loss, accuracy, ...) in the tree.
public struct SampleSums: Sendable {
    public var gradients: TrainableParameters
    /// Per-sample statistics, summed in double precision in the same tree.
    public var statistics: [Double]

    public init(gradients: TrainableParameters, statistics: [Double]) {
        self.gradients = gradients
        self.statistics = statistics
    }

    /// `self += other`, element by element (the tree's addition: `self` is the left operand).
    public mutating func add(_ other: SampleSums) {
        gradients.add(other.gradients)
        precondition(statistics.count == other.statistics.count, "SampleSums: different statistics")
        for i in statistics.indices { statistics[i] += other.statistics[i] }
    }

    /// The sum over the positions `share.range` of `sample(i)`'s values, in `SampleTree`'s order.
    public static func tree(over share: BatchShare, sample: (Int) throws -> SampleSums) rethrows -> SampleSums {
        try SampleTree.sum(share.range, leaf: sample) { $0.add($1) }
    }
}

/// Why `--exact-sums` cannot promise one process's bits.
public enum ExactSumsError: Error, CustomStringConvertible, Equatable {
    case sharesAreNotSubtrees(batch: Int, ranks: Int)

    public var description: String {
        switch self {
        case .sharesAreNotSubtrees(let batch, let ranks):
            return "--exact-sums needs the number of processes to be a power of two that divides the batch, so that each process sums a whole subtree; "
                + "got \(ranks) processes for a batch of \(batch): start 1, 2, 4, ... processes, or change --batch-size."
        }
    }
}
