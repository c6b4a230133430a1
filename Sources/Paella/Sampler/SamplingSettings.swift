// The settings of upstream's `sample()` (dome272/Paella utils.py, commit 3671515) as one value: model.json's
// mode defaults, a request's resolved overrides, the sampler and the recorded parameters all use this type.
// Changed on purpose: the token-grid size (`size`) and the starting step (`starting_t`) are arguments of each
// call, not settings.

/// How Paella samples: the schedule, guidance, temperatures, typical filtering and renoising.
public struct SamplingSettings: Codable, Sendable, Equatable {
    /// Steps of the full schedule (`T`).
    public var steps: Int
    /// Classifier-free guidance scale (`classifier_free_scale`): `lerp(uncond, cond, scale)`; negative turns
    /// guidance off.
    public var guidanceScale: Float
    /// Temperatures of the first and last step, linearly interpolated (`temp_range`).
    public var temperatureRange: [Float]
    public var typicalFiltering: Bool
    public var typicalMass: Float
    public var typicalMinTokens: Int
    /// Steps `i < renoiseSteps` renoise their result towards the next noise level (never the last step); nil
    /// means every step but the last (`steps - 1`).
    public var renoiseSteps: Int?
    public var renoiseMode: RenoiseMode

    /// Upstream `sample()`'s defaults (guidance off, renoising after every step but the last).
    public init(steps: Int = 12, guidanceScale: Float = -1, temperatureRange: [Float] = [1, 1],
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

    /// model.json's keys.
    enum CodingKeys: String, CodingKey {
        case steps, guidanceScale = "guidance_scale", temperatureRange = "temperature_range"
        case typicalFiltering = "typical_filtering", typicalMass = "typical_mass", typicalMinTokens = "typical_min_tokens"
        case renoiseSteps = "renoise_steps", renoiseMode = "renoise_mode"
    }

    /// `r_range = linspace(0, 1, T + 1)[:-1]`: the noise level of each step.
    public var noiseLevels: [Float] { Array(linspace(0, 1, steps + 1).dropLast()) }
    /// `linspace(temp_range[0], temp_range[1], T)`.
    public var temperatures: [Float] { linspace(temperatureRange[0], temperatureRange[1], steps) }
    /// Steps below this one renoise.
    public var renoiseUntil: Int { renoiseSteps ?? steps - 1 }
}
