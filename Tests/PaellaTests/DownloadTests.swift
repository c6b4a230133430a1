import Foundation
import Testing
import PaellaTestSupport
@testable import Paella
import PaellaIO

@Suite struct DownloadTests {
    private func scratchDirectory() -> String {
        let path = NSTemporaryDirectory() + "paella-download-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func payload(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) } }

    @Test func downloadsVerifiesAndKeepsACompleteFile() async throws {
        let data = payload(300_000)
        let server = try LocalHTTPServer(files: ["/org/repo/resolve/main/weights.pt": data])
        let file = HubFile(repository: "org/repo", file: "weights.pt", size: data.count, sha256: SHA256.hex(of: data))
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let downloader = HubDownloader(endpoint: server.url)
        let path = try await downloader.fetch(file, into: directory)
        #expect(FileManager.default.contents(atPath: path).map([UInt8].init) == data)
        #expect(!FileManager.default.fileExists(atPath: path + ".part"))
        // A second fetch finds the complete file and asks the server for nothing.
        _ = try await downloader.fetch(file, into: directory)
        #expect(server.receivedRequests.count == 1)
    }

    @Test func anInterruptedTransferResumesWithARangeRequest() async throws {
        let data = payload(500_000)
        let server = try LocalHTTPServer(files: ["/org/repo/resolve/main/big.bin": data], cutFirstTransferAfter: 123_457)
        let file = HubFile(repository: "org/repo", file: "big.bin", size: data.count, sha256: SHA256.hex(of: data))
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let downloader = HubDownloader(endpoint: server.url)

        let error = await #expect(throws: DownloadError.self) { _ = try await downloader.fetch(file, into: directory) }
        guard case .interrupted(_, let bytes, _)? = error else { Issue.record("expected .interrupted, got \(String(describing: error))"); return }
        #expect(bytes == 123_457)
        #expect(error?.description.contains("run the same command again") == true)

        let path = try await downloader.fetch(file, into: directory)
        #expect(FileManager.default.contents(atPath: path).map([UInt8].init) == data)
        #expect(server.receivedRequests.map(\.range) == [nil, "bytes=123457-"])
    }

    @Test func aWrongChecksumRemovesTheFileAndSaysSo() async throws {
        let data = payload(10_000)
        let server = try LocalHTTPServer(files: ["/org/repo/resolve/main/w.pt": data])
        let file = HubFile(repository: "org/repo", file: "w.pt", size: data.count, sha256: String(repeating: "0", count: 64))
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = await #expect(throws: DownloadError.self) {
            _ = try await HubDownloader(endpoint: server.url).fetch(file, into: directory)
        }
        guard case .checksumMismatch? = error else { Issue.record("expected .checksumMismatch, got \(String(describing: error))"); return }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func aMissingFileIsA404WithAdvice() async throws {
        let server = try LocalHTTPServer(files: [:])
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = await #expect(throws: DownloadError.self) {
            _ = try await HubDownloader(endpoint: server.url).fetch(HubFile(repository: "a/b", file: "c.pt"), into: directory)
        }
        #expect(error?.description.contains("HTTP 404") == true)
    }

    @Test func releasedV1FilesAreTheOnesDesignNames() {
        #expect(ReleasedWeights.v1Denoiser.url(endpoint: URL(string: "https://huggingface.co")!).absoluteString
                == "https://huggingface.co/pcuenq/Paella/resolve/main/model_600000.pt")
        #expect(ReleasedWeights.v1.map(\.file) == ["model_600000.pt", "vqgan.gumbelf8-sber.model.ckpt", "open_clip_pytorch_model.bin"])
    }
}
