// STAND-IN, to be deleted when the `pytorch` branch (the real PyTorch checkpoint reader) is merged.
// It only fixes the API that CheckpointInspector calls, so that the safetensors branch builds on its own.

/// Stand-in for the PyTorch checkpoint reader (`torch.save` zip format); always throws.
public struct PyTorchCheckpoint {
    /// Stand-in failure: the reader lives on another branch.
    public enum StandInError: Error, CustomStringConvertible {
        case notAvailable(path: String)
        public var description: String {
            switch self {
            case .notAvailable(let path):
                return "Cannot read \(path): the PyTorch checkpoint reader is not available in this build yet; convert the file to safetensors."
            }
        }
    }

    public init(path: String) throws { throw StandInError.notAvailable(path: path) }

    /// The flattened state dict in file order (for a Lightning .ckpt, the entries of its `state_dict`).
    public var tensors: [(name: String, tensor: Tensor)] { [] }
}
