import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PaellaCore
import PaellaIO

/// A file published on the Hugging Face Hub, with what is known about it for verification.
public struct HubFile: Sendable, Equatable, Codable {
    public var repository: String
    public var file: String
    /// Size in bytes, when published; checked after the download.
    public var size: Int?
    /// SHA-256 as hex, when published; checked after the download.
    public var sha256: String?
    /// Revision (branch, tag or commit) to download from.
    public var revision: String

    public init(repository: String, file: String, size: Int? = nil, sha256: String? = nil, revision: String = "main") {
        self.repository = repository
        self.file = file
        self.size = size
        self.sha256 = sha256
        self.revision = revision
    }

    /// `{endpoint}/{repository}/resolve/{revision}/{file}`, the Hub's download address.
    public func url(endpoint: URL) -> URL {
        endpoint.appendingPathComponent(repository).appendingPathComponent("resolve")
            .appendingPathComponent(revision).appendingPathComponent(file)
    }
}

/// The released Paella v1 files (DESIGN.md section 6; repositories as upstream's README and demo use them).
public enum ReleasedWeights {
    public static let v1Denoiser = HubFile(
        repository: "pcuenq/Paella", file: "model_600000.pt", size: 2_312_246_971,
        sha256: "bb2b512cc353a30144700324edaa55a31543ad472804e8c61117cb1e79000cbe")
    public static let v1VQGAN = HubFile(repository: "shonenkov/rudalle-utils", file: "vqgan.gumbelf8-sber.model.ckpt")
    public static let v1CLIP = HubFile(repository: "laion/CLIP-ViT-g-14-laion2B-s12B-b42K", file: "open_clip_pytorch_model.bin")
    public static let v1: [HubFile] = [v1Denoiser, v1VQGAN, v1CLIP]
}

/// How far a download has come.
public struct DownloadProgress: Sendable {
    public var file: String
    /// Bytes on disk so far (including those of an earlier, resumed attempt).
    public var bytes: Int
    /// Total size when known.
    public var total: Int?
}

/// Why a download failed; each description is one sentence saying what to do.
public enum DownloadError: Error, CustomStringConvertible, Equatable {
    case httpStatus(url: String, status: Int)
    case interrupted(file: String, bytes: Int, reason: String)
    case sizeMismatch(file: String, expected: Int, found: Int)
    case checksumMismatch(file: String, expected: String, found: String)
    case cannotWrite(path: String, reason: String)
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case .httpStatus(let url, 404):
            return "\(url) was not found (HTTP 404); check the repository and file names, or set HF_ENDPOINT to a mirror that has them."
        case .httpStatus(let url, let status) where status == 401 || status == 403:
            return "\(url) needs authorisation (HTTP \(status)); accept the model's terms on the Hub and set HF_TOKEN to an access token."
        case .httpStatus(let url, let status):
            return "Downloading \(url) failed with HTTP status \(status); try again later or set HF_ENDPOINT to a mirror."
        case .interrupted(let file, 0, let reason):
            return "\(file) could not be downloaded (\(reason)); check the network connection, or set HF_ENDPOINT to a reachable mirror."
        case .interrupted(let file, let bytes, let reason):
            return "The download of \(file) stopped after \(bytes) bytes (\(reason)); run the same command again to resume it."
        case .sizeMismatch(let file, let expected, let found):
            return "\(file) has \(found) bytes but the release has \(expected); the partial file was removed, run the command again."
        case .checksumMismatch(let file, let expected, let found):
            return "\(file) has SHA-256 \(found) but the release has \(expected); the file was removed, run the command again."
        case .cannotWrite(let path, let reason):
            return "Cannot write \(path): \(reason)."
        case .invalidEndpoint(let text):
            return "\(text) is not a valid Hub address; set HF_ENDPOINT to an http(s) URL such as https://huggingface.co."
        }
    }
}

/// Downloads Hub files into a folder, resuming interrupted transfers with HTTP ranges (`name.part` holds the
/// bytes so far) and verifying size and SHA-256 before the file takes its final name.
public struct HubDownloader: Sendable {
    public var endpoint: URL
    /// Sent as a bearer token when set (gated repositories).
    public var token: String?

