// Bounds on every number a request carries, checked once here before anything is allocated: the command line,
// the server and library callers all go through `Pipeline.validate`. The image sizes a request may ask for are
// not constants: they follow from an estimate of the memory the request needs on the loaded models, compared
// with `RequestLimits.memoryBytes`.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// What one request may ask for. The defaults bound what a single machine should be asked to do; a server
/// passes tighter ones (its configured limits).
public struct RequestLimits: Sendable, Equatable {
    /// Working memory one request may take, by `Pipeline.estimatedBytes`: 2 GB by default, a sensible share of a
    /// laptop; the model's weights are not counted (they are loaded once for all requests).
    public var memoryBytes: Int
    /// Images one request makes. 1000 bounds a run's length and its files, not its memory: the command line
    /// samples large counts in batches that fit `memoryBytes` (`Pipeline.batches`).
    public var maxCount: Int
    /// Sampling steps: time grows linearly with them, and no schedule needs more than 1000 (upstream uses 8 to 24).
    public var maxSteps: Int
    /// Interpolation frames, both ends included; each is sampled on its own and all are kept until decoded.
    public var maxFrames: Int
    /// Composition regions, each one prompt to encode.
    public var maxRegions: Int
    /// A longest side in pixels imposed on top of the memory estimate (a server's policy); nil: memory alone.
    public var maxSide: Int?
    /// Characters (Unicode scalars) of one prompt. CLIP reads only the first tokens (77 for v1) and the rest
    /// is cut before the text encoder, but the whole text is cleaned; 1 Mi characters keep that to a few MB.
    public var maxPromptCharacters: Int

    public init(memoryBytes: Int = 2_000_000_000, maxCount: Int = 1000, maxSteps: Int = 1000, maxFrames: Int = 256,
                maxRegions: Int = 64, maxSide: Int? = nil, maxPromptCharacters: Int = 1 << 20) {
        self.memoryBytes = memoryBytes
        self.maxCount = maxCount
        self.maxSteps = maxSteps
        self.maxFrames = maxFrames
        self.maxRegions = maxRegions
        self.maxSide = maxSide
        self.maxPromptCharacters = maxPromptCharacters
    }

    public static let `default` = RequestLimits()

    /// Worker threads for a requested count: at most the cores this process may use. More threads than cores
    /// only add switching (and 100,000 of them exhaust the system's processes), so a larger request is clamped
    /// with a note rather than refused: a user asking for "many" gets all the cores, and a script written on a
    /// bigger machine still runs. nil takes all the cores.
    public static func usableThreads(_ requested: Int?, cores: Int = ThreadPool.coreCount) throws -> (threads: Int, note: String?) {
        guard let requested else { return (cores, nil) }
        guard requested >= 1 else {
            throw PipelineError.outOfRange(field: .threads, message: "The thread count \(requested) is out of range; give 1 to \(cores) (the cores this process may use)")
        }
        guard requested > cores else { return (requested, nil) }
        return (cores, "note: \(requested) threads asked for, but this process may use \(cores) cores; running \(cores) threads.")
    }

    // MARK: The checks (each names the field, the value and what is allowed)

    func check(_ value: Int, _ range: ClosedRange<Int>, _ field: RequestField, _ what: String) throws {
        guard range.contains(value) else {
            throw PipelineError.outOfRange(field: field, message: "\(what) \(value) is out of range; give \(range.lowerBound) to \(range.upperBound)")
        }
    }

