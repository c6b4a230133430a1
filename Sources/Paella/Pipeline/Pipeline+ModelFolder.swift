import PaellaCore
import PaellaModels

extension Pipeline {
    /// Loads a model folder's components (the CLIP vision tower only with `loadVision`, which variations need), the
    /// weight matrices of all three at `precision`.
    public convenience init(folder: ModelFolder, compute: Compute, loadVision: Bool = false, limits: RequestLimits = .default,
                            precision: Precision = .fp32) throws {
        if loadVision && !folder.hasVisionTower { throw PipelineError.noVisionTower }
        let clip = try folder.loadCLIP(towers: loadVision ? .both : .text, precision: precision)
        guard let text = clip.text else {
            throw PipelineError.incompatibleModels("The model folder \(folder.path) has no CLIP text tower")
        }
        let models = try PipelineModels(denoiser: try folder.loadDenoiser(compute: compute, precision: precision),
                                        vqgan: try folder.loadVQGAN(compute: compute, precision: precision),
                                        textEncoder: text, visionEncoder: clip.vision, tokenizer: try folder.loadTokenizer())
        self.init(models: models, defaults: folder.manifest.defaults, modelName: folder.manifest.name, limits: limits, precision: precision)
    }
}
