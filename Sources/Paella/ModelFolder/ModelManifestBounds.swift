// The numbers of a model.json come from whoever made the folder. Before any of them sizes a layer, a loop or an
// allocation, each is checked against a range wide enough for every released and bundled model (Paella v1,
// ViT-g-14 / ViT-H-14 CLIP, the ruDALL-E VQGAN, the bundled paella-small) and narrow enough that nothing built from
// it can overflow, divide by zero, index out of range or ask for more than a machine has. The weights must then
// agree with the configuration tensor by tensor (`ModelFolder.checkWeights`), so the bounds only need to stop what
// would fail before that comparison can run.
import PaellaModels

/// The ranges a model.json's configuration values must lie in; docs/model-folder.md lists them.
public enum ModelManifestBounds {
    public static let labels = 2 ... 65536                // denoiser num_labels and VQGAN n_embed (a token is an index)
    public static let channels = 1 ... 8192               // any width: c_hidden, c_clip, embed_dim, CLIP widths
    public static let noiseEmbedding = 4 ... 4096         // c_r: gen_r_embedding divides by c_r / 2 - 1
    public static let denoiserLevels = 1 ... 8            // entries of down_levels / up_levels
    public static let blocksPerLevel = 1 ... 64           // each entry of down_levels / up_levels
    public static let vqganLevels = 1 ... 6               // entries of ch_mult (factor 2^(levels - 1) <= 32)
    public static let channelMultiplier = 1 ... 16
    public static let vqganBase = 32 ... 2048             // ch (a multiple of the 32 GroupNorm groups)
    public static let resBlocks = 1 ... 16                // num_res_blocks
    public static let attentionLevels = 0 ... 8           // entries of attn_resolutions
    public static let resolution = 1 ... 4096             // VQGAN resolution and attention resolutions
    /// v1 generates 256; each doubling costs four times the time and memory of every step. (Not tied to the
    /// VQGAN's `resolution`: `paella convert` pairs v1's defaults with VQGANs of any resolution.)
    public static let defaultImageSize = 1 ... 1024
    public static let imageChannels = 3 ... 3             // in_channels, out_ch: images are RGB
    public static let contextLength = 2 ... 1024          // room for the start and end tokens
    /// At least the 49408 tokens of CLIP's BPE vocabulary (what the tokenizer hands out): a smaller embedding
    /// would be indexed past its end.
    public static let vocabulary = 49408 ... 262_144
    public static let layers = 1 ... 128
    public static let mlpRatio = 0.25 ... 16.0
    public static let clipImageSize = 1 ... 1024
    public static let patchGrid = 1 ... 64                // image_size / patch_size: at most 4097 vision tokens
    public static let steps = 1 ... 100                   // upstream's modes use 8 to 24
    public static let guidance = -100.0 ... 100.0
    public static let temperature = 0.001 ... 100.0
    public static let typicalMass = 0.001 ... 1.0
    public static let editStrength = 0.0 ... 1.0
}