    /// Steps, guidance, temperatures, typical mass and renoise steps of resolved settings.
    public func check(_ m: SamplingSettings) throws {
        try check(m.steps, 1...maxSteps, .steps, "The step count")
        guard m.temperatureRange.count == 2, m.temperatureRange.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw PipelineError.outOfRange(field: .temperature, message: "The temperature \(m.temperatureRange.map { "\($0)" }.joined(separator: ":")) is out of range; give one or two positive finite numbers")
        }
        guard m.typicalMass > 0 && m.typicalMass <= 1 else {
            throw PipelineError.outOfRange(field: .typicalMass, message: "The typical mass \(m.typicalMass) is out of range; give a number in (0, 1]")
        }
        guard m.guidanceScale.isFinite else {
            throw PipelineError.outOfRange(field: .guidance, message: "The guidance scale \(m.guidanceScale) is out of range; give a finite number (negative turns guidance off)")
        }
        if let r = m.renoiseSteps { try check(r, 0...maxSteps, .renoiseSteps, "The renoise step count") }
    }

    /// The count and the given overrides of `settings` (the mode's defaults are checked when resolved).
    public func check(_ settings: CommonSettings) throws {
        try check(settings.count, 1...maxCount, .count, "The image count")
        try check(settings.resolvedSampling(SamplingSettings()))
    }

    /// Structural editing's strength, in (0, 1].
    public func check(strength: Float?) throws {
        guard let strength else { return }
        guard strength > 0 && strength <= 1 else {
            throw PipelineError.outOfRange(field: .strength, message: "The strength \(strength) is out of range; give a number in (0, 1]")
        }
    }

    /// Outpainting's sides: none negative, at least one positive (how far they may go follows from memory).
    public func check(extension e: OutpaintRequest.Extension) throws {
        guard [e.left, e.right, e.top, e.bottom].allSatisfy({ $0 >= 0 }), e.left > 0 || e.right > 0 || e.top > 0 || e.bottom > 0 else {
            throw PipelineError.outOfRange(field: .extend, message: "The outpaint extension \(e.text) is out of range; give 0 or more pixels a side and more than 0 on at least one")
        }
    }

    /// Interpolation frames, 2 to `maxFrames`.
    public func check(frames: Int) throws { try check(frames, 2...maxFrames, .frames, "The frame count") }

    /// A prompt's length (emptiness is the pipeline's own check, which names the prompt).
    public func check(prompt: String, _ field: RequestField = .prompt) throws {
        let length = prompt.unicodeScalars.count
        guard length <= maxPromptCharacters else {
            throw PipelineError.outOfRange(field: field, message: "The \(field == .negativePrompt ? "negative prompt" : "prompt") is \(length) characters long, out of range; give at most \(maxPromptCharacters) (CLIP reads only its first tokens)")
        }
    }
}

/// Which field of a request a bound refused (a server answers it as the offending parameter).
public enum RequestField: String, Sendable, Equatable, CaseIterable {
    case count, size, steps, guidance, temperature, typicalMass, renoiseSteps, strength, frames, extend, rect, prompt,
         negativePrompt, regions, threads
}

extension OutpaintRequest.Extension {
    /// "left=64,right=0,top=0,bottom=0", as the command line takes it.
    var text: String { "left=\(left),right=\(right),top=\(top),bottom=\(bottom)" }
}

extension CommonSettings {
    /// `defaults` with the overrides applied (unchecked).
    func resolvedSampling(_ defaults: SamplingSettings) -> SamplingSettings {
        var m = defaults
        let o = sampling
        m.steps = o.steps ?? m.steps
        m.guidanceScale = o.guidanceScale ?? m.guidanceScale
        m.temperatureRange = o.temperatureRange ?? m.temperatureRange
        m.typicalFiltering = o.typicalFiltering ?? m.typicalFiltering
        m.typicalMass = o.typicalMass ?? m.typicalMass
        m.renoiseSteps = o.renoiseSteps ?? m.renoiseSteps
        m.renoiseMode = o.renoiseMode ?? m.renoiseMode
        return m
    }
}

// MARK: - Memory

