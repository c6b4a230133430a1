// Randomness for training: the noising draws and the unconditional-batch decision.
import Foundation
import PaellaCore

/// The trainer's random numbers, with the sampler's `RandomSource` interface (uniform float32 in [0, 1) with
/// 24 random bits, integers below a bound). It is SplitMix64 rather than PyTorch's MT19937 because nothing
/// needs to match PyTorch's draws here (upstream mixes torch and numpy generators), while a checkpoint must
/// store and restore the generator exactly: SplitMix64's whole state is one 64-bit number.
public struct TrainingRandom: RandomSource, Sendable, Equatable {
    private var generator: SplitMix64

    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    /// Restores a generator from `state` (a checkpoint's saved value).
    public init(state: UInt64) { generator = SplitMix64(seed: state) }

    /// The full state, for checkpoints.
    public var state: UInt64 { generator.state }

    public static func == (a: TrainingRandom, b: TrainingRandom) -> Bool { a.state == b.state }

    /// One uniform value in [0, 1).
    public mutating func uniform() -> Float { generator.unitFloat() }

    /// Uniform float32 values in [0, 1), row-major in `shape`.
    public mutating func uniform(_ shape: [Int]) -> Tensor {
        Tensor((0..<shape.reduce(1, *)).map { _ in generator.unitFloat() }, shape: shape)
    }

    /// Uniform integers in `0..<upperBound` as int32 (rejection sampling, so exactly uniform).
    public mutating func randint(_ upperBound: Int, _ shape: [Int]) -> Tensor {
        precondition(upperBound > 0 && upperBound <= Int(Int32.max), "randint: bad range 0..<\(upperBound)")
        let bound = UInt64(upperBound), limit = UInt64.max - UInt64.max % bound
        let values = (0..<shape.reduce(1, *)).map { _ -> Int32 in
            var v = generator.next()
            while v >= limit { v = generator.next() }
            return Int32(v % bound)
        }
        return Tensor(int32: values, shape: shape)
    }
}

// Draws of the trainers' initialisers and dead-code restarts.
extension TrainingRandom {
    /// Standard normal draws (Box-Muller on two uniforms each), row-major in `shape`.
    mutating func normal(_ shape: [Int], std: Float = 1) -> Tensor {
        Tensor((0..<shape.reduce(1, *)).map { _ in
            let u1 = max(uniform(), 1e-7), u2 = uniform()
            return boxMuller(u1, u2, scale: std)
        }, shape: shape)
    }

    /// Uniform draws in [-bound, bound), row-major in `shape`.
    mutating func symmetric(_ shape: [Int], bound: Float) -> Tensor {
        Tensor((0..<shape.reduce(1, *)).map { _ in (2 * uniform() - 1) * bound }, shape: shape)
    }
}
