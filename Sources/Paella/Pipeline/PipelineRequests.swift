import Foundation
import PaellaCore
import PaellaIO

/// Per-request changes to a mode's settings; nil keeps the mode's value.
public struct SamplingOverrides: Codable, Sendable, Equatable {
    public var steps: Int?
    public var guidanceScale: Float?
    public var temperatureRange: [Float]?
    public var typicalFiltering: Bool?
    public var typicalMass: Float?
    public var renoiseSteps: Int?
    public var renoiseMode: RenoiseMode?

    public init(steps: Int? = nil, guidanceScale: Float? = nil, temperatureRange: [Float]? = nil,
                typicalFiltering: Bool? = nil, typicalMass: Float? = nil, renoiseSteps: Int? = nil,
                renoiseMode: RenoiseMode? = nil) {
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.temperatureRange = temperatureRange
        self.typicalFiltering = typicalFiltering
        self.typicalMass = typicalMass
        self.renoiseSteps = renoiseSteps
        self.renoiseMode = renoiseMode
    }
}

/// What every request shares: the seed, how many images, and changes to the mode's sampling settings.
public struct CommonSettings: Codable, Sendable, Equatable {
    /// Seeds the sampler's generator (`torch.manual_seed`-compatible draws): the same seed, settings, model and
    /// thread count give the same images. nil draws a random seed, recorded in the result's parameters.
    public var seed: UInt64?
    /// Images generated together as one batch.
    public var count: Int
    public var sampling: SamplingOverrides

    public init(seed: UInt64? = 0, count: Int = 1, sampling: SamplingOverrides = SamplingOverrides()) {
        self.seed = seed
        self.count = count
        self.sampling = sampling
    }

    /// The one place a request's settings are resolved: `defaults` with the overrides applied and checked against
    /// `limits`, and the seed (a random one when none is given). A bad value is a `PipelineError.outOfRange`.
    public func resolved(_ defaults: SamplingSettings, limits: RequestLimits = .default) throws -> (sampling: SamplingSettings, seed: UInt64) {
        try limits.check(count, 1...limits.maxCount, .count, "The image count")
        let m = resolvedSampling(defaults)
        try limits.check(m)
        return (m, seed ?? Self.randomSeed())
    }

    /// A seed for a request that gives none (31 bits, like upstream's examples).
    public static func randomSeed() -> UInt64 { UInt64.random(in: 0 ..< (1 << 31)) }
}

/// Text to image.
public struct GenerateRequest: Sendable, Equatable {
    public var prompt: String
    /// An extension of upstream: its text embedding replaces the zero unconditional embedding of guidance.
    public var negativePrompt: String?
    /// Image size in pixels; nil takes the model's default size.
    public var width: Int?, height: Int?
    public var settings: CommonSettings

    public init(prompt: String, negativePrompt: String? = nil, width: Int? = nil, height: Int? = nil,
                settings: CommonSettings = CommonSettings()) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.settings = settings
    }
}

/// How interpolation moves between two text embeddings.
public enum InterpolationMethod: String, Codable, Sendable, CaseIterable {
    /// `torch.lerp` of the embeddings.
    case lerp
    /// Spherical interpolation along the great circle between their directions (the notebook's slerp cell).
    case slerp
}

/// Frames between two prompts, each sampled from the same seed.
public struct InterpolateRequest: Sendable, Equatable {
    public var from: String, to: String
    /// Frames including both ends (at least 2); `count` in `settings` is ignored: one image per frame.
    public var frames: Int
    public var method: InterpolationMethod
    public var width: Int?, height: Int?
    public var settings: CommonSettings

    public init(from: String, to: String, frames: Int = 8, method: InterpolationMethod = .lerp, width: Int? = nil,
                height: Int? = nil, settings: CommonSettings = CommonSettings()) {
        self.from = from
        self.to = to
        self.frames = frames
        self.method = method
        self.width = width
        self.height = height
        self.settings = settings
    }
}