/// Arithmetic on sizes that saturates at `Int.max` instead of trapping: an estimate that overflows is simply
/// more than any limit.
struct SaturatingSize {
    static func product(_ factors: Int...) -> Int {
        var result = 1
        for f in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: max(0, f))
            if overflow { return .max }
            result = p
        }
        return result
    }

    static func sum(_ terms: Int...) -> Int {
        var result = 0
        for t in terms {
            let (s, overflow) = result.addingReportingOverflow(max(0, t))
            if overflow { return .max }
            result = s
        }
        return result
    }
}

/// What a checked request will do: its output size, its images and the memory it is estimated to need.
public struct RequestEstimate: Sendable, Equatable {
    public var width: Int, height: Int
    public var images: Int
    public var bytes: Int
}

/// A byte count for messages: "1.5 GB".
public func formattedBytes(_ bytes: Int) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
    var value = Double(bytes), unit = 0
    while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", value, units[unit])
}

extension Pipeline {
    /// Bytes `images` images of `width` x `height` take while sampled `batch` at a time, on these models: the
    /// denoiser's logits and activations for the guided batch, the VQGAN's full attention over the latent
    /// positions and its activations for one image at a time, and the finished images. It errs high: the bundled
    /// model's measured peaks at 256 and 512 pixels are about half of it. It saturates instead of overflowing.
    public func estimatedBytes(width: Int, height: Int, batch: Int, images: Int) -> Int {
        let f = models.vqgan.config.downsamplingFactor
        let tokens = SaturatingSize.product(width / f, height / f), pixels = SaturatingSize.product(width, height)
        let d = models.denoiser.config, q = models.vqgan.config
        // Denoiser: cond + uncond rows; its logits plus the sampler's copies of them (guided mix, temperature,
        // filtering, draws), and about six feature maps a level, each level a quarter of the one above.
        let rows = SaturatingSize.product(2, batch)
        let levelFloats = d.levelChannels.enumerated().reduce(0) { $0 + $1.element / (1 << (2 * $1.offset)) }
        let denoiser = SaturatingSize.product(rows, tokens, SaturatingSize.sum(SaturatingSize.product(4, d.numLabels),
                                                                               SaturatingSize.product(6, levelFloats)), 4)
        // VQGAN (one image at a time): single-head attention scores over the positions of each attention level
        // (the middle block's at the latent grid always), and about four maps of its widest level at full size.
        let latentResolution = max(1, q.resolution / f)
        var attention = SaturatingSize.product(tokens, tokens, 4)
        for r in q.attnResolutions {
            let scale = max(1, r / latentResolution), positions = SaturatingSize.product(tokens, scale, scale)
            attention = SaturatingSize.sum(attention, SaturatingSize.product(positions, positions, 4))
        }
        let widest = q.ch * (q.chMult.max() ?? 1)
        let vqgan = SaturatingSize.sum(attention, SaturatingSize.product(4, pixels, widest, 4))
        // Kept until the end: the token grids and the RGB images.
        let kept = SaturatingSize.product(images, SaturatingSize.sum(SaturatingSize.product(tokens, 4), SaturatingSize.product(pixels, 3)))
        return SaturatingSize.sum(denoiser, vqgan, kept)
    }

