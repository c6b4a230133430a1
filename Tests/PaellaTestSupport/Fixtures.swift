import Foundation
import PaellaCore

/// Locates the reference fixtures: `PAELLA_FIXTURES` when set, else the copy bundled under Tests/Fixtures.
/// Parity tests take every size and setting from the fixture files, so any fixture set of the same layout works.
public enum Fixtures {
    public static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["PAELLA_FIXTURES"], !env.isEmpty {
            return URL(fileURLWithPath: env, isDirectory: true)
        }
        // This file is Tests/PaellaTestSupport/Fixtures.swift; the fixtures sit next to its folder.
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures", isDirectory: true)
    }

    /// Full path of a fixture file.
    public static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    /// Parsed JSON of a fixture file.
    public static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(name))))
    }
}

/// A deterministic generator for test data (SplitMix64), so failures reproduce.
public struct TestRandom {
    private var generator: SplitMix64
    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    public mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [lo, hi).
    public mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        generator.float(lo, hi)
    }

    /// Uniform integer in range.
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    public mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in float(lo, hi) }
    }

    public mutating func tensor(_ shape: [Int], _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
        Tensor(floats(shape.reduce(1, *), lo, hi), shape: shape)
    }
}

/// Largest absolute difference between two equally long sequences.
public func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDifference: \(a.count) vs \(b.count) elements")
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}

/// Largest absolute value (0 for an empty sequence).
public func maxAbs(_ a: [Float]) -> Float { a.reduce(0) { max($0, abs($1)) } }
