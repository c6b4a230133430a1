import ArgumentParser
import Foundation
import Paella
import PaellaServer

/// `paella mcp`: Paella's image tools for desktop agents, over MCP's stdio transport.
struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve Paella's image tools (generate, edit, vary, interpolate) to an AI agent over the Model Context Protocol on stdin/stdout.",
        discussion: "An MCP client (a desktop agent) starts this command and talks to it on standard input and output; " +
            "logs go to standard error. The HTTP form of the same tools is /mcp of 'paella serve'. See the README's MCP section " +
            "for a client configuration.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var compute: ComputeOptions

    @Option(name: .customLong("max-images"), help: "Most images per tool call (n).")
    var maxImages = ServerLimits.default.maxImages

    @Option(name: .customLong("max-side"), help: "Largest width or height of a generated image, in pixels.")
    var maxSide = ServerLimits.default.maxSide

    func run() async throws {
        var limits = ServerLimits.default
        limits.maxImages = maxImages
        limits.maxSide = maxSide
        try reportingErrors { try ServerConfiguration(limits: limits).validate() }
        let pipeline = try reportingErrors { () throws -> Pipeline in
            let folder = try ModelFolder(path: try model.folderPath())
            return try Pipeline(folder: folder, compute: try compute.makeCompute(), loadVision: folder.hasVisionTower, limits: try model.limits(),
                                precision: model.precision)
        }
        try await reportingErrorsAsync { try await PaellaMCP(pipeline: pipeline, limits: limits).runOnStandardIO() }
    }
}
