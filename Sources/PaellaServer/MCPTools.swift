// The tools Paella offers over the Model Context Protocol: their JSON schemas, and how their arguments become a
// `PipelineRequest`. Argument errors are one sentence naming the argument; every number is then checked by the
// library (`Pipeline.validate` against the `RequestLimits`), so the limits and their sentences are the same as
// `paella serve`'s HTTP API.
import Foundation
import MCP
import Paella
import PaellaIO

/// One of the tools, by its MCP name.
enum MCPTool: String, CaseIterable, Sendable {
    case generateImage = "generate_image"
    case editImage = "edit_image"
    case varyImage = "vary_image"
    case interpolate

    /// The tool as `tools/list` describes it. `limits` are the bounds the schema states.
    func definition(limits: RequestLimits) -> Tool {
        Tool(name: rawValue, title: title, description: summary, inputSchema: schema(limits: limits),
             annotations: Tool.Annotations(readOnlyHint: true, destructiveHint: false, idempotentHint: false, openWorldHint: false))
    }

    /// The arguments each tool takes; any other is refused, so that a misspelt one is not silently ignored.
    var argumentNames: Set<String> {
        let sampling: Set<String> = ["seed", "steps", "guidance"]
        switch self {
        case .generateImage: return sampling.union(["prompt", "negative_prompt", "size", "n"])
        case .editImage: return sampling.union(["image", "prompt", "mask", "rectangle", "strength", "short_side", "n"])
        case .varyImage: return sampling.union(["image", "size", "n"])
        case .interpolate: return sampling.union(["from", "to", "frames", "method", "size"])
        }
    }

    private var title: String {
        switch self {
        case .generateImage: return "Generate images from text"
        case .editImage: return "Edit an image (inpaint or restyle)"
        case .varyImage: return "Variations of an image"
        case .interpolate: return "Interpolate between two prompts"
        }
    }

    private var summary: String {
        switch self {
        case .generateImage:
            return "Generates n images from a text prompt with Paella. Returns each image as a PNG and the parameters " +
                "that made it (the seed among them: pass it again to get the same image)."
        case .editImage:
            return "Edits an image (base64 PNG or JPEG). With a mask (white = repaint) or a rectangle: inpaints that part " +
                "from the prompt and keeps the rest. With neither: a structural edit of the whole image towards the " +
                "prompt; strength (0 to 1] says how much changes."
        case .varyImage:
            return "Generates variations of an image (base64 PNG or JPEG): new images with its content and style."
        case .interpolate:
            return "Generates frames that move from one prompt to another, all from the same seed: the first frame is " +
                "the first prompt, the last the second."
        }
    }

