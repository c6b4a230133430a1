import Foundation

/// Wall-clock guards in tests: they catch runaway work (a quadratic loop, an exponential walk, a read that blocks)
/// where the fixed code takes a small fraction of the bound. They are not speed measurements (those are the
/// benchmarks'). Sanitizers slow everything down 3 to 20 times, so `scripts/sanitize.sh` sets
/// `PAELLA_TEST_TIME_SCALE`, and every guard is multiplied by it.
public enum TimeGuard {
    /// `PAELLA_TEST_TIME_SCALE`, or 1.
    public static let scale: Double = ProcessInfo.processInfo.environment["PAELLA_TEST_TIME_SCALE"].flatMap(Double.init) ?? 1

    /// `seconds` scaled for this run.
    public static func seconds(_ seconds: Double) -> Double { seconds * scale }

    /// `seconds` scaled for this run, as a `Duration`.
    public static func duration(_ seconds: Double) -> Duration { .milliseconds(Int64((seconds * scale * 1000).rounded())) }
}
