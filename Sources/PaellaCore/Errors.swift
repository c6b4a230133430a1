/// Errors that come from misuse a caller can recover from (wrong shapes from user input, bad configuration).
/// Programmer errors inside the library are `precondition` failures instead.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(String)
    case unsupportedDType(DType, String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let what): return "Shape mismatch: \(what)."
        case .unsupportedDType(let dtype, let what): return "\(what) does not support dtype \(dtype.rawValue)."
        case .invalidArgument(let what): return "Invalid argument: \(what)."
        }
    }
}
