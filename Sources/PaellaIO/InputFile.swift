// Opening a file that someone else supplied: only regular files are read. A FIFO would block `open` until a
// writer appears (forever, for a path planted to hang the reader), a device such as /dev/zero or /dev/urandom
// never ends, and a directory has no bytes; each is refused with one sentence before anything is mapped.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PaellaCore

/// An input path that exists but is not a regular file (a path that cannot be opened at all throws
/// `MappedFile.Failure.cannotOpen`, as mapping it would). `MappedFile` itself finds this out without blocking;
/// this type says it with the path made safe for a terminal.
public enum InputFileError: Error, CustomStringConvertible, Equatable {
    /// The path is a FIFO, socket, device or directory.
    case notARegularFile(path: String, kind: String)

    public var description: String {
        switch self {
        case .notARegularFile(let path, let kind):
            return "\(terminalSafe(path)) is \(kind), not a regular file; give the path of the file itself."
        }
    }
}

/// Checked access to input files (checkpoints, archives): see the file comment for why only regular files.
public enum InputFile {
    /// Memory-maps the regular file at `path`; anything else is refused with `InputFileError`.
    public static func map(_ path: String) throws -> MappedFile {
        do {
            return try MappedFile(path: path)
        } catch MappedFile.Failure.notARegularFile(let path, let kind) {
            throw InputFileError.notARegularFile(path: path, kind: kind)
        }
    }
}

/// `text` with every character that a terminal would interpret (`isTerminalControl`) escaped as `\u{...}`.
/// Names from files go through this before they are shown in a table or an error message; JSON output has its
/// own escaping. With `maxLength`, longer text is cut
/// to that many characters and marked with "..." (error messages quote names, and a name can be megabytes).
public func terminalSafe(_ text: String, maxLength: Int? = nil) -> String {
    if let maxLength, text.unicodeScalars.count > maxLength {
        return terminalSafe(String(String.UnicodeScalarView(text.unicodeScalars.prefix(maxLength)))) + "..."
    }
    guard text.unicodeScalars.contains(where: isTerminalControl) else { return text }
    var out = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        if isTerminalControl(scalar) {
            out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
        } else {
            out.append(scalar)
        }
    }
    return String(out)
}

/// The element count and byte size of a tensor of `shape` read from a file, or nil when they do not fit in
/// an `Int`. The shape is kept as given and whatever multiplies it out later may do so in any order (strides
/// from the right, counts from the left), so the product of its non-zero sizes times the element size must fit
/// even when a zero size makes the count itself 0.
func checkedTensorSize(_ shape: [Int], elementSize: Int) -> (elements: Int, bytes: Int)? {
    var bytes = elementSize
    for n in shape where n != 0 {
        let (product, overflow) = bytes.multipliedReportingOverflow(by: n)
        if overflow || n < 0 { return nil }
        bytes = product
    }
    return shape.contains(0) ? (0, 0) : (bytes / elementSize, bytes)
}