extension ModelManifest {
    /// Every configuration value outside its range, as phrases that follow "model.json ..." (field, value, range).
    /// While any is reported, the cross-component checks of `problems()` are skipped: they compute with these values.
    func boundsProblems() -> [String] {
        var found: [String] = []
        func check(_ field: String, _ value: Int, _ range: ClosedRange<Int>) {
            if !range.contains(value) { found.append("gives \(field) \(value), outside the allowed \(range.lowerBound)...\(range.upperBound)") }
        }
        func check(_ field: String, _ value: Double, _ range: ClosedRange<Double>) {
            if !(value.isFinite && range.contains(value)) {
                found.append("gives \(field) \(value), outside the allowed \(range.lowerBound)...\(range.upperBound)")
            }
        }
        func check(_ field: String, list: [Int], count: ClosedRange<Int>, each: ClosedRange<Int>) {
            if !count.contains(list.count) {
                found.append("gives \(field) \(list.count) \(list.count == 1 ? "entry" : "entries"), outside the allowed "
                             + "\(count.lowerBound)...\(count.upperBound)")
                return
            }
            for (i, value) in list.enumerated() { check("\(field)[\(i)]", value, each) }
        }
        typealias B = ModelManifestBounds

        let d = denoiser.config
        check("denoiser.config.num_labels", d.numLabels, B.labels)
        check("denoiser.config.c_hidden", d.cHidden, B.channels)
        check("denoiser.config.c_clip", d.cClip, B.channels)
        check("denoiser.config.c_r", d.cR, B.noiseEmbedding)
        check("denoiser.config.down_levels", list: d.downLevels, count: B.denoiserLevels, each: B.blocksPerLevel)
        check("denoiser.config.up_levels", list: d.upLevels, count: B.denoiserLevels, each: B.blocksPerLevel)
        if found.isEmpty {
            if d.upLevels.count != d.downLevels.count {
                found.append("gives denoiser.config.up_levels \(d.upLevels.count) levels but down_levels \(d.downLevels.count) (they must be equal)")
            }
            let halvings = 1 << (d.downLevels.count - 1)
            if d.cHidden % halvings != 0 {
                found.append("gives denoiser.config.c_hidden \(d.cHidden), which must be a multiple of \(halvings) "
                             + "(the channels halve at each of the \(d.downLevels.count) levels)")
            }
        }

        let v = vqgan.config
        check("vqgan.config.ch", v.ch, B.vqganBase)
        check("vqgan.config.ch_mult", list: v.chMult, count: B.vqganLevels, each: B.channelMultiplier)
        check("vqgan.config.num_res_blocks", v.numResBlocks, B.resBlocks)
        check("vqgan.config.attn_resolutions", list: v.attnResolutions, count: B.attentionLevels, each: B.resolution)
        check("vqgan.config.z_channels", v.zChannels, B.channels)
        check("vqgan.config.embed_dim", v.embedDim, B.channels)
        check("vqgan.config.n_embed", v.nEmbed, B.labels)
        check("vqgan.config.resolution", v.resolution, B.resolution)
        check("vqgan.config.in_channels", v.inChannels, B.imageChannels)
        check("vqgan.config.out_ch", v.outCh, B.imageChannels)
        if found.isEmpty {
            for (i, m) in v.chMult.enumerated() { check("vqgan.config.ch * ch_mult[\(i)]", v.ch * m, B.channels) }
        }
        if found.isEmpty {
            do { try v.validate() } catch VQGANError.unsupportedConfig(let why) {
                found.append("has a VQGAN config that cannot work: \(why)")
            } catch { found.append("has a VQGAN config that cannot work (\(error))") }
        }

        let c = clip.config
        check("clip.config.embed_dim", c.embedDim, B.channels)
        // Both towers are transformers: a width, a head split that must divide it, layers and an MLP ratio.
        func checkTower(_ tower: String, width: Int, split: (name: String, value: Int), layers: Int, mlpRatio: Double) {
            check("clip.config.\(tower).width", width, B.channels)
            check("clip.config.\(tower).\(split.name)", split.value, 1 ... max(1, width))
            check("clip.config.\(tower).layers", layers, B.layers)
            check("clip.config.\(tower).mlp_ratio", mlpRatio, B.mlpRatio)
            if split.value >= 1 && width % split.value != 0 {
                found.append("gives clip.config.\(tower).\(split.name) \(split.value), which does not divide the width \(width)")
            }
        }
        let t = c.text
        check("clip.config.text_cfg.context_length", t.contextLength, B.contextLength)
        check("clip.config.text_cfg.vocab_size", t.vocabSize, B.vocabulary)
        checkTower("text_cfg", width: t.width, split: ("heads", t.heads), layers: t.layers, mlpRatio: t.mlpRatio)
        let s = c.vision
        check("clip.config.vision_cfg.image_size", s.imageSize, B.clipImageSize)
        check("clip.config.vision_cfg.patch_size", s.patchSize, 1 ... max(1, s.imageSize))
        if s.patchSize >= 1 { check("clip.config.vision_cfg.image_size / patch_size", s.imageSize / s.patchSize, B.patchGrid) }
        checkTower("vision_cfg", width: s.width, split: ("head_width", s.headWidth), layers: s.layers, mlpRatio: s.mlpRatio)

        check("defaults.image_size", defaults.imageSize, B.defaultImageSize)
        check("defaults.edit_strength", Double(defaults.editStrength), B.editStrength)
        let modes: [(String, SamplingSettings)] = [
            ("generate", defaults.generate), ("interpolate", defaults.interpolate), ("compose", defaults.compose),
            ("inpaint", defaults.inpaint), ("outpaint", defaults.outpaint), ("edit", defaults.edit), ("vary", defaults.vary)]
        for (mode, settings) in modes {
            let field = "defaults.\(mode)"
            check("\(field).steps", settings.steps, B.steps)
            check("\(field).guidance_scale", Double(settings.guidanceScale), B.guidance)
            if settings.temperatureRange.count != 2 {
                found.append("gives \(field).temperature_range \(settings.temperatureRange.count) "
                             + "\(settings.temperatureRange.count == 1 ? "value" : "values") (it takes a first and a last)")
            } else {
                for (i, value) in settings.temperatureRange.enumerated() {
                    check("\(field).temperature_range[\(i)]", Double(value), B.temperature)
                }
            }
            check("\(field).typical_mass", Double(settings.typicalMass), B.typicalMass)
            check("\(field).typical_min_tokens", settings.typicalMinTokens, 1 ... max(1, d.numLabels))
            if let renoise = settings.renoiseSteps { check("\(field).renoise_steps", renoise, 0 ... max(0, settings.steps)) }
        }
        return found
    }
}