    /// The endpoint from `HF_ENDPOINT` (default https://huggingface.co) and the token from `HF_TOKEN`.
    public static func fromEnvironment() throws -> HubDownloader {
        let env = ProcessInfo.processInfo.environment
        let text = env["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
            throw DownloadError.invalidEndpoint(text)
        }
        return HubDownloader(endpoint: url, token: env["HF_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
    }

    public init(endpoint: URL, token: String? = nil) {
        self.endpoint = endpoint
        self.token = token
    }

    /// Fetches `file` into `directory` (created if needed) and returns the final path. A complete file already
    /// there is kept; a `.part` file is resumed.
    public func fetch(_ file: HubFile, into directory: String,
                      progress: @escaping @Sendable (DownloadProgress) -> Void = { _ in }) async throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = (file.file as NSString).lastPathComponent
        let destination = (directory as NSString).appendingPathComponent(name)
        let partial = destination + ".part"
        if let size = fileSize(destination), file.size == nil || file.size == size {
            progress(DownloadProgress(file: name, bytes: size, total: size))
            return destination
        }

        let url = file.url(endpoint: endpoint)
        var request = URLRequest(url: url)
        let resumeFrom = fileSize(partial) ?? 0
        if resumeFrom > 0 { request.setValue("bytes=\(resumeFrom)-", forHTTPHeaderField: "Range") }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }

        let transfer = try StreamingTransfer(partialPath: partial, resumeFrom: resumeFrom, name: name,
                                             expectedTotal: file.size, progress: progress)
        let outcome = await transfer.run(request)
        switch outcome {
        case .status(let status):
            throw DownloadError.httpStatus(url: url.absoluteString, status: status)
        case .failed(let bytes, let reason):
            throw DownloadError.interrupted(file: name, bytes: bytes, reason: reason)
        case .writeFailed(let reason):
            throw DownloadError.cannotWrite(path: partial, reason: reason)
        case .finished:
            break
        }
        try verify(partial, as: file, name: name)
        guard rename(partial, destination) == 0 else {
            throw DownloadError.cannotWrite(path: destination, reason: String(cString: strerror(errno)))
        }
        return destination
    }

    private func verify(_ path: String, as file: HubFile, name: String) throws {
        let size = fileSize(path) ?? 0
        if let expected = file.size, expected != size {
            unlink(path)
            throw DownloadError.sizeMismatch(file: name, expected: expected, found: size)
        }
        if let expected = file.sha256?.lowercased() {
            let found = try SHA256.hex(ofFile: path)
            if found != expected {
                unlink(path)
                throw DownloadError.checksumMismatch(file: name, expected: expected, found: found)
            }
        }
    }

}

private func fileSize(_ path: String) -> Int? {
    var info = stat()
    guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
    return Int(info.st_size)
}

/// One HTTP GET streamed into the `.part` file (appending on a 206 answer to a range request, starting over on
/// a plain 200), reporting progress as bytes arrive.
private final class StreamingTransfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    enum Outcome { case finished, status(Int), failed(bytes: Int, reason: String), writeFailed(String) }

    private let partialPath: String
    private let name: String
    private let expectedTotal: Int?
    private let progress: @Sendable (DownloadProgress) -> Void
    private var handle: FileHandle?
    private var written: Int
    private let resumeFrom: Int
    private var total: Int?
    private var outcome: Outcome = .finished
    private var continuation: CheckedContinuation<Outcome, Never>?
    private let lock = NSLock()

    init(partialPath: String, resumeFrom: Int, name: String, expectedTotal: Int?,
         progress: @escaping @Sendable (DownloadProgress) -> Void) throws {
        self.partialPath = partialPath
        self.resumeFrom = resumeFrom
        self.name = name
        self.expectedTotal = expectedTotal
        self.progress = progress
        written = resumeFrom
        total = expectedTotal
    }

    func run(_ request: URLRequest) async -> Outcome {
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        return await withCheckedContinuation { continuation in
            lock.withLock { self.continuation = continuation }
            session.dataTask(with: request).resume()
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let append: Bool
        switch status {
        case 206: append = true
        case 200: append = false
        case 416 where resumeFrom > 0 && resumeFrom == expectedTotal:
            // The earlier attempt already had every byte; verification decides whether they are right.
            completionHandler(.cancel)
            return
        default:
            lock.withLock { outcome = .status(status) }
            completionHandler(.cancel)
            return
        }
        if response.expectedContentLength > 0 { total = (append ? resumeFrom : 0) + Int(response.expectedContentLength) }
        do {
            if !append { written = 0 }
            if fileSize(partialPath) == nil, !FileManager.default.createFile(atPath: partialPath, contents: nil) {
                throw DownloadError.cannotWrite(path: partialPath, reason: "the file could not be created")
            }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: partialPath))
            if append { try h.seekToEnd() } else { try h.truncate(atOffset: 0) }
            handle = h
            completionHandler(.allow)
        } catch {
            lock.withLock { outcome = .writeFailed(error.localizedDescription) }
            completionHandler(.cancel)
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard let handle else { return }
        do {
            try handle.write(contentsOf: data)
            written += data.count
            progress(DownloadProgress(file: name, bytes: written, total: total))
        } catch {
            lock.withLock { outcome = .writeFailed(error.localizedDescription) }
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let handle {
            try? handle.synchronize()
            try? handle.close()
        }
        handle = nil
        let result: Outcome = lock.withLock {
            let cancelledAfterFullResume = (error as? URLError)?.code == .cancelled && written == expectedTotal
            if case .finished = outcome, let error, !cancelledAfterFullResume {
                outcome = .failed(bytes: written, reason: error.localizedDescription)
            }
            return outcome
        }
        let continuation = lock.withLock { () -> CheckedContinuation<Outcome, Never>? in
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.resume(returning: result)
    }
}