    private func schema(limits: RequestLimits) -> Value {
        var properties: [String: Value] = [
            "seed": ["type": "integer", "minimum": 0,
                     "description": "Seeds the sampler: the same seed and settings give the same images. Default: a random seed, reported in the result."],
            "steps": ["type": "integer", "minimum": 1, "maximum": .int(limits.maxSteps),
                      "description": "Sampling steps. Default: the model's setting for this mode."],
            "guidance": ["type": "number",
                         "description": "Classifier-free guidance scale: higher follows the prompt more closely. Default: the model's setting."],
        ]
        let count: Value = ["type": "integer", "minimum": 1, "maximum": .int(limits.maxCount), "description": "How many images. Default: 1."]
        let size: Value = ["type": "string", "pattern": "^[0-9]+x[0-9]+$",
                           "description": "WIDTHxHEIGHT in pixels, e.g. 256x256 (multiples of the model's token size). Default: the model's size."]
        let image: Value = ["type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                            "description": "The image as base64 PNG or JPEG (a data: URL is fine too)."]
        var required: [Value] = []
        switch self {
        case .generateImage:
            properties["prompt"] = ["type": "string", "minLength": 1, "maxLength": .int(limits.maxPromptCharacters), "description": "What to draw."]
            properties["negative_prompt"] = ["type": "string", "maxLength": .int(limits.maxPromptCharacters),
                                             "description": "What to steer away from (replaces the empty prompt of guidance)."]
            properties["size"] = size
            properties["n"] = count
            required = ["prompt"]
        case .editImage:
            properties["image"] = image
            properties["prompt"] = ["type": "string", "minLength": 1, "maxLength": .int(limits.maxPromptCharacters),
                                    "description": "What the repainted part, or the edited image, should show."]
            properties["mask"] = ["type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                                  "description": "Inpainting mask as base64 PNG of the image's size: white (light) pixels are repainted."]
            properties["rectangle"] = [
                "type": "object", "description": "Inpaint this rectangle instead of a mask, in the image's pixels.",
                "properties": ["x": ["type": "integer", "minimum": 0], "y": ["type": "integer", "minimum": 0],
                               "width": ["type": "integer", "minimum": 1], "height": ["type": "integer", "minimum": 1]],
                "required": ["x", "y", "width", "height"], "additionalProperties": false,
            ]
            properties["strength"] = ["type": "number", "exclusiveMinimum": 0, "maximum": 1,
                                      "description": "Structural edit only (no mask, no rectangle): how much of the image changes. Default: the model's setting."]
            properties["short_side"] = ["type": "integer", "minimum": 1,
                                        "description": "The image's shorter side is resized to this many pixels first. Default: the model's size."]
            properties["n"] = count
            required = ["image", "prompt"]
        case .varyImage:
            properties["image"] = image
            properties["size"] = size
            properties["n"] = count
            required = ["image"]
        case .interpolate:
            properties["from"] = ["type": "string", "minLength": 1, "maxLength": .int(limits.maxPromptCharacters), "description": "The first frame's prompt."]
            properties["to"] = ["type": "string", "minLength": 1, "maxLength": .int(limits.maxPromptCharacters), "description": "The last frame's prompt."]
            properties["frames"] = ["type": "integer", "minimum": 2, "maximum": .int(limits.maxFrames),
                                    "description": "Frames including both ends. Default: 8, or the limit when it is lower."]
            properties["method"] = ["type": "string", "enum": .array(InterpolationMethod.allCases.map { .string($0.rawValue) }),
                                    "description": "How the text embeddings are mixed: lerp (linear) or slerp (spherical). Default: lerp."]
            properties["size"] = size
            required = ["from", "to"]
        }
        return ["type": "object", "properties": .object(properties), "required": .array(required), "additionalProperties": false]
    }

    /// The pipeline request the arguments ask for. Only the arguments' form is checked here (types, presence,
    /// images that decode); their numbers are checked with the whole request by `Pipeline.validate`.
    func request(_ arguments: ToolArguments, maxInputPixels: Int, limits: RequestLimits) throws -> PipelineRequest {
        let settings = try arguments.commonSettings()
        switch self {
        case .generateImage:
            let size = try arguments.size("size")
            return .generate(GenerateRequest(prompt: try arguments.prompt("prompt"), negativePrompt: try arguments.string("negative_prompt"),
                                             width: size?.width, height: size?.height, settings: settings))
        case .editImage:
            let image = try arguments.requiredImage("image", maxPixels: maxInputPixels).rgb()
            let prompt = try arguments.prompt("prompt")
            let side = try arguments.integer("short_side")
            let mask = try arguments.image("mask", maxPixels: maxInputPixels)
            let rectangle = try arguments.rectangle("rectangle")
            let strength = try arguments.number("strength").map(Float.init)
            if mask != nil && rectangle != nil {
                throw MCPToolError("edit_image takes a mask or a rectangle, not both; leave one out.")
            }
            if mask != nil || rectangle != nil, strength != nil {
                throw MCPToolError("strength applies to structural edits only; leave it out when you give a mask or a rectangle.")
            }
            if let mask {
                guard mask.width == image.width, mask.height == image.height else {
                    throw MCPToolError(PipelineError.maskSizeMismatch(mask: [mask.width, mask.height], image: [image.width, image.height]).description)
                }
                return .inpaint(InpaintRequest(image: image, mask: .image(mask.converted(to: .gray)), prompt: prompt, size: side, settings: settings))
            }
            if let rectangle {
                return .inpaint(InpaintRequest(image: image, mask: rectangle, prompt: prompt, size: side, settings: settings))
            }
            return .edit(EditRequest(image: image, prompt: prompt, strength: strength, size: side, settings: settings))
        case .varyImage:
            let size = try arguments.size("size")
            return .vary(VaryRequest(image: try arguments.requiredImage("image", maxPixels: maxInputPixels).rgb(), width: size?.width,
                                     height: size?.height, settings: settings))
        case .interpolate:
            let size = try arguments.size("size")
            let methodName = try arguments.string("method") ?? InterpolationMethod.lerp.rawValue
            guard let method = InterpolationMethod(rawValue: methodName) else {
                throw MCPToolError("The argument method must be lerp or slerp, got '\(methodName.prefix(40))'.")
            }
            return .interpolate(InterpolateRequest(from: try arguments.prompt("from"), to: try arguments.prompt("to"),
                                                   frames: try arguments.integer("frames") ?? min(8, limits.maxFrames), method: method,
                                                   width: size?.width, height: size?.height, settings: settings))
        }
    }
}

/// Why a tool call did nothing, as one sentence the client's model can act on: an argument missing, of the wrong type or
/// malformed (naming it), or no room to run.
struct MCPToolError: Error, CustomStringConvertible, Equatable {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A tool call's arguments (or an object argument's fields), read by name with their JSON types checked.
struct ToolArguments {
    let values: [String: Value]

    /// Refuses names not in `allowed`, listing the ones `owner` (a tool, an object argument) takes, so that a
    /// misspelt argument is not silently ignored.
    init(_ values: [String: Value], allowed: Set<String>, owner: String) throws {
        self.values = values
        if let unknown = values.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw MCPToolError("\(owner) takes no '\(unknown.prefix(40))'; it takes \(allowed.sorted().joined(separator: ", ")).")
        }
    }

    /// The value of `name`, nil when absent or JSON null.
    private func value(_ name: String) -> Value? {
        guard let value = values[name], !value.isNull else { return nil }
        return value
    }

    private func wrongType(_ name: String, _ expected: String) -> MCPToolError {
        MCPToolError("The argument \(name) must be \(expected), got \(String(describing: values[name] ?? .null).prefix(40)).")
    }

    func string(_ name: String) throws -> String? {
        guard let value = value(name) else { return nil }
        guard let text = value.stringValue else { throw wrongType(name, "a string") }
        return text
    }

    /// A prompt that is present and not blank (the library's sentence when it is).
    func prompt(_ name: String) throws -> String {
        guard let text = try string(name), !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw MCPToolError(PipelineError.emptyPrompt("argument \(name)").description)
        }
        return text
    }

