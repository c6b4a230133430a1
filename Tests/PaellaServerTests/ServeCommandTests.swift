import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PaellaTestSupport
import Testing

/// `paella serve` as started from a shell: the command's own options reach the server it builds.
@Suite(.enabled(if: PaellaCLI.executable != nil, "the paella executable is not built (run `swift build` first)"))
struct ServeCommandTests {
    /// `--max-memory` bounds the server's requests as it bounds the command line's: a generation whose estimate is
    /// over the budget is refused with the library's sentence, before anything is computed.
    @Test func maxMemoryBoundsTheServersRequests() async throws {
        let port = try LocalHTTPServer.freeLoopbackPort()
        let (process, stdout, stderr) = try PaellaCLI.start(["serve", "--model", try Fixtures.tinyModelFolder(withVision: false),
                                                             "--port", "\(port)", "--max-memory", "0.001", "--threads", "1"])
        /// Stops the server (when it still runs) and returns what it logged.
        func stop() -> String {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            _ = stdout.fileHandleForReading.readDataToEndOfFile()
            return String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        let base = URL(string: "http://127.0.0.1:\(port)")!
        var healthy = false
        // Starting a debug build beside the rest of the suite can take a while; two minutes, scaled like the other guards.
        let deadline = Date().addingTimeInterval(TimeGuard.seconds(120))
        // Each probe gives up after 2 s: a connection made while the server was still starting can otherwise
        // hang for URLSession's default 60 s, and two such probes used up the whole wait on a loaded machine.
        var probe = URLRequest(url: base.appendingPathComponent("healthz"))
        probe.timeoutInterval = 2
        while !healthy && Date() < deadline && process.isRunning {
            healthy = (try? await URLSession.shared.data(for: probe))
                .map { ($0.1 as? HTTPURLResponse)?.statusCode == 200 } ?? false
            if !healthy { try await Task.sleep(nanoseconds: 200_000_000) }
        }
        guard healthy else {
            let running = process.isRunning
            let log = stop()
            Issue.record("the server did not answer on port \(port) (\(running ? "still running" : "exited with \(process.terminationStatus)")): \(log.suffix(2000))")
            return
        }
        defer { _ = stop() }
        var request = URLRequest(url: base.appendingPathComponent("v1/images/generations"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"prompt": "a red circle", "response_format": "b64_json"}"#.utf8)
        let (body, response) = try await URLSession.shared.data(for: request)
        let text = String(decoding: body, as: UTF8.self)
        #expect((response as? HTTPURLResponse)?.statusCode == 400, "\(text)")
        #expect(text.contains("of memory, more than the 1.0 MB a request may use"), "\(text)")
    }
}