    /// The largest square side, a multiple of the token grid, whose single image fits `limits`; 0 when none does.
    func largestSquareSide(_ limits: RequestLimits) -> Int {
        let m = pixelMultiple
        var (lo, hi) = (0, min(limits.maxSide ?? (1 << 20), 1 << 20) / m)  // in multiples of `m`
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if estimatedBytes(width: mid * m, height: mid * m, batch: 1, images: 1) <= limits.memoryBytes { lo = mid } else { hi = mid - 1 }
        }
        return lo * m < minimumSide ? 0 : lo * m
    }

    /// Checks the shape of a `width` x `height` output (multiples, minimum, `maxSide`) and that `images` of
    /// them, sampled `batch` at a time, fit the memory limit; `what` starts the sentence ("The image size
    /// 512x512", "The 8064x64 outpainting canvas"). `fromInputImage`: the size follows an input image's shape,
    /// which the advice then asks to crop (a long strip can be over the limit at any size the request may name).
    func checkMemory(width: Int, height: Int, batch: Int, images: Int, extra: Int = 0, limits: RequestLimits,
                     field: RequestField, what: String, fromInputImage: Bool = false) throws -> RequestEstimate {
        if let maxSide = limits.maxSide, width > maxSide || height > maxSide {
            throw PipelineError.outOfRange(field: field, message: "\(what) is out of range; at most \(maxSide) pixels a side are allowed here")
        }
        let bytes = SaturatingSize.sum(estimatedBytes(width: width, height: height, batch: batch, images: images), extra)
        guard bytes <= limits.memoryBytes else {
            let largest = largestSquareSide(limits)
            let single = estimatedBytes(width: width, height: height, batch: 1, images: 1) <= limits.memoryBytes
            let square = largest > 0 ? "the largest square size that fits is \(largest)x\(largest)" : "no image size fits this limit"
            let advice = images > 1 && single ? "ask for fewer images at this size"
                : fromInputImage && largest > 0 ? "crop the input image closer to a square or ask for a smaller size (\(square))"
                : square
            let need = bytes == .max ? "more than 9 EB" : "about \(formattedBytes(bytes))"
            throw PipelineError.outOfRange(field: field, message: "\(what)\(images > 1 ? " for \(images) images" : "") would need \(need) " +
                "of memory, more than the \(formattedBytes(limits.memoryBytes)) a request may use; \(advice)")
        }
        try checkSize(width: width, height: height)  // after the memory check, which refuses huge values first
        return RequestEstimate(width: width, height: height, images: images, bytes: bytes)
    }

    /// The size a `width` x `height` image has after `fit` with `shortSide` (the model's default when nil), with
    /// checked arithmetic: the resized size and the cropped one.
    func fittedSize(width: Int, height: Int, shortSide: Int?, limits: RequestLimits) throws
        -> (resized: (width: Int, height: Int), cropped: (width: Int, height: Int)) {
        let side = shortSide ?? defaults.imageSize
        let largestSide = limits.maxSide ?? largestSquareSide(limits)
        guard side >= minimumSide && side <= max(minimumSide, largestSide) else {
            throw PipelineError.outOfRange(field: .size, message: "The image size \(side) is out of range; give \(minimumSide) to \(max(minimumSide, largestSide)) pixels for the shorter side")
        }
        guard width > 0, height > 0 else {
            throw PipelineError.outOfRange(field: .size, message: "The input image is \(width)x\(height) pixels; give an image with pixels")
        }
        let (short, long) = (min(width, height), max(width, height))
        let (product, overflow) = side.multipliedReportingOverflow(by: long)
        let newLong = overflow ? Int.max : product / short
        let (rw, rh) = width <= height ? (side, newLong) : (newLong, side)
        let m = pixelMultiple
        return ((rw, rh), (rw / m * m, rh / m * m))
    }

    /// Checks every number of `request` against `limits` (the pipeline's own when nil) before anything is
    /// allocated, and returns what it will make. A refusal is a `PipelineError` of one sentence naming the
    /// field, its value and what is allowed (with the memory estimate where memory is the reason).
    @discardableResult
    public func validate(_ request: PipelineRequest, limits given: RequestLimits? = nil) throws -> RequestEstimate {
        let limits = given ?? self.limits
        func settings(_ s: CommonSettings, _ defaults: SamplingSettings) throws -> Int {
            try limits.check(s.count, 1...limits.maxCount, .count, "The image count")
            try limits.check(s.resolvedSampling(defaults))
            return s.count
        }
        func size(_ width: Int?, _ height: Int?) throws -> (Int, Int) {
            let (w, h) = (width ?? defaults.imageSize, height ?? defaults.imageSize)
            guard w > 0, h > 0 else {
                throw PipelineError.outOfRange(field: .size, message: "The image size \(w)x\(h) is out of range; give positive pixels such as \(defaults.imageSize)x\(defaults.imageSize)")
            }
            return (w, h)
        }
        func fitted(_ image: PixelImage, _ side: Int?, count: Int, canvas: (Int, Int) -> (Int, Int) = { ($0, $1) },
                    field: RequestField = .size, what: (Int, Int) -> String = { "The image size \($0)x\($1)" }) throws -> RequestEstimate {
            let fit = try fittedSize(width: image.width, height: image.height, shortSide: side, limits: limits)
            let (w, h) = canvas(fit.cropped.width, fit.cropped.height)
            // The resized input and its gray mask, held while the image is encoded.
            let input = SaturatingSize.product(fit.resized.width, fit.resized.height, 4)
            return try checkMemory(width: w, height: h, batch: count, images: count, extra: input, limits: limits, field: field,
                                   what: what(w, h), fromInputImage: true)
        }
        /// Outpainting rounds its canvas up to the token grid.
        func roundedUp(_ side: Int) -> Int {
            let m = pixelMultiple
            return side > Int.max - m ? .max : (side + m - 1) / m * m
        }
        switch request {
        case .generate(let r):
            try limits.check(prompt: r.prompt)
            if let n = r.negativePrompt { try limits.check(prompt: n, .negativePrompt) }
            let count = try settings(r.settings, defaults.generate)
            let (w, h) = try size(r.width, r.height)
            return try checkMemory(width: w, height: h, batch: count, images: count, limits: limits, field: .size, what: "The image size \(w)x\(h)")
        case .interpolate(let r):
            try limits.check(prompt: r.from)
            try limits.check(prompt: r.to)
            try limits.check(frames: r.frames)
            try limits.check(r.settings.resolvedSampling(defaults.interpolate))
            let (w, h) = try size(r.width, r.height)
            return try checkMemory(width: w, height: h, batch: 1, images: r.frames, limits: limits, field: .size, what: "The image size \(w)x\(h)")
        case .compose(let r):
            let count = try settings(r.settings, defaults.compose)
            switch r.layout {
            case .regions(let bands):
                try limits.check(bands.count, 1...limits.maxRegions, .regions, "The region count")
                for band in bands {
                    try limits.check(prompt: band.prompt)
                    guard band.pixels.lowerBound >= 0 else {
                        throw PipelineError.outOfRange(field: .regions, message: "The region \(band.pixels) is out of range; give pixels from 0 with FROM < TO")
                    }
                }
            case let .blend(from, to, _):
                try limits.check(prompt: from)
                try limits.check(prompt: to)
            }
            let (w, h) = try size(r.width, r.height)
            // The spatial conditioning map: one embedding per position, repeated for the batch.
            let f = models.vqgan.config.downsamplingFactor
            let map = SaturatingSize.product(w / f, h / f, models.denoiser.config.cClip, 4, count + 1)
            return try checkMemory(width: w, height: h, batch: count, images: count, extra: map, limits: limits, field: .size, what: "The image size \(w)x\(h)")
        case .inpaint(let r):
            try limits.check(prompt: r.prompt)
            let count = try settings(r.settings, defaults.inpaint)
            if case let .rectangle(x, y, w, h) = r.mask {
                guard (0..<r.image.width).contains(x), (0..<r.image.height).contains(y), w >= 1, h >= 1 else {
                    throw PipelineError.outOfRange(field: .rect, message: "The inpaint rectangle \(x),\(y),\(w),\(h) is out of range; give X in 0..<\(r.image.width) " +
                        "and Y in 0..<\(r.image.height) of the \(r.image.width)x\(r.image.height) image, WIDTH and HEIGHT at least 1 (the border clips them)")
                }
            }
            return try fitted(r.image, r.size, count: count)
        case .outpaint(let r):
            try limits.check(prompt: r.prompt)
            let count = try settings(r.settings, defaults.outpaint)
            try limits.check(extension: r.extend)
            let e = r.extend
            return try fitted(r.image, r.size, count: count,
                              canvas: { (roundedUp(SaturatingSize.sum($0, e.left, e.right)), roundedUp(SaturatingSize.sum($1, e.top, e.bottom))) },
                              field: .extend, what: { w, h in
                                  "The outpaint extension \(e.text) makes " + (max(w, h) == .max ? "a canvas too large to count, which" : "a \(w)x\(h) canvas that")
                              })
        case .edit(let r):
            try limits.check(prompt: r.prompt)
            let count = try settings(r.settings, defaults.edit)
            try limits.check(strength: r.strength ?? defaults.editStrength)
            return try fitted(r.image, r.size, count: count)
        case .vary(let r):
            let count = try settings(r.settings, defaults.vary)
            let (w, h) = try size(r.width, r.height)
            return try checkMemory(width: w, height: h, batch: count, images: count, limits: limits, field: .size, what: "The image size \(w)x\(h)")
        }
    }

    /// `request` as requests of at most as many images as fit `limits` together (the pipeline's when nil), to
    /// run one after another; each batch after the first takes the next seed (recorded in its images). A
    /// request that fits is returned as it is, so ordinary runs keep their seeded output.
    public func batches(_ request: PipelineRequest, limits given: RequestLimits? = nil) throws -> [PipelineRequest] {
        let limits = given ?? self.limits
        guard var settings = request.commonSettings, settings.count > 1 else {
            try validate(request, limits: limits)
            return [request]
        }
        let count = settings.count
        try limits.check(count, 1...limits.maxCount, .count, "The image count")
        // One image must fit on its own; then the largest batch that fits (the estimate grows with the batch).
        settings.count = 1
        try validate(request.with(settings), limits: limits)
        var (lo, hi) = (1, count)
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            settings.count = mid
            if (try? validate(request.with(settings), limits: limits)) != nil { lo = mid } else { hi = mid - 1 }
        }
        if lo == count { return [request] }
        let seed = request.commonSettings?.seed ?? CommonSettings.randomSeed()
        return stride(from: 0, to: count, by: lo).enumerated().map { k, first in
            var s = settings
            s.count = min(lo, count - first)
            s.seed = seed &+ UInt64(k)
            return request.with(s)
        }
    }
}