    /// An integer; a JSON number with no fraction counts (some clients send 4.0).
    func integer(_ name: String) throws -> Int? {
        guard let value = value(name) else { return nil }
        if let int = value.intValue { return int }
        if let double = value.doubleValue, let int = Int(exactly: double) { return int }
        throw wrongType(name, "an integer")
    }

    /// A finite number.
    func number(_ name: String) throws -> Double? {
        guard let value = value(name) else { return nil }
        guard let number = value.doubleValue ?? value.intValue.map(Double.init), number.isFinite else { throw wrongType(name, "a number") }
        return number
    }

    /// `WIDTHxHEIGHT` in pixels.
    func size(_ name: String) throws -> (width: Int, height: Int)? {
        guard let text = try string(name) else { return nil }
        guard let size = PaellaServer.parseSize(text) else {
            throw MCPToolError("The argument \(name) must be WIDTHxHEIGHT in pixels, e.g. 256x256, got '\(text.prefix(40))'.")
        }
        return size
    }

    /// The seed, image count, steps and guidance every tool shares.
    func commonSettings() throws -> CommonSettings {
        let seed = try integer("seed")
        if let seed, seed < 0 { throw MCPToolError("The argument seed must be 0 or more, got \(seed).") }
        return CommonSettings(seed: seed.map { UInt64($0) }, count: try integer("n") ?? 1,
                              sampling: SamplingOverrides(steps: try integer("steps"), guidanceScale: try number("guidance").map(Float.init)))
    }

    /// `{x, y, width, height}` in the image's pixels.
    func rectangle(_ name: String) throws -> InpaintMask? {
        guard let value = value(name) else { return nil }
        guard let object = value.objectValue else { throw wrongType(name, "an object {x, y, width, height}") }
        let fields = ["x", "y", "width", "height"]
        let rectangle = try ToolArguments(object, allowed: Set(fields), owner: "The argument \(name)")
        let numbers = try fields.map { field in
            guard let number = try rectangle.integer(field) else {
                throw MCPToolError("The argument \(name) needs \(field); give x, y, width and height in pixels.")
            }
            return number
        }
        return .rectangle(x: numbers[0], y: numbers[1], width: numbers[2], height: numbers[3])
    }

    /// A base64 PNG or JPEG (or a data: URL, which the SDK hands over already decoded), decoded with its pixel
    /// count checked from the header before any pixel memory; nil when absent.
    func image(_ name: String, maxPixels: Int) throws -> PixelImage? {
        guard let value = value(name) else { return nil }
        let bytes: Data
        if let data = value.dataValue?.1 {
            bytes = data
        } else if let text = value.stringValue {
            guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters), !data.isEmpty else {
                throw MCPToolError("The argument \(name) is not base64; give the image's PNG or JPEG bytes in base64.")
            }
            bytes = data
        } else {
            throw wrongType(name, "a base64 string")
        }
        do {
            return try PaellaServer.decodeImage(Array(bytes), what: "The argument \(name)", maxPixels: maxPixels)
        } catch let error as ImageInputError {
            throw MCPToolError(error.message)
        }
    }

    func requiredImage(_ name: String, maxPixels: Int) throws -> PixelImage {
        guard let image = try image(name, maxPixels: maxPixels) else {
            throw MCPToolError("The argument \(name) is missing; give the image as base64 PNG or JPEG.")
        }
        return image
    }
}
