// Default settings of each mode, from the cells of upstream's `paella_sampling.ipynb` (dome272/Paella, commit
// 9f139e7): text-to-image, interpolation, multi-conditioning, inpainting, outpainting, morphing (structural
// editing) and image variations each call `sample` with their own guidance scale and schedule.

/// The defaults of every mode plus the image size, as a model folder's `model.json` stores them.
public struct PipelineDefaults: Codable, Sendable, Equatable {
    /// Width and height of generated images in pixels when a request gives none.
    public var imageSize: Int
    public var generate: SamplingSettings
    public var interpolate: SamplingSettings
    public var compose: SamplingSettings
    public var inpaint: SamplingSettings
    public var outpaint: SamplingSettings
    /// Structural editing; `editStrength` picks the starting step.
    public var edit: SamplingSettings
    /// How much of the schedule an edit runs: the loop starts at step `round((1 - strength) * steps)`.
    public var editStrength: Float
    public var vary: SamplingSettings

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", generate, interpolate, compose, inpaint, outpaint, edit
        case editStrength = "edit_strength", vary
    }

    public init(imageSize: Int, generate: SamplingSettings, interpolate: SamplingSettings, compose: SamplingSettings,
                inpaint: SamplingSettings, outpaint: SamplingSettings, edit: SamplingSettings, editStrength: Float, vary: SamplingSettings) {
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
        generate: SamplingSettings(guidanceScale: 5),
        interpolate: SamplingSettings(guidanceScale: 4),
        compose: SamplingSettings(guidanceScale: 5),
        inpaint: SamplingSettings(guidanceScale: 6),
        outpaint: SamplingSettings(guidanceScale: 4),
        edit: SamplingSettings(steps: 24, guidanceScale: 6, renoiseMode: .prev),
        editStrength: 2.0 / 3.0,
        vary: SamplingSettings(guidanceScale: 5))
}
