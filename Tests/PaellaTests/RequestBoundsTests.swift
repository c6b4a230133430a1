import Foundation
import Testing
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport

/// Every size-like number of a request is refused before anything is allocated, with one sentence naming the
/// field, the value and what is allowed (issue 25).
@Suite("Request bounds")
struct RequestBoundsTests {
    let pipeline: Pipeline
    let side: Int
    let picture: PixelImage

    init() throws {
        pipeline = try TinyPipeline.get()
        side = pipeline.defaults.imageSize
        picture = TinyPipeline.picture(width: side, height: side)
    }

    /// The field a request was refused for and its sentence; fails the test when it was not refused that way.
    func refusal(_ request: PipelineRequest, limits: RequestLimits? = nil) -> (field: RequestField, message: String)? {
        do {
            try pipeline.validate(request, limits: limits)
            Issue.record("\(request) was accepted")
        } catch PipelineError.outOfRange(let field, let message) {
            #expect(message.split(separator: ";").count <= 2 && !message.contains("\n"), "not one sentence: \(message)")
            return (field, message)
        } catch {
            Issue.record("\(request) was refused with \(error), not as out of range")
        }
        return nil
    }

    func generate(width: Int? = nil, height: Int? = nil, count: Int = 1, sampling: SamplingOverrides = .init()) -> PipelineRequest {
        .generate(GenerateRequest(prompt: "a cat", width: width, height: height, settings: CommonSettings(count: count, sampling: sampling)))
    }

