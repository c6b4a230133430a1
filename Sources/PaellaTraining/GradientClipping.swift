// torch.nn.utils.clip_grad_norm_ (2-norm over all parameters).
import Foundation
import PaellaCore

extension TrainableParameters {
    /// The 2-norm of all elements together (PyTorch: the norm of the per-tensor norms).
    public func totalNorm() -> Double {
        var total = 0.0
        for t in tensors {
            t.withFloats { p in
                var s = 0.0
                for v in p { s += Double(v) * Double(v) }
                total += s
            }
        }
        return total.squareRoot()
    }

    /// PyTorch's `clip_grad_norm_(parameters, maxNorm)`: scales every tensor by
    /// `min(1, maxNorm / (totalNorm + 1e-6))` and returns the norm before clipping.
    @discardableResult
    public mutating func clipNorm(_ maxNorm: Double) -> Double {
        let norm = totalNorm()
        let coefficient = Float(min(1, maxNorm / (norm + 1e-6)))
        if coefficient < 1 { scale(by: coefficient) }
        return norm
    }

    /// `self *= factor`, element-wise.
    public mutating func scale(by factor: Float) {
        for i in tensors.indices {
            tensors[i].withMutableFloats { p in for j in 0..<p.count { p[j] *= factor } }
        }
    }

    /// `self += other`, element-wise (gradient accumulation).
    public mutating func add(_ other: TrainableParameters) {
        precondition(names == other.names, "TrainableParameters.add: different parameter lists")
        for i in tensors.indices {
            other.tensors[i].withFloats { o in
                tensors[i].withMutableFloats { p in for j in 0..<p.count { p[j] += o[j] } }
            }
        }
    }
}
