// Draws of the trainers' initialisers and restarts.
import Foundation
import PaellaCore

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
