import ArgumentParser
import Foundation
import Paella

/// `paella download v1`: fetches the released Paella v1 files from the Hugging Face Hub.
struct DownloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download the released Paella v1 weights from the Hugging Face Hub.",
        discussion: """
            Fetches the denoiser (pcuenq/Paella model_600000.pt, 2.3 GB), ruDALL-E's VQGAN and OpenCLIP ViT-g-14. \
            An interrupted download resumes where it stopped when you run the same command again; sizes and \
            SHA-256 checksums are verified where they are published. HF_ENDPOINT overrides the Hub address, \
            HF_TOKEN is sent for gated repositories.
            """)

    @Argument(help: "What to download: v1.")
    var release: String

    @Option(name: .customLong("to"), help: "Folder for the downloaded files.")
    var directory: String = "weights/paella-v1-original"

    @Flag(help: "No progress display.")
    var quiet = false

    func validate() throws {
        guard release == "v1" else { throw ValidationError("Unknown release '\(release)'; the one available is v1.") }
    }

    func run() async throws {
        let downloader = try reportingErrors { try HubDownloader.fromEnvironment() }
        let bar = ProgressBar(quiet: quiet)
        for file in ReleasedWeights.v1 {
            do {
                let path = try await downloader.fetch(file, into: directory) { progress in
                    bar.update(progress.file, done: progress.bytes, total: progress.total, bytes: true)
                }
                bar.finish()
                print(path)
            } catch {
                bar.finish()
                _ = try reportingErrors { throw error }
            }
        }
    }
}
