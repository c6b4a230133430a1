// Default settings of each mode, from the cells of upstream's `paella_sampling.ipynb` (dome272/Paella, commit
// 9f139e7): text-to-image, interpolation, multi-conditioning, inpainting, outpainting, morphing (structural
// editing) and image variations each call `sample` with their own guidance scale and schedule.

/// The sampling settings one mode starts from; every field can be overridden per request.
public struct ModeDefaults: Codable, Sendable, Equatable {
    /// Steps of the full schedule (`T`).
    public var steps: Int
    /// Classifier-free guidance scale (`classifier_free_scale`); negative turns guidance off.
    public var guidanceScale: Float
    /// Temperatures of the first and last step (`temp_range`).
    public var temperatureRange: [Float]
    public var typicalFiltering: Bool
    public var typicalMass: Float
    public var typicalMinTokens: Int
    /// Steps `i < renoiseSteps` renoise their result; nil means every step but the last (`steps - 1`).
    public var renoiseSteps: Int?
    public var renoiseMode: RenoiseMode

    public init(steps: Int = 12, guidanceScale: Float = 5, temperatureRange: [Float] = [1, 1],
                typicalFiltering: Bool = true, typicalMass: Float = 0.2, typicalMinTokens: Int = 1,
                renoiseSteps: Int? = nil, renoiseMode: RenoiseMode = .start) {
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.temperatureRange = temperatureRange
        self.typicalFiltering = typicalFiltering
        self.typicalMass = typicalMass
        self.typicalMinTokens = typicalMinTokens
        self.renoiseSteps = renoiseSteps
        self.renoiseMode = renoiseMode
    }

    enum CodingKeys: String, CodingKey {
        case steps, guidanceScale = "guidance_scale", temperatureRange = "temperature_range"
        case typicalFiltering = "typical_filtering", typicalMass = "typical_mass", typicalMinTokens = "typical_min_tokens"
        case renoiseSteps = "renoise_steps", renoiseMode = "renoise_mode"
    }

    /// The sampler's options for a token grid of `height` x `width`.
    public func samplingOptions(height: Int, width: Int, startingStep: Int = 0) -> SamplingOptions {
        var o = SamplingOptions()
        o.steps = steps
        o.height = height
        o.width = width
        o.startingStep = startingStep
        o.temperatureRange = temperatureRange
        o.typicalFiltering = typicalFiltering
        o.typicalMass = typicalMass
        o.typicalMinTokens = typicalMinTokens
        o.guidanceScale = guidanceScale
        o.renoiseSteps = renoiseSteps ?? steps - 1
        o.renoiseMode = renoiseMode
        return o
    }
}

/// The defaults of every mode plus the image size, as a model folder's `model.json` stores them.
public struct PipelineDefaults: Codable, Sendable, Equatable {
    /// Width and height of generated images in pixels when a request gives none.
    public var imageSize: Int
    public var generate: ModeDefaults
    public var interpolate: ModeDefaults
    public var compose: ModeDefaults
    public var inpaint: ModeDefaults
    public var outpaint: ModeDefaults
    /// Structural editing; `editStrength` picks the starting step.
    public var edit: ModeDefaults
    /// How much of the schedule an edit runs: the loop starts at step `round((1 - strength) * steps)`.
    public var editStrength: Float
    public var vary: ModeDefaults

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", generate, interpolate, compose, inpaint, outpaint, edit
        case editStrength = "edit_strength", vary
    }

    public init(imageSize: Int, generate: ModeDefaults, interpolate: ModeDefaults, compose: ModeDefaults,
                inpaint: ModeDefaults, outpaint: ModeDefaults, edit: ModeDefaults, editStrength: Float, vary: ModeDefaults) {
        self.imageSize = imageSize
        self.generate = generate
        self.interpolate = interpolate
        self.compose = compose
        self.inpaint = inpaint
        self.outpaint = outpaint
        self.edit = edit
        self.editStrength = editStrength
        self.vary = vary
    }

    /// The notebook's settings for Paella v1: 32 x 32 tokens (256 pixels), 12 steps, typical mass 0.2,
    /// temperature 1; guidance 5 (text, multi-conditioning, variations), 4 (interpolation, outpainting),
    /// 6 (inpainting, morphing); morphing runs 24 steps from step 8 (strength 16/24) renoising from the previous step.
    public static let v1 = PipelineDefaults(
        imageSize: 256,
        generate: ModeDefaults(guidanceScale: 5),
        interpolate: ModeDefaults(guidanceScale: 4),
        compose: ModeDefaults(guidanceScale: 5),
        inpaint: ModeDefaults(guidanceScale: 6),
        outpaint: ModeDefaults(guidanceScale: 4),
        edit: ModeDefaults(steps: 24, guidanceScale: 6, renoiseMode: .prev),
        editStrength: 2.0 / 3.0,
        vary: ModeDefaults(guidanceScale: 5))
}