extension PipelineRequest {
    /// The count, seed and sampling changes of a request that makes `count` images (interpolation: nil).
    var commonSettings: CommonSettings? {
        switch self {
        case .generate(let r): return r.settings
        case .interpolate: return nil
        case .compose(let r): return r.settings
        case .inpaint(let r): return r.settings
        case .outpaint(let r): return r.settings
        case .edit(let r): return r.settings
        case .vary(let r): return r.settings
        }
    }

    /// Images the request makes: its count, or interpolation's frames.
    public var imageCount: Int { commonSettings?.count ?? { if case .interpolate(let r) = self { return r.frames } else { return 1 } }() }

    /// The request with other settings.
    func with(_ settings: CommonSettings) -> PipelineRequest {
        switch self {
        case .generate(var r): r.settings = settings; return .generate(r)
        case .interpolate(var r): r.settings = settings; return .interpolate(r)
        case .compose(var r): r.settings = settings; return .compose(r)
        case .inpaint(var r): r.settings = settings; return .inpaint(r)
        case .outpaint(var r): r.settings = settings; return .outpaint(r)
        case .edit(var r): r.settings = settings; return .edit(r)
        case .vary(var r): r.settings = settings; return .vary(r)
        }
    }

    /// Checks the request against `limits` on `pipeline`'s models (`Pipeline.validate`).
    @discardableResult
    public func validate(for pipeline: Pipeline, limits: RequestLimits? = nil) throws -> RequestEstimate {
        try pipeline.validate(self, limits: limits)
    }
}
