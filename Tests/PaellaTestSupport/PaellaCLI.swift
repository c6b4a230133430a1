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
    /// without `PAELLA_MODEL` from the environment, with `environment`'s variables set (nil: removed); with
    /// `ranks`, as that many processes under `mpirun`.
    public static func run(_ arguments: [String], in directory: String? = nil, ranks: Int? = nil,
                           environment changes: [String: String?] = [:]) throws -> Output {
        try finish(try start(arguments, in: directory, ranks: ranks, environment: changes))
    }

    /// Exit status, stdout and stderr of `program arguments...`, started the way `run` starts paella (no
    /// `PAELLA_MODEL`, `environment`'s changes applied): for tools that wrap the executable (`unshare`, `sh`).
    public static func run(program: String, _ arguments: [String], in directory: String? = nil,
                           environment changes: [String: String?] = [:]) throws -> Output {
        try finish(try launch(program, arguments: arguments, in: directory, environment: changes))
    }

    /// One `mpirun` job whose rank `i` runs `paella eachRank[i]...` (Open MPI's colon-separated form).
    public static func run(eachRank: [[String]], in directory: String? = nil) throws -> Output {
        guard let executable else { throw NotBuilt() }
        guard let mpirun else { throw MPIRunMissing() }
        let ranks = eachRank.map { ["-np", "1", executable] + $0 }.joined(separator: [":"])
        return try finish(try launch(mpirun, arguments: mpirunOptions + ranks, in: directory))
    }

    /// `run`'s process, started, with its stdout and stderr pipes; its stdin is `input` when given (a command that
    /// reads a protocol there, `paella mcp`), else the test's.
    public static func start(_ arguments: [String], in directory: String? = nil, ranks: Int? = nil,
                             environment changes: [String: String?] = [:], input: Pipe? = nil) throws -> (process: Process, stdout: Pipe, stderr: Pipe) {
        guard let executable else { throw NotBuilt() }
        guard let ranks else { return try launch(executable, arguments: arguments, in: directory, environment: changes, input: input) }
        guard let mpirun else { throw MPIRunMissing() }
        return try launch(mpirun, arguments: mpirunOptions + ["-np", "\(ranks)", executable] + arguments, in: directory,
                          environment: changes)
    }

    /// Root in CI containers; more ranks than cores on small machines; shared memory without the ptrace-based
    /// single copy that containers forbid.
    static let mpirunOptions = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none"]

    private static func launch(_ program: String, arguments: [String], in directory: String?,
                               environment changes: [String: String?] = [:], input: Pipe? = nil) throws -> (process: Process, stdout: Pipe, stderr: Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        var environment = ProcessInfo.processInfo.environment
        environment["PAELLA_MODEL"] = nil
        for (name, value) in changes { environment[name] = value }
        process.environment = environment
        let (out, err) = (Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        if let input { process.standardInput = input }
        try process.run()
        return (process, out, err)
    }

    private static func finish(_ started: (process: Process, stdout: Pipe, stderr: Pipe)) throws -> Output {
        let stdout = started.stdout.fileHandleForReading.readDataToEndOfFile()
        let stderr = started.stderr.fileHandleForReading.readDataToEndOfFile()
        started.process.waitUntilExit()
        return Output(status: started.process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Open MPI's `mpirun` on the PATH, or nil.
    public static let mpirun: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    public struct MPIRunMissing: Error, CustomStringConvertible {
        public var description: String { "mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)" }
    }

    /// A new empty folder under the temporary directory.
    public static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "paella-cli-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
