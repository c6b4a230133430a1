// Trainable parameters: float32 master weights under their upstream state-dict names, so a state dict read from
// a checkpoint comes back out under the same keys and layouts.
import PaellaCore
import PaellaIO

/// A named, ordered list of float32 tensors in the upstream layouts (PyTorch's `named_parameters()`), used as
/// master weights, gradients and optimizer moments alike.
public struct TrainableParameters: Sendable {
    /// The parameter names, in order.
    public let names: [String]
    /// The tensors, in the order of `names` (owned float32 copies: updating them never touches a mapped file).
    public var tensors: [Tensor]

    /// Copies `named` into owned float32 tensors (float16/bfloat16 are widened).
    public init(_ named: [(name: String, tensor: Tensor)]) {
        precondition(Set(named.map(\.name)).count == named.count, "TrainableParameters: duplicate parameter names")
        names = named.map(\.name)
        tensors = named.map { Tensor($0.tensor.toFloat32().floats, shape: $0.tensor.shape) }
    }

    /// Zeros shaped like `other` (gradient accumulators, optimizer moments).
    public init(zerosLike other: TrainableParameters) {
        names = other.names
        tensors = other.tensors.map { Tensor(zeros: $0.shape) }
    }

    /// The parameters of `keys` (in that order) read from a safetensors file or `torch.save` checkpoint; throws
    /// when a key is missing or a shape differs.
    public init(path: String, keys: [(name: String, shape: [Int])]) throws {
        let loader = try WeightLoader.open(path: path)
        let named = keys.map { (name: $0.name, tensor: loader.tensor($0.name, shape: $0.shape)) }
        try loader.finish()
        self.init(named)
    }

    /// The tensor called `name`, or nil.
    public subscript(name: String) -> Tensor? {
        names.firstIndex(of: name).map { tensors[$0] }
    }

    /// `(name, tensor)` pairs in order (for `SafeTensors.write` and `WeightLoader(tensors:)`).
    public var named: [(name: String, tensor: Tensor)] { Array(zip(names, tensors)) }

    /// A weight loader over these tensors (no copy), for building a model from the current weights.
    public func loader(origin: String = "trainable parameters") -> WeightLoader {
        WeightLoader(tensors: named, origin: origin)
    }

    /// The number of scalar parameters.
    public var scalarCount: Int { tensors.reduce(0) { $0 + $1.count } }
}
