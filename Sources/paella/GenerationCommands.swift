import ArgumentParser
import Foundation
import Paella
import PaellaIO

/// `paella generate`: text to image.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate images from a text prompt.",
        discussion: "Example: paella generate \"a red circle at the top left\" --steps 8 --seed 1 -n 4 --grid")

    @Argument(help: "What the image shows.") var prompt: String
    @Option(help: "A prompt to steer away from: its embedding replaces the unconditional one of guidance.") var negative: String?
    @Option(help: "Image size in pixels: N or WIDTHxHEIGHT (default: the model's).") var size: String?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws { _ = try parseSize(size) }

    func run() async throws {
        let size = try parseSize(size)
        try await runRequest(.generate(GenerateRequest(prompt: prompt, negativePrompt: negative, width: size?.width, height: size?.height,
                                                       settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella interpolate`: frames between two prompts.
struct InterpolateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interpolate", abstract: "Images along the way from one prompt to another, all from the same seed.")

    @Argument(help: "The first frame's prompt.") var from: String
    @Argument(help: "The last frame's prompt.") var to: String
    @Option(help: "Frames, both ends included.") var frames = 8
    @Option(help: "How the text embeddings are mixed: lerp or slerp.") var method = InterpolationMethod.lerp
    @Option(help: "Image size in pixels: N or WIDTHxHEIGHT (default: the model's).") var size: String?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws { _ = try parseSize(size) }

    func run() async throws {
        let size = try parseSize(size)
        try await runRequest(.interpolate(InterpolateRequest(from: from, to: to, frames: frames, method: method, width: size?.width,
                                                             height: size?.height, settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella compose`: several prompts over parts of the canvas (multi-conditioning).
struct ComposeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compose", abstract: "Condition parts of the image on different prompts.",
        discussion: """
            Bands: paella compose --columns "0-128=a portrait of a dog" --columns "128-256=a portrait of a wolf" \
            (pixel ranges; parts no band covers are unconditioned). Blend: paella compose --blend rows "a dog" "a cat" \
            (top to bottom; columns: left to right).
            """)

    @Option(help: "A band of columns and its prompt: FROM-TO=PROMPT in pixels (repeatable).") var columns: [String] = []
    @Option(help: "A band of rows and its prompt: FROM-TO=PROMPT in pixels (repeatable).") var rows: [String] = []
    @Option(help: "Blend smoothly between two prompts along rows (top to bottom) or columns (left to right).")
    var blend: ComposeRequest.Axis?
    @Argument(help: "With --blend: the two prompts.") var prompts: [String] = []
    @Option(help: "Image size in pixels: N or WIDTHxHEIGHT (default: the model's).") var size: String?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        _ = try parseSize(size)
        _ = try layout()
    }

    func layout() throws -> ComposeRequest.Layout {
        if let blend {
            guard prompts.count == 2, columns.isEmpty, rows.isEmpty else {
                throw ValidationError("--blend takes exactly two prompts and no --columns or --rows.")
            }
            return .blend(from: prompts[0], to: prompts[1], along: blend)
        }
        guard prompts.isEmpty, !(columns.isEmpty && rows.isEmpty) else {
            throw ValidationError("Give bands with --columns/--rows FROM-TO=PROMPT, or --blend rows|columns with two prompts.")
        }
        func band(_ text: String, _ axis: ComposeRequest.Axis) throws -> ComposeRequest.Region {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            let range = parts.first?.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) } ?? []
            guard parts.count == 2, range.count == 2, let lo = range[0], let hi = range[1], lo >= 0, lo < hi else {
                throw ValidationError("A band is FROM-TO=PROMPT with FROM < TO in pixels, e.g. 0-128=a dog; got '\(text)'.")
            }
            return ComposeRequest.Region(prompt: parts[1], axis: axis, pixels: lo..<hi)
        }
        return .regions(try columns.map { try band($0, .columns) } + rows.map { try band($0, .rows) })
    }

    func run() async throws {
        let size = try parseSize(size)
        try await runRequest(.compose(ComposeRequest(layout: try layout(), width: size?.width, height: size?.height,
                                                     settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella inpaint`: repaint part of an image.
struct InpaintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inpaint", abstract: "Repaint the masked part of an image from a prompt.",
        discussion: "The image is resized so its shorter side is --size pixels (default: the model's size); the mask follows it.")

    @Argument(help: "The image (PNG or JPEG).") var image: String
    @Argument(help: "What the repainted part shows.") var prompt: String
    @Option(help: "A mask image of the image's size: white = repaint.") var mask: String?
    @Option(help: "A rectangle to repaint instead of a mask: X,Y,WIDTH,HEIGHT in the image's pixels.") var rect: String?
    @Option(help: "Shorter side of the image after resizing, in pixels.") var size: Int?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard (mask == nil) != (rect == nil) else { throw ValidationError("Give either --mask IMAGE or --rect X,Y,WIDTH,HEIGHT.") }
        _ = try rectangle()
    }

    func rectangle() throws -> InpaintMask? {
        guard let rect else { return nil }
        let v = rect.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard v.count == 4, let x = v[0], let y = v[1], let w = v[2], let h = v[3] else {
            throw ValidationError("--rect takes four integers X,Y,WIDTH,HEIGHT in pixels, got '\(rect)'.")
        }
        return .rectangle(x: x, y: y, width: w, height: h)
    }

    func run() async throws {
        let (picture, maskValue) = try reportingErrors { () throws -> (PixelImage, InpaintMask) in
            let decoded = try readDecodedImage(image)  // --rect is in the file's pixels; the image may be decoded reduced
            return (decoded.image, try rectangle()?.scaled(to: decoded) ?? .image(try readImage(mask ?? "")))
        }
        try await runRequest(.inpaint(InpaintRequest(image: picture, mask: maskValue, prompt: prompt, size: size,
                                                     settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella outpaint`: extend an image onto a larger canvas.
struct OutpaintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outpaint", abstract: "Extend an image beyond its borders; the image itself stays.",
        discussion: "Example: paella outpaint photo.png \"a rocket launch\" --extend left=64,right=64 (pixels, rounded to tokens).")

    @Argument(help: "The image (PNG or JPEG).") var image: String
    @Argument(help: "What the extended canvas shows.") var prompt: String
    @Option(help: "Pixels to add: left=N,right=N,top=N,bottom=N (any subset).") var extend: String
    @Option(help: "Shorter side of the image after resizing, in pixels.") var size: Int?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws { _ = try extensionSides() }

    func extensionSides() throws -> OutpaintRequest.Extension {
        var e = OutpaintRequest.Extension()
        for item in extend.split(separator: ",") {
            let kv = item.split(separator: "=").map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let n = Int(kv[1]) else {
                throw ValidationError("--extend takes side=pixels pairs such as left=64,right=64, got '\(extend)'.")
            }
            switch kv[0] {
            case "left": e.left = n
            case "right": e.right = n
            case "top": e.top = n
            case "bottom": e.bottom = n
            default: throw ValidationError("--extend sides are left, right, top and bottom, got '\(kv[0])'.")
            }
        }
        return e
    }

    func run() async throws {
        let picture = try reportingErrors { try readImage(image) }
        try await runRequest(.outpaint(OutpaintRequest(image: picture, extend: try extensionSides(), prompt: prompt, size: size,
                                                       settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella edit`: structural editing.
struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit", abstract: "Change an image towards a prompt, keeping its layout.",
        discussion: "--strength 1 redraws from scratch; small values keep more of the image (the loop starts at step (1 - strength) x steps).")

    @Argument(help: "The image (PNG or JPEG).") var image: String
    @Argument(help: "What the image should show.") var prompt: String
    @Option(help: "How much of the schedule to run, in (0, 1] (default: the model's, 2/3 for v1).") var strength: Float?
    @Option(help: "Shorter side of the image after resizing, in pixels.") var size: Int?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func run() async throws {
        let picture = try reportingErrors { try readImage(image) }
        try await runRequest(.edit(EditRequest(image: picture, prompt: prompt, strength: strength, size: size,
                                               settings: sampling.settings())),
                             model: model, compute: compute, output: output)
    }
}

/// `paella vary`: image variations through CLIP's image embedding.
struct VaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vary", abstract: "New images like a given one (needs a model folder with the CLIP vision tower).")

    @Argument(help: "The image (PNG or JPEG).") var image: String
    @Option(help: "Image size in pixels: N or WIDTHxHEIGHT (default: the model's).") var size: String?
    @OptionGroup var sampling: SamplingCLIOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    func validate() throws { _ = try parseSize(size) }

    func run() async throws {
        let size = try parseSize(size)
        let picture = try reportingErrors { try readImage(image) }
        try await runRequest(.vary(VaryRequest(image: picture, width: size?.width, height: size?.height,
                                               settings: sampling.settings())),
                             model: model, compute: compute, output: output, vision: true)
    }
}
