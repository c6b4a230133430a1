import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 for download tests (tests never touch the network). It serves fixed files
/// by path, honours `Range: bytes=N-` with 206 answers, and can cut the first transfer short to simulate an
/// interrupted download. One connection at a time, on a background thread.
public final class LocalHTTPServer: @unchecked Sendable {
    public struct Request: Sendable, Equatable {
        public let path: String
        public let range: String?
    }

    public let port: Int
    private let files: [String: [UInt8]]
    private let listener: Int32
    private let lock = NSLock()
    private var cutFirstAfter: Int?
    private var requests: [Request] = []
    private var thread: Thread?

    /// - Parameter cutFirstTransferAfter: send only this many body bytes in the first answer, then close.
    /// A listening TCP socket on 127.0.0.1 at a port the kernel picked, and that port.
    public static func loopbackListener() throws -> (socket: Int32, port: Int) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw POSIXError(.EIO) }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 8) == 0 else { close(listener); throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        return (listener, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A loopback port that was free a moment ago, for a server process a test starts (which binds it itself).
    public static func freeLoopbackPort() throws -> Int {
        let (listener, port) = try loopbackListener()
        close(listener)
        return port
    }

    public init(files: [String: [UInt8]], cutFirstTransferAfter: Int? = nil) throws {
        self.files = files
        cutFirstAfter = cutFirstTransferAfter
        (listener, port) = try Self.loopbackListener()
        let thread = Thread { [unowned self] in self.serve() }
        self.thread = thread
        thread.start()
    }

    /// The address of the server's root, e.g. http://127.0.0.1:PORT
    public var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// Every request answered so far, in order.
    public var receivedRequests: [Request] { lock.withLock { requests } }

    /// Stops accepting connections.
    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    deinit { stop() }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        var received: [UInt8] = []
        while !received.containsHeaderEnd {
            let n = read(client, &buffer, buffer.count)
            if n <= 0 { return }
            received += buffer[0..<n]
        }
        let head = String(decoding: received, as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2 else { return }
        let path = String(parts[1])
        let range = lines.first { $0.lowercased().hasPrefix("range:") }
            .map { String($0.dropFirst("range:".count)).trimmingCharacters(in: .whitespaces) }
        let cut: Int? = lock.withLock {
            requests.append(Request(path: path, range: range))
            defer { cutFirstAfter = nil }
            return cutFirstAfter
        }
        guard let body = files[path] else {
            send(client, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", [])
            return
        }
        var start = 0
        if let range, range.hasPrefix("bytes="), let from = Int(range.dropFirst(6).prefix { $0 != "-" }) {
            start = from
        }
        if start >= body.count && start > 0 {
            send(client, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */\(body.count)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", [])
            return
        }
        let slice = Array(body[start...])
        let header = start > 0
            ? "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes \(start)-\(body.count - 1)/\(body.count)\r\nContent-Length: \(slice.count)\r\nConnection: close\r\n\r\n"
            : "HTTP/1.1 200 OK\r\nContent-Length: \(slice.count)\r\nConnection: close\r\n\r\n"
        send(client, header, cut.map { Array(slice.prefix($0)) } ?? slice)
    }

    private func send(_ client: Int32, _ header: String, _ body: [UInt8]) {
        let bytes = Array(header.utf8) + body
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            offset += n
        }
    }
}

private extension Array where Element == UInt8 {
    var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 {
            return true
        }
        return false
    }
}
