import Foundation

/// Runs the built `paella` executable as a user runs it (SwiftPM builds it next to the test bundle).
public enum PaellaCLI {
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// The executable, or nil when it has not been built.
    public static let executable: String? = {
        let folder = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        let candidates = [Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("paella").path,
                          folder.appendingPathComponent("paella").path,
                          folder.deletingLastPathComponent().appendingPathComponent("paella").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    public struct NotBuilt: Error, CustomStringConvertible {
        public var description: String { "the paella executable is not built next to the tests (run `swift build`)" }
    }

    /// Exit status, stdout and stderr of `paella arguments...` run in `directory` (default: the current one),
    /// without `PAELLA_MODEL` from the environment, with `environment`'s variables set (nil: removed).
    public static func run(_ arguments: [String], in directory: String? = nil,
                           environment changes: [String: String?] = [:]) throws -> Output {
        guard let executable else { throw NotBuilt() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        var environment = ProcessInfo.processInfo.environment
        environment["PAELLA_MODEL"] = nil
        for (name, value) in changes { environment[name] = value }
        process.environment = environment
        let (out, err) = (Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// A new empty folder under the temporary directory.
    public static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "paella-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
