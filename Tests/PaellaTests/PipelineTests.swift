import Foundation
import Testing
import Paella
import PaellaTestSupport
import PaellaCore
import PaellaIO
import PaellaModels

@Suite("Pipeline")
struct PipelineTests {
    let pipeline: Pipeline
    var side: Int { pipeline.defaults.imageSize }
    var factor: Int { pipeline.models.vqgan.config.downsamplingFactor }

    init() throws { pipeline = try TinyPipeline.get() }

    @Test("a bf16 pipeline runs every part of a generation, deterministically, and records its precision; fp32 records none")
    func bfloat16PipelineRecordsItsPrecision() async throws {
        let folder = try ModelFolder(path: try Fixtures.tinyModelFolder())
        let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())
        let bf16 = try Pipeline(folder: folder, compute: compute, precision: .bf16)
        let request = GenerateRequest(prompt: "a red circle", settings: CommonSettings(seed: 42, count: 1))
        let a = try await bf16.generate(request), b = try await bf16.generate(request)
        #expect(a.parameters.precision == .bf16 && a.parameters.json.contains("\"precision\":\"bf16\""))
        #expect(a.tokens.integers() == b.tokens.integers())
        #expect(a.images[0].width == bf16.defaults.imageSize)
        let fp32 = try await pipeline.generate(request)
        #expect(fp32.parameters.precision == nil && !fp32.parameters.json.contains("precision"))
    }

    @Test func generateShapesParametersAndDeterminism() async throws {
        let request = GenerateRequest(prompt: "a red circle", width: 2 * side, height: side,
                                      settings: CommonSettings(seed: 42, count: 2))
        let a = try await pipeline.generate(request)
        #expect(a.images.count == 2)
        #expect(a.images.allSatisfy { $0.width == 2 * side && $0.height == side && $0.layout == .rgb })
        #expect(a.tokens.shape == [2, side / factor, 2 * side / factor])
        #expect(a.parameters.mode == "generate" && a.parameters.prompt == "a red circle" && a.parameters.seed == 42)
        #expect(a.parameters.steps == pipeline.defaults.generate.steps && a.parameters.guidanceScale == pipeline.defaults.generate.guidanceScale)
        let b = try await pipeline.generate(request)
        #expect(a.tokens.integers() == b.tokens.integers())
        #expect(try a.images[0].encodePNG(text: a.parameters.pngText) == b.images[0].encodePNG(text: b.parameters.pngText))
        var other = request
        other.settings.seed = 43
        #expect(try await pipeline.generate(other).tokens.integers() != a.tokens.integers())
    }

    @Test func negativePromptReplacesTheUnconditionalEmbedding() async throws {
        let plain = try await pipeline.generate(GenerateRequest(prompt: "a cat", settings: CommonSettings(seed: 3)))
        let negative = try await pipeline.generate(GenerateRequest(prompt: "a cat", negativePrompt: "a dog", settings: CommonSettings(seed: 3)))
        #expect(plain.tokens.integers() != negative.tokens.integers())
        #expect(negative.parameters.negativePrompt == "a dog")
    }

    @Test func progressCountsEveryStep() async throws {
        let steps = Steps()
        _ = try await pipeline.generate(GenerateRequest(prompt: "a cat")) { steps.append($0) }
        let sampling = steps.all.filter { $0.stage == .sampling }
        #expect(sampling.map(\.step) == Array(1...pipeline.defaults.generate.steps))
        #expect(sampling.allSatisfy { $0.totalSteps == pipeline.defaults.generate.steps })
        // Each sampling step carries the tokens so far (for previews); the other stages carry none.
        #expect(sampling.allSatisfy { $0.tokens?.shape == [1, side / factor, side / factor] })
        #expect(steps.all.filter { $0.stage != .sampling }.allSatisfy { $0.tokens == nil })
        #expect(steps.all.first?.stage == .encoding && steps.all.last?.stage == .decoding)
    }

    @Test func eventsEndWithTheResult() async throws {
        var progress = 0, finished = 0
        for try await event in pipeline.events(.generate(GenerateRequest(prompt: "a cat"))) {
            switch event {
            case .progress: progress += 1
            case .finished(let result): finished += 1; #expect(result.images.count == 1)
            }
        }
        #expect(finished == 1 && progress >= pipeline.defaults.generate.steps)
    }

    @Test func cancellationStopsBeforeTheNextStep() async throws {
        let holder = TaskHolder()
        let steps = Steps()
        let task = Task { [pipeline] in
            try await pipeline.generate(GenerateRequest(prompt: "a cat")) { p in
                steps.append(p)
                if p.stage == .sampling { holder.cancel() }
            }
        }
        holder.set(task)
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(steps.all.filter { $0.stage == .sampling }.count == 1)
    }

    @Test func interpolationFramesShareTheSeed() async throws {
        let overrides = SamplingOverrides(guidanceScale: 3)
        for method in InterpolationMethod.allCases {
            let result = try await pipeline.interpolate(InterpolateRequest(
                from: "a red circle", to: "a blue square", frames: 3, method: method,
                settings: CommonSettings(seed: 9, sampling: overrides)))
            #expect(result.images.count == 3 && result.tokens.shape[0] == 3)
            #expect(result.parameters.prompts == ["a red circle", "a blue square"] && result.parameters.method == method)
            // The first frame is the first prompt's embedding sampled from the seed, as text-to-image does.
            var generate = GenerateRequest(prompt: "a red circle", settings: CommonSettings(seed: 9, sampling: overrides))
            generate.settings.sampling.steps = pipeline.defaults.interpolate.steps
            let first = try await pipeline.generate(generate)
            #expect(Array(result.tokens.integers().prefix(first.tokens.count)) == first.tokens.integers())
        }
        await #expect(throws: PipelineError.self) {
            try await pipeline.interpolate(InterpolateRequest(from: "a", to: "b", frames: 1))
        }
    }

    @Test func composeRegionsAndBlends() async throws {
        let half = side / 2
        let regions = try await pipeline.compose(ComposeRequest(layout: .regions([
            .init(prompt: "a dog", axis: .columns, pixels: 0..<half), .init(prompt: "a wolf", axis: .columns, pixels: half..<side)]),
            settings: CommonSettings(seed: 1, count: 2)))
        #expect(regions.images.count == 2 && regions.parameters.prompts == ["a dog", "a wolf"])
        #expect(regions.parameters.regions == ["columns 0..<\(half)", "columns \(half)..<\(side)"])
        let blend = try await pipeline.compose(ComposeRequest(layout: .blend(from: "a dog", to: "a cat", along: .rows),
                                                              settings: CommonSettings(seed: 1)))
        #expect(blend.tokens.shape == [1, side / factor, side / factor])
        await #expect(throws: PipelineError.self) {
            try await pipeline.compose(ComposeRequest(layout: .regions([.init(prompt: "a dog", axis: .rows, pixels: 5000..<6000)])))
        }
    }

    @Test func inpaintKeepsUnmaskedTokens() async throws {
        let image = TinyPipeline.picture(width: side + side / 2, height: side)    // fitted: 1.5 sides wide
        let original = try pipeline.models.vqgan.encode([image]).integers()
        let rect = InpaintMask.rectangle(x: factor, y: factor, width: 2 * factor + 1, height: factor)  // spills into a 3rd column
        let result = try await pipeline.inpaint(InpaintRequest(image: image, mask: rect, prompt: "a cat",
                                                               settings: CommonSettings(seed: 5, count: 2)))
        let (h, w) = (result.tokens.shape[1], result.tokens.shape[2])
        #expect(w * factor == image.width && h * factor == image.height)
        let tokens = result.tokens.integers()
        var masked = Set<Int>()
        for y in 1..<2 { for x in 1..<4 { masked.insert(y * w + x) } }
        for b in 0..<2 {
            for i in 0..<h * w where !masked.contains(i) { #expect(tokens[b * h * w + i] == original[i]) }
        }
        // The mask follows the image: a mask image of the image's size, white = repaint.
        let maskImage = PixelImage.rectangleMaskForTests(width: image.width, height: image.height)
        let fromImage = try await pipeline.inpaint(InpaintRequest(image: image, mask: .image(maskImage), prompt: "a cat",
                                                                  settings: CommonSettings(seed: 5)))
        let t = fromImage.tokens.integers()
        for i in 0..<h * w where i % w >= w / 2 { #expect(t[i] == original[i]) }
        await #expect(throws: PipelineError.maskSizeMismatch(mask: [10, 10], image: [image.width, image.height])) {
            try await pipeline.inpaint(InpaintRequest(image: image, mask: .image(PixelImage(width: 10, height: 10, layout: .gray)), prompt: "x"))
        }
        await #expect(throws: PipelineError.emptyMask) {
            try await pipeline.inpaint(InpaintRequest(image: image, mask: .image(PixelImage(width: image.width, height: image.height, layout: .gray)),
                                                      prompt: "x"))
        }
        // An empty rectangle is a bound of the request, refused before anything runs.
        await #expect(throws: PipelineError.self) {
            try await pipeline.inpaint(InpaintRequest(image: image, mask: .rectangle(x: 0, y: 0, width: 0, height: 0), prompt: "x"))
        }
    }

    @Test func outpaintKeepsThePlacedImage() async throws {
        let image = TinyPipeline.picture(width: side, height: side)
        let original = try pipeline.models.vqgan.encode([image]).integers()
        let (h0, w0) = (side / factor, side / factor)
        // 2.4 tokens on the left rounds to 2; the right takes up the rest of the grid multiple.
        let result = try await pipeline.outpaint(OutpaintRequest(image: image, extend: .init(left: factor * 12 / 5, right: 3 * factor),
                                                                 prompt: "a wide landscape", settings: CommonSettings(seed: 2)))
        let e = try #require(result.parameters.extend)
        #expect(e.left == 2 * factor && e.top == 0 && e.bottom == 0)
        let (h, w) = (result.tokens.shape[1], result.tokens.shape[2])
        #expect(h == h0 && w == w0 + (e.left + e.right) / factor && w % pipeline.models.denoiser.config.sideMultiple == 0)
        #expect(result.images[0].width == w * factor)
        let tokens = result.tokens.integers()
        for y in 0..<h0 { for x in 0..<w0 { #expect(tokens[y * w + x + e.left / factor] == original[y * w0 + x]) } }
        await #expect(throws: PipelineError.self) {
            try await pipeline.outpaint(OutpaintRequest(image: image, extend: .init(), prompt: "x"))
        }
    }

    @Test func editStartsAtTheChosenStep() async throws {
        let image = TinyPipeline.picture(width: side, height: side)
        let total = pipeline.defaults.edit.steps
        for (strength, start) in [(Float(0.5), total / 2), (1, 0), (0.01, total - 1)] {
            let steps = Steps()
            let result = try await pipeline.edit(EditRequest(image: image, prompt: "a fox", strength: strength,
                                                             settings: CommonSettings(seed: 4))) { steps.append($0) }
            #expect(result.parameters.startingStep == start && result.parameters.strength == strength)
            #expect(steps.all.filter { $0.stage == .sampling }.count == total - start)
        }
        await #expect(throws: PipelineError.self) {
            try await pipeline.edit(EditRequest(image: image, prompt: "a fox", strength: 0))
        }
    }

    @Test func variationsNeedTheVisionTower() async throws {
        let image = TinyPipeline.picture(width: 40, height: 30)
        let result = try await pipeline.vary(VaryRequest(image: image, settings: CommonSettings(seed: 8, count: 2)))
        #expect(result.images.count == 2 && result.parameters.mode == "vary")
        let textOnly = try TinyPipeline.make(withVision: false)
        await #expect(throws: PipelineError.noVisionTower) { try await textOnly.vary(VaryRequest(image: image)) }
    }

    @Test func badInputIsOneSentence() async throws {
        await #expect(throws: PipelineError.self) { try await pipeline.generate(GenerateRequest(prompt: "x", width: side + 1)) }
        await #expect(throws: PipelineError.emptyPrompt("prompt")) { try await pipeline.generate(GenerateRequest(prompt: "  ")) }
        await #expect(throws: PipelineError.self) {
            try await pipeline.generate(GenerateRequest(prompt: "x", settings: CommonSettings(count: 0)))
        }
        await #expect(throws: PipelineError.self) {
            try await pipeline.generate(GenerateRequest(prompt: "x", settings: CommonSettings(sampling: SamplingOverrides(temperatureRange: [1, -1]))))
        }
        let message = PipelineError.invalidSize(width: 100, height: 64, multiple: 32, minimum: 64).description
        #expect(message.contains("100x64") && message.contains("96x64") && message.hasSuffix("."))
    }
}

/// Progress events collected from the request's thread.
final class Steps: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [PipelineProgress] = []
    func append(_ p: PipelineProgress) { lock.withLock { events.append(p) } }
    var all: [PipelineProgress] { lock.withLock { events } }
}

final class TaskHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var task: Task<PipelineResult, Error>?
    private var pending = false
    func set(_ t: Task<PipelineResult, Error>) {
        lock.withLock {
            task = t
            if pending { t.cancel() }
        }
    }
    func cancel() { lock.withLock { if let task { task.cancel() } else { pending = true } } }
}

extension PixelImage {
    /// The left half white (repaint), the right half black.
    static func rectangleMaskForTests(width: Int, height: Int) -> PixelImage {
        var mask = PixelImage(width: width, height: height, layout: .gray, repeating: 0)
        for y in 0..<height { for x in 0..<width / 2 { mask.pixels[y * width + x] = 255 } }
        return mask
    }
}
