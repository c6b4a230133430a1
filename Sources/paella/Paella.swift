import ArgumentParser
import Paella

@main
struct PaellaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paella",
        abstract: "Paella for Swift: text-to-image with discrete denoising on VQ tokens.",
        subcommands: [GenerateCommand.self, InterpolateCommand.self, ComposeCommand.self, InpaintCommand.self,
                      OutpaintCommand.self, EditCommand.self, VaryCommand.self, InfoCommand.self, InspectCommand.self,
                      DownloadCommand.self, ConvertCommand.self, DatasetCommand.self, TrainCommand.self, EvalCommand.self, BenchCommand.self,
                      ServeCommand.self, MCPCommand.self])
}