    @Test func ordinaryRequestsPassWithAnEstimate() throws {
        let estimate = try pipeline.validate(generate(count: 2))
        #expect(estimate.width == side && estimate.height == side && estimate.images == 2)
        #expect(estimate.bytes > 0 && estimate.bytes < pipeline.limits.memoryBytes)
        // More images and larger sizes need more.
        #expect(pipeline.estimatedBytes(width: 2 * side, height: side, batch: 1, images: 1)
                > pipeline.estimatedBytes(width: side, height: side, batch: 1, images: 1))
        #expect(pipeline.estimatedBytes(width: side, height: side, batch: 4, images: 4)
                > pipeline.estimatedBytes(width: side, height: side, batch: 1, images: 4))
    }

    @Test func sizesAreBoundedByTheMemoryTheyNeed() throws {
        for size in [Int.max, Int.max - 1, 1 << 40, 8192] {
            let refused = try #require(refusal(generate(width: size, height: size)))
            #expect(refused.field == .size && refused.message.contains("\(size)x\(size)"))
            #expect(refused.message.contains("of memory, more than the") && refused.message.contains("the largest square size that fits is"))
        }
        #expect(refusal(generate(width: 0, height: side))?.field == .size)
        #expect(refusal(generate(width: -side, height: side))?.field == .size)
        // The largest square size the message offers is accepted, the next one is not.
        let message = try #require(refusal(generate(width: 8192, height: 8192))?.message)
        let largest = try #require(Int(message.split(separator: " ").last!.split(separator: "x").first!))
        let multiple = pipeline.models.vqgan.config.downsamplingFactor * pipeline.models.denoiser.config.sideMultiple
        try pipeline.validate(generate(width: largest, height: largest))
        #expect(refusal(generate(width: largest + multiple, height: largest + multiple))?.field == .size)
        // A size that is no multiple of the grid keeps its own message.
        #expect(throws: PipelineError.invalidSize(width: side + 1, height: side, multiple: multiple, minimum: 2 * multiple)) {
            try pipeline.validate(generate(width: side + 1, height: side))
        }
    }

    /// An input image's shape sets the size of an edit: a long strip over the budget is answered with "crop it",
    /// since no size the request can name would make it fit.
    @Test func aLongInputImageIsAskedToBeCropped() throws {
        let budget = RequestLimits(memoryBytes: pipeline.estimatedBytes(width: 3 * side, height: 3 * side, batch: 1, images: 1))
        let strip = TinyPipeline.picture(width: 16 * side, height: side)
        let refused = try #require(refusal(.edit(EditRequest(image: strip, prompt: "a red circle")), limits: budget))
        #expect(refused.field == .size)
        #expect(refused.message.contains("crop the input image closer to a square or ask for a smaller size (the largest square size that fits is"),
                "\(refused.message)")
        try pipeline.validate(.edit(EditRequest(image: picture, prompt: "a red circle")), limits: budget)  // a square fits
    }

    @Test func countsStepsAndSamplingNumbersAreBounded() throws {
        for count in [0, -1, 100_000, Int.max] { #expect(refusal(generate(count: count))?.message.contains("\(count)") == true) }
        #expect(refusal(generate(count: 100_000))?.message == "The image count 100000 is out of range; give 1 to 1000")
        #expect(refusal(generate(sampling: .init(steps: 0)))?.field == .steps)
        #expect(refusal(generate(sampling: .init(steps: Int.max)))?.field == .steps)
        #expect(refusal(generate(sampling: .init(guidanceScale: .nan)))?.field == .guidance)
        #expect(refusal(generate(sampling: .init(guidanceScale: .infinity)))?.field == .guidance)
        #expect(refusal(generate(sampling: .init(temperatureRange: [0, 1])))?.field == .temperature)
        #expect(refusal(generate(sampling: .init(temperatureRange: [1, .infinity])))?.field == .temperature)
        #expect(refusal(generate(sampling: .init(typicalMass: 1.5)))?.field == .typicalMass)
        #expect(refusal(generate(sampling: .init(renoiseSteps: -1)))?.field == .renoiseSteps)
        // Tighter limits (a server's) bound the same fields.
        let server = RequestLimits(maxCount: 4, maxSteps: 100, maxSide: 2 * side)
        #expect(refusal(generate(count: 5), limits: server)?.message == "The image count 5 is out of range; give 1 to 4")
        #expect(refusal(generate(sampling: .init(steps: 101)), limits: server)?.field == .steps)
        #expect(refusal(generate(width: 4 * side, height: side), limits: server)?.field == .size)
    }

    @Test func framesRegionsStrengthAndPromptsAreBounded() throws {
        for frames in [1, 257, Int.max, Int.min] {
            #expect(refusal(.interpolate(InterpolateRequest(from: "a", to: "b", frames: frames)))?.field == .frames)
        }
        for strength: Float in [0, -1, 1.5, .nan, .infinity] {
            #expect(refusal(.edit(EditRequest(image: picture, prompt: "a", strength: strength)))?.field == .strength)
        }
        let bands = (0..<65).map { ComposeRequest.Region(prompt: "a", axis: .columns, pixels: $0..<$0 + 1) }
        #expect(refusal(.compose(ComposeRequest(layout: .regions(bands))))?.field == .regions)
        #expect(refusal(.compose(ComposeRequest(layout: .regions([.init(prompt: "a", axis: .rows, pixels: -5..<3)]))))?.field == .regions)
        let limits = RequestLimits(maxPromptCharacters: 10)
        #expect(refusal(.generate(GenerateRequest(prompt: String(repeating: "a", count: 11))), limits: limits)?.field == .prompt)
        #expect(refusal(.generate(GenerateRequest(prompt: "a", negativePrompt: String(repeating: "b", count: 11))), limits: limits)?.field == .negativePrompt)
    }

    @Test func outpaintExtensionsAndInpaintRectanglesCannotOverflow() throws {
        func outpaint(_ e: OutpaintRequest.Extension, size: Int? = nil) -> PipelineRequest {
            .outpaint(OutpaintRequest(image: picture, extend: e, prompt: "sky", size: size))
        }
        #expect(refusal(outpaint(.init()))?.field == .extend)
        #expect(refusal(outpaint(.init(left: -8)))?.field == .extend)
        #expect(refusal(outpaint(.init(left: 80000)))?.message.contains("x\(side) canvas that would need about") == true)
        #expect(refusal(outpaint(.init(left: .max, right: .max, top: .max, bottom: .max)))?.message.contains("too large to count") == true)
        try pipeline.validate(outpaint(.init(left: side / 2)))
        #expect(refusal(outpaint(.init(left: 8), size: .max))?.field == .size)
        func inpaint(_ x: Int, _ y: Int, _ w: Int, _ h: Int, size: Int? = nil) -> PipelineRequest {
            .inpaint(InpaintRequest(image: picture, mask: .rectangle(x: x, y: y, width: w, height: h), prompt: "a star", size: size))
        }
        for (x, y, w, h) in [(Int.max, Int.max, Int.max, Int.max), (-1, 0, 8, 8), (0, side, 8, 8), (0, 0, 0, 8), (0, 0, 8, Int.min)] {
            #expect(refusal(inpaint(x, y, w, h))?.field == .rect)
        }
        try pipeline.validate(inpaint(side - 1, side - 1, Int.max, Int.max))  // clipped at the border
        #expect(refusal(inpaint(0, 0, 8192, 8192, size: 8192))?.field == .size)
    }

    @Test func largeCountsAreSplitIntoBatchesThatFit() throws {
        let request = generate(count: 5)
        #expect(try pipeline.batches(request) == [request])  // fits: one batch, the seeded output unchanged
        let single = pipeline.estimatedBytes(width: side, height: side, batch: 1, images: 1)
        let tight = RequestLimits(memoryBytes: pipeline.estimatedBytes(width: side, height: side, batch: 2, images: 2) + single / 100)
        let batches = try pipeline.batches(.generate(GenerateRequest(prompt: "a cat", settings: CommonSettings(seed: 40, count: 5))), limits: tight)
        let settings = batches.map { request -> CommonSettings in
            guard case .generate(let r) = request else { return CommonSettings() }
            return r.settings
        }
        #expect(settings.map(\.count) == [2, 2, 1] && settings.map(\.seed) == [40, 41, 42])
        for batch in batches { try pipeline.validate(batch, limits: tight) }
        #expect(throws: PipelineError.self) { try pipeline.batches(request, limits: RequestLimits(memoryBytes: single / 2)) }
    }

    @Test func threadsAreClampedToTheCores() throws {
        #expect(try RequestLimits.usableThreads(nil, cores: 4) == (4, nil))
        #expect(try RequestLimits.usableThreads(3, cores: 4) == (3, nil))
        let clamped = try RequestLimits.usableThreads(100_000, cores: 4)
        #expect(clamped.threads == 4 && clamped.note?.contains("100000") == true)
        #expect(throws: PipelineError.self) { try RequestLimits.usableThreads(0, cores: 4) }
        #expect(throws: PipelineError.self) { try RequestLimits.usableThreads(Int.min, cores: 4) }
    }

    /// Tokenizing is no longer quadratic in a word's length, and a prompt longer than the context is cut with
    /// a warning.
    @Test func longPromptsAreTokenizedQuicklyAndCutWithAWarning() async throws {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var state: UInt64 = 25  // a fixed linear congruential sequence: the same word every run
        let word = String((0..<130_000).map { _ -> Character in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return letters[Int(state >> 33) % letters.count]
        })
        let context = pipeline.models.textEncoder.config.text.contextLength
        let start = Date()
        let (tokens, cuts) = pipeline.models.tokenizer.contextTokensReportingCuts([word, "a cat"], contextLength: context)
        #expect(Date().timeIntervalSince(start) < TimeGuard.seconds(10), "the quadratic merge loop took minutes on this word")
        #expect(cuts == [true, false] && tokens.shape == [2, context])
        // The cut keeps what the whole encoding would have put in the context.
        let full = pipeline.models.tokenizer.encode(word)
        #expect(Array(tokens.integers().prefix(context - 1).dropFirst()) == Array(full.prefix(context - 2)).map(Int.init))
        let result = try await pipeline.generate(GenerateRequest(prompt: word, settings: CommonSettings(sampling: .init(steps: 1))))
        #expect(result.warnings == ["The prompt is longer than the \(context - 2) tokens CLIP reads, so its end was cut and has no effect."])
        #expect(try await pipeline.generate(GenerateRequest(prompt: "a cat", settings: CommonSettings(sampling: .init(steps: 1)))).warnings.isEmpty)
    }

    /// The heap-ordered merges give exactly upstream's result: a reference of `SimpleTokenizer.bpe` (rescan the
    /// word for the best pair, merge its occurrences left to right, repeat) on random merge tables and words,
    /// where occurrences overlap ("aaa"), new pairs outrank the round's own and one string comes from two merges.
    @Test func heapMergesMatchUpstreamsRescanningLoop() throws {
        var state: UInt64 = 7
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % bound
        }
        for _ in 0..<20 {
            var inner = ["a", "b", "c"], final = ["a</w>", "b</w>", "c</w>"], merges: [(String, String)] = [], seen = Set<String>()
            for _ in 0..<80 {
                let left = inner[next(inner.count)], rights = inner + final, right = rights[next(rights.count)]
                guard seen.insert(left + " " + right).inserted else { continue }
                merges.append((left, right))
                if right.hasSuffix("</w>") { final.append(left + right) } else { inner.append(left + right) }
            }
            // Learned tables rank a merge before any that uses its result; shuffled, a pair a merge creates can
            // outrank the round's own, which is where the order of the rounds matters.
            for i in stride(from: merges.count - 1, to: 0, by: -1) { merges.swapAt(i, next(i + 1)) }
            var vocabulary: [String: Int32] = [:]
            let symbols = CLIPTokenizer.byteSymbols.map { String($0.symbol) }
            for s in symbols + symbols.map({ $0 + "</w>" }) + merges.map({ $0.0 + $0.1 }) + ["<start_of_text>", "<end_of_text>"]
            where vocabulary[s] == nil {
                vocabulary[s] = Int32(vocabulary.count)
            }
            let tokenizer = try CLIPTokenizer(vocabulary: vocabulary, merges: merges, specialTokens: ("<start_of_text>", "<end_of_text>"))
            let ranks = Dictionary(merges.enumerated().map { ($0.element.0 + " " + $0.element.1, $0.offset) }, uniquingKeysWith: { a, _ in a })
            for _ in 0..<50 {
                let text = String((0..<1 + next(40)).map { _ in Array("abc")[next(3)] })
                var word = text.dropLast().map(String.init) + [String(text.last!) + "</w>"]
                while word.count > 1 {
                    let pairs = zip(word, word.dropFirst()).map { $0 + " " + $1 }
                    guard let best = pairs.compactMap({ p in ranks[p].map { (p, $0) } }).min(by: { $0.1 < $1.1 })?.0 else { break }
                    let parts = best.split(separator: " ").map(String.init)
                    var merged: [String] = [], i = 0
                    while i < word.count {
                        if i + 1 < word.count && word[i] == parts[0] && word[i + 1] == parts[1] {
                            merged.append(parts[0] + parts[1]); i += 2
                        } else {
                            merged.append(word[i]); i += 1
                        }
                    }
                    word = merged
                }
                #expect(tokenizer.encode(text) == word.map { vocabulary[$0]! }, "\(text) with merges \(merges)")
            }
        }
    }

    @Test func theCommandLineRefusesWithOneSentenceAndWritesNothing() throws {
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let work = try PaellaCLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for arguments in [["generate", "a cat", "--size", "\(Int.max)"], ["generate", "a cat", "--size", "8192", "-n", "64"],
                          ["generate", "a cat", "-n", "100000"]] {
            let start = Date()
            let run = try PaellaCLI.run(arguments + ["--model", model, "-o", "out.png"], in: work)
            #expect(run.status == 1, "\(arguments): \(run.stderr)")
            #expect(run.stderr.hasPrefix("error: ") && run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
            #expect(Date().timeIntervalSince(start) < TimeGuard.seconds(10))
            #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
        }
        let threads = try PaellaCLI.run(["generate", "a cat", "--threads", "100000", "--steps", "1", "--model", model, "-o", "t.png", "--quiet"], in: work)
        #expect(threads.status == 0 && threads.stderr.contains("100000 threads asked for"), "\(threads.stderr)")
    }

    /// The exit statuses the README documents: 1 for a request or a file that cannot be used, 64 (sysexits'
    /// EX_USAGE, the argument parser's) for a command line that does not parse.
    @Test func usageErrorsExitWith64AndRefusalsWith1() throws {
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let work = try PaellaCLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for arguments in [["generate", "a cat", "--steps", "many"], ["generate", "a cat", "--no-such-option"], ["no-such-command"]] {
            let run = try PaellaCLI.run(arguments, in: work)
            #expect(run.status == 64, "\(arguments): \(run.stderr)")
        }
        let refused = try PaellaCLI.run(["generate", "a cat", "--size", "7", "--model", model, "-o", "out.png"], in: work)
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).isEmpty)
    }
}
