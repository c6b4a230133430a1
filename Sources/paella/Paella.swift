import ArgumentParser
import Paella

@main
struct PaellaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paella",
        abstract: "Paella for Swift: text-to-image with discrete denoising on VQ tokens.",
        subcommands: [InfoCommand.self, InspectCommand.self, BenchCommand.self])
}
