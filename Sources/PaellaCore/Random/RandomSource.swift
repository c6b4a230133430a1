// Randomness for sampling, injected so that a seed reproduces an image and tests can replay recorded draws.

/// Where the sampler's random numbers come from. The sampler asks in upstream's order (DESIGN.md section 5):
/// starting tokens, then per step the Gumbel uniforms and, when renoising, the Bernoulli uniforms and (mode
/// `rand`) fresh random tokens.
public protocol RandomSource {
    /// Uniform float32 values in [0, 1), row-major in `shape` (PyTorch `uniform_(0, 1)` / `torch.rand`).
    mutating func uniform(_ shape: [Int]) -> Tensor
    /// Uniform integers in `0..<upperBound` as int32, row-major in `shape` (PyTorch `torch.randint`).
    mutating func randint(_ upperBound: Int, _ shape: [Int]) -> Tensor
}

/// The default generator: MT19937 (the Mersenne Twister) with PyTorch's CPU transformations, so a seed gives
/// exactly the draws that `torch.manual_seed(seed)` gives upstream's `sample()` on the CPU (and so the same
/// tokens, up to float32 ties). MT19937 is PyTorch's CPU generator; it is fast, has a 2^19937-1 period and is
/// fully specified (init_genrand seeding), which a reproducible seed needs more than cryptographic strength.
public struct TorchCompatibleGenerator: RandomSource, Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// Seeds like `torch.manual_seed(seed)`: MT19937's init_genrand with the low 32 bits.
    public init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for i in 1..<624 {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
    }

    /// The next 32 random bits.
    public mutating func next() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1) == 0 ? 0 : 0x9908_B0DF)
        }
        index = 0
    }

    /// PyTorch's `uniform_real_distribution<float>`: the low 24 bits of one draw times 2^-24.
    public mutating func uniform(_ shape: [Int]) -> Tensor {
        let values = (0..<shape.reduce(1, *)).map { _ in Float(next() & 0xFF_FFFF) * 0x1p-24 }
        return Tensor(values, shape: shape)
    }

    /// PyTorch's `random_from_to` for ranges below 2^32: one draw modulo the range.
    public mutating func randint(_ upperBound: Int, _ shape: [Int]) -> Tensor {
        precondition(upperBound > 0 && upperBound <= 1 << 32, "randint: range 0..<\(upperBound) must be in 1...2^32")
        let values = (0..<shape.reduce(1, *)).map { _ in Int32(truncatingIfNeeded: UInt64(next()) % UInt64(upperBound)) }
        return Tensor(int32: values, shape: shape)
    }
}

/// Replays recorded draws in order (tests against upstream's recorded sampling loops). Each request must match
/// the next recorded tensor's kind and element count.
public struct ReplayRandomSource: RandomSource, Sendable {
    public enum Draw: Sendable {
        case uniform(Tensor)
        case randint(Tensor)
    }

    private var draws: [Draw]
    private var next = 0

    public init(_ draws: [Draw]) { self.draws = draws }

    /// Whether every recorded draw has been used.
    public var isExhausted: Bool { next == draws.count }

    public mutating func uniform(_ shape: [Int]) -> Tensor {
        guard next < draws.count, case .uniform(let t) = draws[next], t.count == shape.reduce(1, *) else {
            preconditionFailure("ReplayRandomSource: draw \(next) is not a uniform of shape \(shape)")
        }
        next += 1
        return t.toFloat32().reshaped(shape)
    }

    public mutating func randint(_ upperBound: Int, _ shape: [Int]) -> Tensor {
        guard next < draws.count, case .randint(let t) = draws[next], t.count == shape.reduce(1, *) else {
            preconditionFailure("ReplayRandomSource: draw \(next) is not a randint of shape \(shape)")
        }
        next += 1
        return Tensor(int32: t.integers().map { Int32($0) }, shape: shape)
    }
}
