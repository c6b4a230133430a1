import Foundation

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast, well-mixed 64-bit generator for data that only has to
/// look random and be reproducible from a seed: synthetic weights, benchmark inputs, test data. (Sampling uses the
/// sampler's `RandomSource`, which draws like PyTorch.)
public struct SplitMix64: Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits (every value exactly representable as a Float).
    public mutating func unitFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Uniform in [lo, hi).
    public mutating func float(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * unitFloat() }

    /// Standard normal (Box-Muller on two float64 uniforms).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float(boxMuller(u1, u2))
    }
}

/// Box-Muller, the one normal-sampling routine: `scale * sqrt(-2 ln u1) * cos(2 pi u2)` is normal with standard
/// deviation `scale` when `u1` is uniform in (0, 1] (callers keep it away from 0) and `u2` uniform in [0, 1).
/// Generic so that float32 and float64 callers each keep their own arithmetic, and so their exact draws.
@inlinable
public func boxMuller<T: BoxMullerFloatingPoint>(_ u1: T, _ u2: T, scale: T = 1) -> T {
    scale * (-2 * T.naturalLog(u1)).squareRoot() * T.cosine(2 * T.pi * u2)
}

/// Float and Double with the C library's `log` and `cos` of their own precision, for `boxMuller`.
public protocol BoxMullerFloatingPoint: BinaryFloatingPoint {
    static func naturalLog(_ x: Self) -> Self
    static func cosine(_ x: Self) -> Self
}

extension Float: BoxMullerFloatingPoint {
    @inlinable public static func naturalLog(_ x: Float) -> Float { Foundation.log(x) }
    @inlinable public static func cosine(_ x: Float) -> Float { Foundation.cos(x) }
}

extension Double: BoxMullerFloatingPoint {
    @inlinable public static func naturalLog(_ x: Double) -> Double { Foundation.log(x) }
    @inlinable public static func cosine(_ x: Double) -> Double { Foundation.cos(x) }
}
