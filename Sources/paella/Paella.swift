import ArgumentParser
import Paella

@main
struct PaellaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paella",
        abstract: "Paella for Swift: text-to-image with discrete denoising on VQ tokens.",
        subcommands: [InfoCommand.self, InspectCommand.self, DownloadCommand.self, BenchCommand.self,
                      DatasetCommand.self])
}