/// Multi-conditioning: different prompts over different parts of the canvas.
public struct ComposeRequest: Sendable, Equatable {
    public enum Axis: String, Codable, Sendable { case columns, rows }
    /// A prompt that conditions a band of columns or rows, given in pixels (`lower ..< upper`).
    public struct Region: Sendable, Equatable {
        public var prompt: String
        public var axis: Axis
        public var pixels: Range<Int>
        public init(prompt: String, axis: Axis, pixels: Range<Int>) {
            self.prompt = prompt
            self.axis = axis
            self.pixels = pixels
        }
    }
    public enum Layout: Sendable, Equatable {
        /// Bands of prompts; positions no band covers get the zero (unconditional) embedding.
        case regions([Region])
        /// A smooth linear blend from the first prompt to the second: top to bottom (`.rows`) or left to right
        /// (`.columns`).
        case blend(from: String, to: String, along: Axis)
    }
    public var layout: Layout
    public var width: Int?, height: Int?
    public var settings: CommonSettings

    public init(layout: Layout, width: Int? = nil, height: Int? = nil, settings: CommonSettings = CommonSettings()) {
        self.layout = layout
        self.width = width
        self.height = height
        self.settings = settings
    }
}

/// Which part of an image inpainting repaints.
public enum InpaintMask: Sendable, Equatable {
    /// An image of the input image's size: white (>= 128 after conversion to gray) = repaint.
    case image(PixelImage)
    /// A rectangle in the input image's pixels.
    case rectangle(x: Int, y: Int, width: Int, height: Int)
}

/// Repaints the masked part of an image; a token is repainted when any of its pixels is masked.
public struct InpaintRequest: Sendable, Equatable {
    public var image: PixelImage
    public var mask: InpaintMask
    public var prompt: String
    /// The image's shorter side is resized to this many pixels first; nil takes the model's default size.
    public var size: Int?
    public var settings: CommonSettings

    public init(image: PixelImage, mask: InpaintMask, prompt: String, size: Int? = nil,
                settings: CommonSettings = CommonSettings()) {
        self.image = image
        self.mask = mask
        self.prompt = prompt
        self.size = size
        self.settings = settings
    }
}

/// Extends an image onto a larger canvas; the image's own tokens never change.
public struct OutpaintRequest: Sendable, Equatable {
    /// Pixels added on each side (after the image is fitted), rounded to whole tokens.
    public struct Extension: Codable, Sendable, Equatable {
        public var left: Int, right: Int, top: Int, bottom: Int
        public init(left: Int = 0, right: Int = 0, top: Int = 0, bottom: Int = 0) {
            self.left = left
            self.right = right
            self.top = top
            self.bottom = bottom
        }
    }
    public var image: PixelImage
    public var extend: Extension
    public var prompt: String
    public var size: Int?
    public var settings: CommonSettings

    public init(image: PixelImage, extend: Extension, prompt: String, size: Int? = nil,
                settings: CommonSettings = CommonSettings()) {
        self.image = image
        self.extend = extend
        self.prompt = prompt
        self.size = size
        self.settings = settings
    }
}

/// Structural editing (the notebook's "morphing"): the image's tokens are noised to the level of the starting
/// step and denoised towards the prompt from there, renoising from the previous step.
public struct EditRequest: Sendable, Equatable {
    public var image: PixelImage
    public var prompt: String
    /// How much of the schedule runs, in (0, 1]: the loop starts at step `round((1 - strength) * steps)`.
    /// nil takes the model's default.
    public var strength: Float?
    public var size: Int?
    public var settings: CommonSettings

    public init(image: PixelImage, prompt: String, strength: Float? = nil, size: Int? = nil,
                settings: CommonSettings = CommonSettings()) {
        self.image = image
        self.prompt = prompt
        self.strength = strength
        self.size = size
        self.settings = settings
    }
}

/// Image variations: new images conditioned on the CLIP image embedding of an image.
public struct VaryRequest: Sendable, Equatable {
    public var image: PixelImage
    public var width: Int?, height: Int?
    public var settings: CommonSettings

    public init(image: PixelImage, width: Int? = nil, height: Int? = nil, settings: CommonSettings = CommonSettings()) {
        self.image = image
        self.width = width
        self.height = height
        self.settings = settings
    }
}

