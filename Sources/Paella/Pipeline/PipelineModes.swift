// The notebook cells of upstream's `paella_sampling.ipynb` (dome272/Paella, commit 9f139e7), one method each.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

extension Pipeline {
    /// Text to image: `count` images of one prompt, sampled as one batch.
    func generate(_ r: GenerateRequest, _ run: RunContext) throws -> PipelineResult {
        let (m, seed) = try r.settings.resolved(defaults.generate, limits: limits), count = r.settings.count
        let grid = try tokenGrid(width: r.width, height: r.height)
        run.totalSteps = m.steps
        run.report(.encoding)
        let c = repeated(try textEmbeddings([r.prompt], run: run), count)                          // [N, embed]
        let u = try r.negativePrompt.map { repeated(try textEmbeddings([$0], what: "negative prompt", run: run), count) }
        let tokens = try sample(conditioning: c, unconditional: u, m, grid: grid, seed: seed, run: run)
        var p = parameters(mode: "generate", m, seed: seed, count: count, grid: grid)
        p.prompt = r.prompt
        p.negativePrompt = r.negativePrompt
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// Frames along the way from one prompt's embedding to another's, every frame sampled from the same seed
    /// (the notebook's `fork_rng` + `manual_seed` per frame), so only the conditioning changes.
    func interpolate(_ r: InterpolateRequest, _ run: RunContext) throws -> PipelineResult {
        var single = r.settings
        single.count = 1  // one image a frame; `validate` checked the frames
        let (m, seed) = try single.resolved(defaults.interpolate, limits: limits)
        let grid = try tokenGrid(width: r.width, height: r.height)
        run.totalSteps = m.steps * r.frames
        run.report(.encoding)
        let both = try textEmbeddings([r.from, r.to], run: run)
        let (a, b) = (both.slice(0..<1), both.slice(1..<2))                              // [1, embed] each
        var frames: [Tensor] = []
        for t in linspace(0, 1, r.frames) {
            let c = r.method == .lerp ? compute.lerp(a, b, t) : slerp(a, b, t)
            frames.append(try sample(conditioning: c, m, grid: grid, seed: seed, run: run))
        }
        let tokens = compute.concat(frames, axis: 0)                                    // [frames, h, w]
        var p = parameters(mode: "interpolate", m, seed: seed, count: r.frames, grid: grid)
        p.prompts = [r.from, r.to]
        p.frames = r.frames
        p.method = r.method
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// Multi-conditioning: a spatial conditioning map `[N, h, w, embed]` built from bands of prompts or a blend.
    func compose(_ r: ComposeRequest, _ run: RunContext) throws -> PipelineResult {
        let (m, seed) = try r.settings.resolved(defaults.compose, limits: limits), count = r.settings.count
        let grid = try tokenGrid(width: r.width, height: r.height)
        let f = models.vqgan.config.downsamplingFactor, embed = models.denoiser.config.cClip
        run.totalSteps = m.steps
        run.report(.encoding)
        var map = [Float](repeating: 0, count: grid.height * grid.width * embed)        // [h, w, embed], zero = unconditional
        let prompts: [String], regions: [String]
        switch r.layout {
        case .regions(let bands):
            guard !bands.isEmpty else { throw PipelineError.invalidOption("compose needs at least one region") }
            prompts = bands.map(\.prompt)
            regions = bands.map { "\($0.axis.rawValue) \($0.pixels.lowerBound)..<\($0.pixels.upperBound)" }
            let e = try textEmbeddings(prompts, run: run).floats
            for (k, band) in bands.enumerated() {
                let side = band.axis == .columns ? grid.width : grid.height
                let lo = max(0, Int((Double(band.pixels.lowerBound) / Double(f)).rounded()))
                let hi = min(side, Int((Double(band.pixels.upperBound) / Double(f)).rounded()))
                guard lo < hi else {
                    throw PipelineError.invalidOption("the region \(regions[k]) covers no token of the \(grid.width * f)x\(grid.height * f) image")
                }
                for y in 0..<grid.height {
                    for x in 0..<grid.width where (band.axis == .columns ? x : y) >= lo && (band.axis == .columns ? x : y) < hi {
                        for c in 0..<embed { map[(y * grid.width + x) * embed + c] = e[k * embed + c] }
                    }
                }
            }
        case let .blend(from, to, axis):
            prompts = [from, to]
            regions = ["blend along \(axis.rawValue)"]
            let e = try textEmbeddings(prompts, run: run).floats
            let steps = linspace(0, 1, axis == .rows ? grid.height : grid.width)
            for y in 0..<grid.height {
                for x in 0..<grid.width {
                    let t = steps[axis == .rows ? y : x]
                    for c in 0..<embed { map[(y * grid.width + x) * embed + c] = e[c] * (1 - t) + e[embed + c] * t }
                }
            }
        }
        let c = repeated(Tensor(map, shape: [1, grid.height, grid.width, embed]), count)
        let tokens = try sample(conditioning: c, m, grid: grid, seed: seed, run: run)
        var p = parameters(mode: "compose", m, seed: seed, count: count, grid: grid)
        p.prompts = prompts
        p.regions = regions
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// Repaints the tokens under the mask; every other token keeps the image's.
    func inpaint(_ r: InpaintRequest, _ run: RunContext) throws -> PipelineResult {
        let (m, seed) = try r.settings.resolved(defaults.inpaint, limits: limits), count = r.settings.count
        run.totalSteps = m.steps
        run.report(.encoding)
        let fitted = try fit(r.image, shortSide: r.size)
        let maskImage: PixelImage
        switch r.mask {
        case .image(let image):
            guard image.width == r.image.width, image.height == r.image.height else {
                throw PipelineError.maskSizeMismatch(mask: [image.width, image.height], image: [r.image.width, r.image.height])
            }
            maskImage = image.converted(to: .gray)
        case let .rectangle(x, y, w, h):
            maskImage = PixelImage.rectangleMask(width: r.image.width, height: r.image.height, x: x, y: y, rectWidth: w, rectHeight: h)
        }
        let tokenMask = tokenMask(fitted.applied(to: maskImage, filter: .bilinear))      // [1, h, w], 1 = repaint
        guard tokenMask.integers().contains(where: { $0 != 0 }) else { throw PipelineError.emptyMask }
        let imageTokens = try models.vqgan.encode([fitted.image])                        // [1, h, w]
        let grid = (height: imageTokens.shape[1], width: imageTokens.shape[2])
        let c = repeated(try textEmbeddings([r.prompt], run: run), count)
        let tokens = try sample(conditioning: c, tokens: repeated(imageTokens, count), mask: repeated(tokenMask, count),
                                m, grid: grid, seed: seed, run: run)
        var p = parameters(mode: "inpaint", m, seed: seed, count: count, grid: grid)
        p.prompt = r.prompt
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// Places the image's tokens on a larger canvas and samples the rest around them.
    func outpaint(_ r: OutpaintRequest, _ run: RunContext) throws -> PipelineResult {
        let (m, seed) = try r.settings.resolved(defaults.outpaint, limits: limits), count = r.settings.count
        let e = r.extend, f = models.vqgan.config.downsamplingFactor, multiple = models.denoiser.config.sideMultiple
        try limits.check(extension: e)  // `validate` also bounded the canvas by memory
        run.totalSteps = m.steps
        run.report(.encoding)
        let fitted = try fit(r.image, shortSide: r.size)
        let imageTokens = try models.vqgan.encode([fitted.image])                        // [1, h0, w0]
        let (h0, w0) = (imageTokens.shape[1], imageTokens.shape[2])
        // Pixels to tokens; the canvas must stay a multiple of the denoiser's grid, so the side extended more
        // (right over left, bottom over top when equal) takes up the rounding.
        func sides(_ a: Int, _ b: Int, _ inner: Int) -> (Int, Int) {
            var (ta, tb) = (Int((Double(a) / Double(f)).rounded()), Int((Double(b) / Double(f)).rounded()))
            let extra = (multiple - (inner + ta + tb) % multiple) % multiple
            if tb >= ta { tb += extra } else { ta += extra }
            return (ta, tb)
        }
        let (left, right) = sides(e.left, e.right, w0), (top, bottom) = sides(e.top, e.bottom, h0)
        let grid = (height: h0 + top + bottom, width: w0 + left + right)
        try checkSize(width: grid.width * f, height: grid.height * f)
        var canvas = [Int32](repeating: 0, count: grid.height * grid.width)
        var mask = [Int32](repeating: 1, count: canvas.count)
        let placed = imageTokens.integers()
        for y in 0..<h0 {
            for x in 0..<w0 {
                canvas[(y + top) * grid.width + x + left] = Int32(placed[y * w0 + x])
                mask[(y + top) * grid.width + x + left] = 0
            }
        }
        let c = repeated(try textEmbeddings([r.prompt], run: run), count)
        let tokens = try sample(conditioning: c, tokens: repeated(Tensor(int32: canvas, shape: [1, grid.height, grid.width]), count),
                                mask: repeated(Tensor(int32: mask, shape: [1, grid.height, grid.width]), count),
                                m, grid: grid, seed: seed, run: run)
        var p = parameters(mode: "outpaint", m, seed: seed, count: count, grid: grid)
        p.prompt = r.prompt
        p.extend = OutpaintRequest.Extension(left: left * f, right: right * f, top: top * f, bottom: bottom * f)
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// Structural editing: the image's tokens noised to the starting step's level (upstream
    /// `add_noise(tokens, init_step / max_steps)` with random replacements), then sampled from that step.
    func edit(_ r: EditRequest, _ run: RunContext) throws -> PipelineResult {
        let (m, seed) = try r.settings.resolved(defaults.edit, limits: limits), count = r.settings.count
        let strength = r.strength ?? defaults.editStrength
        try limits.check(strength: strength)
        let start = min(m.steps - 1, max(0, Int(((1 - strength) * Float(m.steps)).rounded())))
        run.totalSteps = m.steps - start
        run.report(.encoding)
        let imageTokens = repeated(try models.vqgan.encode([try fit(r.image, shortSide: r.size).image]), count)
        let grid = (height: imageTokens.shape[1], width: imageTokens.shape[2])
        let c = repeated(try textEmbeddings([r.prompt], run: run), count)
        let sampler = Sampler(denoiser: models.denoiser)
        let tokens = try sample(conditioning: c, m, grid: grid, startingStep: start, seed: seed, run: run) { random in
            sampler.addNoise(imageTokens, r: Float(start) / Float(m.steps), replacements: nil, random: &random)
        }
        var p = parameters(mode: "edit", m, seed: seed, count: count, grid: grid, startingStep: start)
        p.prompt = r.prompt
        p.strength = strength
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens, parameters: p)
    }

    /// New images conditioned on the CLIP image embedding of an image.
    func vary(_ r: VaryRequest, _ run: RunContext) throws -> PipelineResult {
        guard let vision = models.visionEncoder else { throw PipelineError.noVisionTower }
        let (m, seed) = try r.settings.resolved(defaults.vary, limits: limits), count = r.settings.count
        let grid = try tokenGrid(width: r.width, height: r.height)
        run.totalSteps = m.steps
        run.report(.encoding)
        let pixels = try CLIPImagePreprocessing.tensor([r.image], size: vision.config.vision.imageSize)
        let c = repeated(vision(pixels, compute: compute), count)                        // [N, embed]
        let tokens = try sample(conditioning: c, m, grid: grid, seed: seed, run: run)
        return PipelineResult(images: try decode(tokens, run: run), tokens: tokens,
                              parameters: parameters(mode: "vary", m, seed: seed, count: count, grid: grid))
    }

    // MARK: Helpers

    /// The notebook's slerp: `sin((1-t) omega) / sin(omega) * a + sin(t omega) / sin(omega) * b` with omega the
    /// angle between `a` and `b` `[1, embed]`; a lerp when they point the same way (omega ~ 0).
    func slerp(_ a: Tensor, _ b: Tensor, _ t: Float) -> Tensor {
        let (av, bv) = (a.floats, b.floats)
        func norm(_ v: [Float]) -> Float { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let cosine = zip(av, bv).reduce(0) { $0 + $1.0 * $1.1 } / max(norm(av) * norm(bv), .leastNormalMagnitude)
        let omega = acos(min(1, max(-1, cosine))), s = sin(omega)
        guard s > 1e-6 else { return compute.lerp(a, b, t) }
        let (wa, wb) = (sin((1 - t) * omega) / s, sin(t * omega) / s)
        return Tensor(zip(av, bv).map { wa * $0 + wb * $1 }, shape: a.shape)
    }

    /// `image` resized so its shorter side is `shortSide` pixels (the model's default when nil; torchvision
    /// `Resize(int)` like the notebook), then center-cropped to the denoiser's pixel multiple.
    func fit(_ image: PixelImage, shortSide: Int?) throws -> FittedImage {
        let size = try fittedSize(width: image.width, height: image.height, shortSide: shortSide, limits: limits)
        let (rw, rh) = size.resized, (cw, ch) = size.cropped
        try checkSize(width: cw, height: ch)
        let fitted = FittedImage(originalWidth: image.width, originalHeight: image.height, resizedWidth: rw, resizedHeight: rh,
                                 cropX: (rw - cw) / 2, cropY: (rh - ch) / 2, width: cw, height: ch, image: image)
        return fitted.with(image: fitted.applied(to: image.rgb(), filter: .bicubic))
    }

    /// A token is repainted when any of its pixels is masked (>= 128): `[1, h, w]` int32.
    func tokenMask(_ mask: PixelImage) -> Tensor {
        let f = models.vqgan.config.downsamplingFactor
        let (h, w) = (mask.height / f, mask.width / f)
        var out = [Int32](repeating: 0, count: h * w)
        for y in 0..<h * f {
            for x in 0..<w * f where mask.pixels[y * mask.width + x] >= 128 { out[(y / f) * w + x / f] = 1 }
        }
        return Tensor(int32: out, shape: [1, h, w])
    }
}

/// How an input image was brought to a size the model takes, so that a mask can follow the same way.
struct FittedImage {
    let originalWidth: Int, originalHeight: Int
    let resizedWidth: Int, resizedHeight: Int
    let cropX: Int, cropY: Int, width: Int, height: Int
    /// The fitted image.
    let image: PixelImage

    func with(image: PixelImage) -> FittedImage {
        FittedImage(originalWidth: originalWidth, originalHeight: originalHeight, resizedWidth: resizedWidth,
                    resizedHeight: resizedHeight, cropX: cropX, cropY: cropY, width: width, height: height, image: image)
    }

    /// `other` (of the original size) resized and cropped like the image.
    func applied(to other: PixelImage, filter: ResampleFilter) -> PixelImage {
        precondition(other.width == originalWidth && other.height == originalHeight, "FittedImage: size differs from the original")
        let resized = resizedWidth == originalWidth && resizedHeight == originalHeight
            ? other : other.resized(width: resizedWidth, height: resizedHeight, filter: filter)
        return resized.width == width && resized.height == height
            ? resized : resized.cropped(x: cropX, y: cropY, width: width, height: height)
    }
}

extension PixelImage {
    /// A gray mask of `width` x `height`: 255 inside the rectangle (clipped to the image), 0 elsewhere.
    static func rectangleMask(width: Int, height: Int, x: Int, y: Int, rectWidth: Int, rectHeight: Int) -> PixelImage {
        var mask = PixelImage(width: width, height: height, layout: .gray, repeating: 0)
        /// `start ..< start + length` clipped to `0 ..< limit`, without overflowing for any two integers.
        func clipped(_ start: Int, _ length: Int, _ limit: Int) -> Range<Int> {
            let lo = min(max(0, start), limit)
            let (end, overflow) = start.addingReportingOverflow(length)
            let hi = overflow ? (length > 0 ? limit : lo) : min(max(end, lo), limit)
            return lo..<hi
        }
        for row in clipped(y, rectHeight, height) {
            for col in clipped(x, rectWidth, width) { mask.pixels[row * width + col] = 255 }
        }
        return mask
    }
}
