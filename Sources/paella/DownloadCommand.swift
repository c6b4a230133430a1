import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaModels

/// `paella download v1`: fetches the released Paella v1 files from the Hugging Face Hub.
struct DownloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download the released Paella v1 weights from the Hugging Face Hub.",
        discussion: """
            Fetches the denoiser (pcuenq/Paella model_600000.pt, 2.3 GB), ruDALL-E's VQGAN and OpenCLIP ViT-g-14. \
            An interrupted download resumes where it stopped when you run the same command again; sizes and \
            SHA-256 checksums are verified where they are published. HF_ENDPOINT overrides the Hub address, \
            HF_TOKEN is sent for gated repositories. Once the files are verified they are converted into a model \
            folder (--output) as `paella convert --from` does; --no-convert keeps only the downloaded files.
            """)

    @Argument(help: "What to download: v1.")
    var release: String

    @Option(name: .customLong("to"), help: "Folder for the downloaded files.")
    var directory: String = "weights/paella-v1-original"

    @Option(help: "The model folder to convert the downloaded files into.")
    var output: String = "models/paella-v1"

    @Flag(help: "Only download; do not make a model folder.")
    var noConvert = false

    @Option(help: "Stored weight type of the model folder: f32, f16 or bf16.")
    var dtype: String = "f32"

    @Flag(help: "Keep CLIP's vision tower in the model folder (needed for `paella vary`).")
    var withVision = false

    @Flag(help: "Replace an existing model folder.")
    var force = false

    @Flag(help: "No progress display.")
    var quiet = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard release == "v1" else { throw ValidationError("Unknown release '\(release)'; the one available is v1.") }
        _ = try storageDType(dtype)
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
        if !noConvert { try convert() }
    }

    /// Converts the verified files into the model folder, unless one with the asked-for dtype and towers is there.
    private func convert() throws {
        if !force, let existing = try? ModelFolder(path: output),
           existing.manifest.denoiser.dtype == (try storageDType(dtype)).rawValue, existing.hasVisionTower || !withVision {
            if !quiet { FileHandle.standardError.write(Data("\(output) already holds a model folder; pass --force to convert again.\n".utf8)) }
            print(output)
            return
        }
        let folder = try reportingErrors {
            var conversion = ModelConversion(downloadFolder: directory, output: output)
            conversion.dtype = try storageDType(dtype)
            conversion.withVision = withVision
            conversion.overwrite = force
            return try conversion.run(compute: try compute.makeCompute()) { line in
                if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            }
        }
        print(folder.path)
    }
}