/// What produced an image: written into its PNG and printed by `--json`.
public struct GenerationParameters: Codable, Sendable, Equatable {
    public var mode: String
    public var model: String
    public var prompt: String?
    public var negativePrompt: String?
    /// The prompts of interpolation (from, to) and composition (one per region, or from and to of a blend).
    public var prompts: [String]?
    /// Composition: each prompt's band, e.g. "columns 0..<128", or the blend's direction.
    public var regions: [String]?
    public var seed: UInt64
    public var count: Int
    public var width: Int, height: Int
    public var steps: Int
    public var startingStep: Int
    public var guidanceScale: Float
    public var temperatureRange: [Float]
    /// nil when typical filtering is off.
    public var typicalMass: Float?
    public var renoiseSteps: Int
    public var renoiseMode: RenoiseMode
    public var strength: Float?
    public var frames: Int?
    public var method: InterpolationMethod?
    public var extend: OutpaintRequest.Extension?
    /// The weights' precision when not fp32 (absent for fp32, the parity path).
    public var precision: Precision?
    public var paellaVersion: String

    /// One-line JSON, keys sorted.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    /// PNG text chunks: `parameters` (this JSON) and `Software`.
    public var pngText: [String: String] {
        ["parameters": json, "Software": "Paella for Swift \(paellaVersion)"]
    }
}

/// The images a request produced, their tokens and the settings used.
public struct PipelineResult: Sendable {
    /// One image per batch item (interpolation: per frame).
    public let images: [PixelImage]
    /// The sampled token grids `[N, h, w]` (int32).
    public let tokens: Tensor
    public let parameters: GenerationParameters
    /// Things the caller should know that did not stop the request, one sentence each (a prompt longer than
    /// CLIP's context was cut).
    public internal(set) var warnings: [String] = []
}

/// A user-facing pipeline failure: one sentence saying what is wrong and what to do.
public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case invalidOption(String)
    /// A number of the request outside what `RequestLimits` allows: the field and one sentence naming its value
    /// and the allowed range.
    case outOfRange(field: RequestField, message: String)
    case invalidSize(width: Int, height: Int, multiple: Int, minimum: Int)
    case emptyPrompt(String)
    case maskSizeMismatch(mask: [Int], image: [Int])
    case emptyMask
    case noVisionTower
    case incompatibleModels(String)
    /// A model part computed NaN or infinite values: its weights (or those of a part feeding it) are damaged or
    /// stored in another dtype than their file says. `part` is "denoiser" or "VQGAN decoder".
    case nonFiniteModelOutput(part: String)

    public var description: String {
        switch self {
        case .invalidOption(let message): return message + "."
        case .outOfRange(_, let message): return message + "."
        case let .invalidSize(width, height, multiple, minimum):
            return "The image size \(width)x\(height) does not fit this model: width and height must be multiples of " +
                "\(multiple) pixels and at least \(minimum); pick for example \(Self.nearest(width, multiple, minimum))x\(Self.nearest(height, multiple, minimum))."
        case .emptyPrompt(let which): return "The \(which) is empty; give some text."
        case let .maskSizeMismatch(mask, image):
            return "The mask is \(mask[0])x\(mask[1]) pixels but the image is \(image[0])x\(image[1]); give a mask of the image's size."
        case .emptyMask: return "The mask covers no part of the image; mark the region to repaint in white."
        case .noVisionTower:
            return "This model folder has no CLIP vision tower, which variations need; convert it again with --with-vision."
        case .incompatibleModels(let message): return message + "."
        case .nonFiniteModelOutput(let part):
            return "The \(part) computed values that are not finite numbers, so this model's weights are damaged or not "
                + "stored in the dtype their files give; check the folder with `paella info --model DIR --verify`."
        }
    }

    private static func nearest(_ value: Int, _ multiple: Int, _ minimum: Int) -> Int {
        max(minimum, value / multiple * multiple + (value % multiple >= multiple / 2 && value <= Int.max - multiple ? multiple : 0))
    }
}
