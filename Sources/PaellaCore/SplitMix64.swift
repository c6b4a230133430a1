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

    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
