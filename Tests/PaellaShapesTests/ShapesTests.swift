import Foundation
import Testing
import Paella
import PaellaCore
import PaellaIO
import PaellaShapes

@Suite struct ShapesTests {
    // MARK: Sampling and captions

    @Test func samplesAreDeterministicFromTheSeed() {
        let a = ShapeSampler(seed: 42), b = ShapeSampler(seed: 42), c = ShapeSampler(seed: 43)
        let renderer = ShapeRenderer()
        for index in [0, 1, 7, 1000, 123_456] {
            let (sa, ca) = a.sample(index: index)
            let (sb, cb) = b.sample(index: index)
            #expect(sa == sb && ca == cb)
            #expect(renderer.render(sa) == renderer.render(sb))
        }
        // Another seed, or the other split, gives other scenes.
        let differentSeed = (0 ..< 50).filter { a.scene(index: $0) != c.scene(index: $0) }.count
        #expect(differentSeed >= 45)
        let heldout = ShapeSampler(seed: 42, split: .heldout)
        #expect((0 ..< 50).filter { a.scene(index: $0) != heldout.scene(index: $0) }.count >= 45)
    }

    @Test func placementVariationScalesOffsetsAndSizesOnly() {
        let usual = ShapeSampler(seed: 42), same = ShapeSampler(seed: 42, placementVariation: 1)
        let fixed = ShapeSampler(seed: 42, placementVariation: 0), half = ShapeSampler(seed: 42, placementVariation: 0.5)
        var moved = 0
        for index in 0 ..< 200 {
            let (scene, caption) = usual.sample(index: index)
            #expect(same.sample(index: index).scene == scene)
            let (fixedScene, fixedCaption) = fixed.sample(index: index)
            let halfScene = half.scene(index: index)
            // The same scene and caption, with every object at its nominal place and size (or half way there).
            #expect(fixedCaption == caption && fixedScene.background == scene.background && fixedScene.isValid)
            #expect(fixedScene.objects.count == scene.objects.count)
            for (o, (f, h)) in zip(scene.objects, zip(fixedScene.objects, halfScene.objects)) {
                #expect(f.shape == o.shape && f.color == o.color && f.position == o.position && f.size == o.size)
                #expect(f.offsetX == 0 && f.offsetY == 0 && f.scale == 1)
                #expect(abs(h.offsetX - o.offsetX / 2) < 1e-6 && abs(h.scale - (1 + (o.scale - 1) / 2)) < 1e-6)
                if o.offsetX != 0 || o.scale != 1 { moved += 1 }
            }
        }
        #expect(moved > 200)
    }

    @Test func scenesFollowTheRulesAndCoverEveryAttribute() {
        let sampler = ShapeSampler(seed: 1)
        var shapes = Set<ShapeKind>(), colors = Set<ShapeColor>(), positions = Set<GridPosition>()
        var sizes = Set<ShapeSize>(), backgrounds = Set<ShapeBackground>(), counts = [0, 0, 0]
        for index in 0 ..< 2000 {
            let scene = sampler.scene(index: index)
            #expect(scene.isValid)
            counts[scene.objects.count] += 1
            backgrounds.insert(scene.background)
            for o in scene.objects {
                shapes.insert(o.shape); colors.insert(o.color); positions.insert(o.position); sizes.insert(o.size)
            }
        }
        #expect(shapes.count == ShapeKind.allCases.count && colors.count == 8 && positions.count == 9)
        #expect(sizes.count == 2 && backgrounds.count == ShapeBackground.allCases.count)
        #expect(counts[1] > 1000 && counts[2] > 600)  // 40% two-object scenes
    }

    @Test func heldOutCombinationsNeverAppearInTraining() {
        let train = ShapeSampler(seed: 9)
        for index in 0 ..< 20_000 {
            let scene = train.scene(index: index)
            #expect(!HeldOutCombination.isHeldOut(scene))
            #expect(!scene.objects.contains { $0.shape == .triangle && $0.color == .purple })
        }
        let heldout = ShapeSampler(seed: 9, split: .heldout)
        var seen = Set<HeldOutCombination>()
        for index in 0 ..< 500 {
            let scene = heldout.scene(index: index)
            #expect(scene.isValid)
            let first = scene.objects[0]
            #expect(HeldOutCombination.isHeldOut(first))
            for combination in HeldOutCombination.all where combination.matches(first) { seen.insert(combination) }
        }
        #expect(seen.count == HeldOutCombination.all.count)
    }

    @Test func evaluationPromptsAreHeldOutSingleObjects() {
        let prompts = ShapeSampler.prompts(count: 100, seed: 4)
        #expect(prompts.count == 100)
        for (scene, prompt) in prompts {
            #expect(scene.objects.count == 1 && HeldOutCombination.isHeldOut(scene))
            #expect(prompt == ShapeCaptions.canonical(scene))
        }
        #expect(prompts.map(\.prompt) == ShapeSampler.prompts(count: 100, seed: 4).map(\.prompt))
    }

    /// A twin changes exactly the asked attribute of one object, stays a valid training scene, and its caption
    /// parses back to it while the original's parses back to the original.
    @Test func twinsDifferInOneAttribute() throws {
        let sampler = ShapeSampler(seed: 9)
        var random = SplitMix64(seed: 4)
        var made = 0
        for index in 0..<300 {
            let scene = sampler.scene(index: index)
            let change = ShapeTwins.attributes[index % 3]
            guard let twin = ShapeTwins.twin(of: scene, changing: change, random: &random) else { continue }
            made += 1
            #expect(twin.background == scene.background && twin.objects.count == scene.objects.count)
            let changed = zip(scene.objects, twin.objects).filter { $0 != $1 }
            try #require(changed.count == 1, "\(scene) -> \(twin)")
            let (a, b) = changed[0]
            let differs = [a.color != b.color, a.shape != b.shape, a.position != b.position, a.size != b.size]
            #expect(differs == [change == .color, change == .shape, change == .position, false])
            #expect(!HeldOutCombination.isHeldOut(twin))
            #expect(Set(twin.objects.map(\.color)).count == twin.objects.count && Set(twin.objects.map(\.position)).count == twin.objects.count)
            let (captionA, captionB) = ShapeTwins.captions(scene, twin, seed: UInt64(index))
            #expect(captionA != captionB)
            #expect(ShapeCaptions.parse(captionA)?.objects.map(\.color) == scene.objects.map(\.color))
            #expect(ShapeCaptions.parse(captionB)?.objects.map(\.color) == twin.objects.map(\.color))
        }
        #expect(made > 250)
    }

    /// Each label says one true thing: a scene sets one shape, colour, cell and size label per object, its
    /// background, the two-object flag when it has two, and for each object the shape and colour of its cell.
    @Test func labelsSayWhatTheSceneHolds() throws {
        #expect(ShapeLabels.names.count == ShapeLabels.count && Set(ShapeLabels.names).count == ShapeLabels.count)
        let circle = ShapeObject(shape: .circle, color: .red, position: .topLeft, size: .large)
        let star = ShapeObject(shape: .star, color: .blue, position: .bottomRight, size: .small)
        func on(_ scene: ShapeScene) -> Set<String> {
            Set(zip(ShapeLabels.names, ShapeLabels.labels(of: scene)).filter { $0.1 == 1 }.map(\.0))
        }
        let one = ShapeScene(background: .white, objects: [circle])
        #expect(on(one) == ["shape circle", "color red", "position top left", "size large", "background white",
                            "top left: circle", "top left: red"])
        let two = ShapeScene(background: .black, objects: [circle, star])
        #expect(on(two) == ["shape circle", "shape star", "color red", "color blue", "position top left",
                            "position bottom right", "size large", "size small", "background black", "two objects",
                            "top left: circle", "top left: red", "bottom right: star", "bottom right: blue"])
        #expect(ShapeLabels.labels(of: two).allSatisfy { $0 == 0 || $0 == 1 })
    }

    @Test func captionsParseBackToTheirScenes() throws {
        let sampler = ShapeSampler(seed: 6)
        for index in 0 ..< 1000 {
            let (scene, caption) = sampler.sample(index: index)
            let parsed = try #require(ShapeCaptions.parse(caption), "\(caption)")
            let expected = scene.objects.map { ShapeObject(shape: $0.shape, color: $0.color, position: $0.position, size: $0.size) }
            #expect(parsed.objects == expected, "\(caption)")
            #expect(parsed.background == nil || parsed.background == scene.background, "\(caption)")
            #expect(ShapeCaptions.parse(ShapeCaptions.canonical(scene)) == ParsedCaption(objects: expected, background: scene.background))
        }
        #expect(ShapeCaptions.parse("a large circle at the top") == nil)  // no colour
        let prompt = try #require(ShapeCaptions.parse("a red circle in the top-left corner"))
        #expect(prompt.objects == [ShapeObject(shape: .circle, color: .red, position: .topLeft, size: .large)])
        #expect(prompt.unspecified == [.size, .background])
    }

    @Test func canonicalCaptionsReadAsExpected() {
        let one = ShapeScene(background: .white, objects: [ShapeObject(shape: .circle, color: .red, position: .topLeft, size: .large)])
        #expect(ShapeCaptions.canonical(one) == "a large red circle at the top left on a white background")
        let two = ShapeScene(background: .gray, objects: [
            ShapeObject(shape: .triangle, color: .orange, position: .center, size: .small),
            ShapeObject(shape: .star, color: .blue, position: .bottomRight, size: .large),
        ])
        #expect(ShapeCaptions.canonical(two)
                == "a small orange triangle in the centre and a large blue star at the bottom right on a gray background")
    }

    @Test func captionsMentionEveryAttribute() {
        let sampler = ShapeSampler(seed: 5)
        var distinct = Set<String>(), withBackground = 0
        for index in 0 ..< 1000 {
            let (scene, caption) = sampler.sample(index: index)
            distinct.insert(caption)
            for o in scene.objects {
                #expect(o.color.synonyms.contains { caption.contains($0) }, "\(caption) lacks \(o.color)")
                #expect(o.shape.synonyms.contains { caption.contains($0) }, "\(caption) lacks \(o.shape)")
                #expect(o.size.synonyms.contains { caption.contains($0) }, "\(caption) lacks \(o.size)")
                #expect((o.position.phrases + o.position.labels).contains { caption.contains($0) },
                        "\(caption) lacks \(o.position)")
            }
            if scene.background.synonyms.contains(where: { caption.contains($0) }) { withBackground += 1 }
        }
        #expect(distinct.count > 950)  // templates and synonyms make nearly every caption different
        #expect(withBackground > 800 && withBackground < 950)  // about 7 in 8 name the background
    }

    // MARK: Rendering

    @Test func rendererPaintsObjectsInsideTheirCells() {
        let renderer = ShapeRenderer()
        let sampler = ShapeSampler(seed: 3)
        for index in 0 ..< 200 {
            let scene = sampler.scene(index: index)
            let image = renderer.render(scene)
            #expect(image.width == 64 && image.height == 64 && image.layout == .rgb)
            let bg = scene.background.rgb
            #expect(image[0, 0, 0] == bg.r && image[63, 63, 2] == bg.b)
            for o in scene.objects {
                let (cx, cy) = o.center(side: 64)
                let h = o.halfExtent(side: 64)
                // The box stays inside the cell, so objects in different cells never overlap.
                let cell: Float = 64.0 / 3
                #expect(cx - h >= Float(o.position.column) * cell && cx + h <= Float(o.position.column + 1) * cell)
                #expect(cy - h >= Float(o.position.row) * cell && cy + h <= Float(o.position.row + 1) * cell)
                // Every shape covers the centre of its box.
                let c = o.color.rgb
                let (x, y) = (Int(cx), Int(cy))
                #expect(image[x, y, 0] == c.r && image[x, y, 1] == c.g && image[x, y, 2] == c.b)
            }
        }
    }

    // MARK: Analyser

    /// Scores `n` scenes of `sampler` rendered by `renderer`, after `degrade` when given.
    func tally(_ sampler: ShapeSampler, _ n: Int, renderer: ShapeRenderer = ShapeRenderer(),
               knownBackground: Bool, degradation: ShapeDegradation? = nil) throws -> ShapeScoreTally {
        let analyser = ShapeAnalyser()
        var tally = ShapeScoreTally()
        for index in 0 ..< n {
            let scene = sampler.scene(index: index)
            var image = renderer.render(scene)
            if let degradation { image = try degradation.apply(to: image, seed: UInt64(index)) }
            let analysis = analyser.analyse(image, background: knownBackground ? scene.background.rgb : nil)
            let score = ShapeScore(analysis, against: scene)
            tally.add(score)
        }
        return tally
    }

    @Test func analyserReadsRenderedScenes() throws {
        let known = try tally(ShapeSampler(seed: 11), 250, knownBackground: true)
        let estimated = try tally(ShapeSampler(seed: 11, split: .heldout), 250, knownBackground: false)
        for t in [known, estimated] {
            for a in ShapeAttribute.allCases { #expect(t.accuracy(a) >= 0.99, "\(t.summary)") }
        }
    }

    @Test func analyserReadsRenderedScenesAtOtherSizes() throws {
        for side in [48, 96] {
            let t = try tally(ShapeSampler(seed: 21), 100, renderer: ShapeRenderer(side: side), knownBackground: false)
            #expect(t.overallAccuracy >= 0.99, "\(side) px\n\(t.summary)")
        }
    }

    @Test func analyserSurvivesBlurNoiseSpecklesAndJPEG() throws {
        let t = try tally(ShapeSampler(seed: 31), 300, knownBackground: false, degradation: ShapeDegradation())
        for a in ShapeAttribute.allCases { #expect(t.accuracy(a) >= 0.95, "\(t.summary)") }
    }

    @Test func scorerCountsMissingAndWrongObjects() {
        let scene = ShapeScene(background: .white, objects: [
            ShapeObject(shape: .circle, color: .red, position: .topLeft, size: .large),
            ShapeObject(shape: .square, color: .blue, position: .bottomRight, size: .small),
        ])
        // Only the second object, drawn as a triangle at the wrong place.
        var drawn = scene
        drawn.objects = [ShapeObject(shape: .triangle, color: .blue, position: .bottom, size: .small)]
        let analysis = ShapeAnalyser().analyse(ShapeRenderer().render(drawn))
        let score = ShapeScore(analysis, against: scene)
        #expect(score.objects[0].isEmpty)
        #expect(score.objects[1] == [.color, .size])
        #expect(!score.countCorrect && score.backgroundCorrect)
        var tally = ShapeScoreTally()
        tally.add(score)
        #expect(tally.accuracy(.color) == 0.5 && tally.accuracy(.shape) == 0 && tally.accuracy(.count) == 0)
        // Ignored attributes are neither matched on nor counted.
        let partial = ShapeScore(analysis, against: scene, ignoring: [.position, .count])
        #expect(partial.objects[1] == [.color, .size])
        var partialTally = ShapeScoreTally()
        partialTally.add(partial)
        #expect(partialTally.total[.position] == nil && partialTally.total[.count] == nil && partialTally.total[.color] == 2)
        #expect(!partialTally.summary.contains("position"))
    }

    @Test func analyserFindsNothingOnABlankImage() {
        let blank = ShapeRenderer().render(ShapeScene(background: .beige, objects: []))
        let analysis = ShapeAnalyser().analyse(blank)
        #expect(analysis.objects.isEmpty && analysis.backgroundName == .beige)
    }

    // MARK: Dataset files and tar shards

    func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "paella-shapes-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func datasetFilesMatchTheSampler() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = ShapeDatasetWriter(output: folder, count: 25, seed: 7, side: 48, split: .heldout)
        let summary = try writer.write(pool: ThreadPool(threads: 2))
        #expect(summary.samples == 25)
        let records = try ShapeDatasetWriter.readMetadata(folder + "/metadata.jsonl")
        #expect(records.count == 25)
        let sampler = ShapeSampler(seed: 7, split: .heldout)
        for (i, record) in records.enumerated() {
            let (scene, caption) = sampler.sample(index: i)
            #expect(record.key == String(format: "%06d", i) && record.index == i && record.split == .heldout)
            #expect(record.scene == scene && record.caption == caption)
            let image = try PixelImage(contentsOf: "\(folder)/\(record.key).png")
            #expect(image == ShapeRenderer(side: 48).render(scene))
            #expect(try String(contentsOfFile: "\(folder)/\(record.key).txt", encoding: .utf8) == caption)
        }
    }

    @Test func tarShardsAreReadableUstar() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = ShapeDatasetWriter(output: folder, count: 7, seed: 3, format: .tar, shardSize: 4)
        let summary = try writer.write(pool: ThreadPool(threads: 1))
        let shards = summary.files.filter { $0.hasSuffix(".tar") }
        #expect(shards.map { ($0 as NSString).lastPathComponent } == ["train-000000.tar", "train-000001.tar"])

        // The first header, field by field (POSIX ustar).
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: shards[0])))
        #expect(bytes.count % 512 == 0)
        let header = Array(bytes[0 ..< 512])
        func text(_ range: Range<Int>) -> String { String(decoding: header[range].prefix { $0 != 0 }, as: UTF8.self) }
        #expect(text(0 ..< 100) == "000000.png")
        #expect(text(257 ..< 263) == "ustar" && header[262] == 0 && text(263 ..< 265) == "00")
        #expect(header[156] == UInt8(ascii: "0"))
        let checksum = header.enumerated().reduce(0) { $0 + ((148 ..< 156).contains($1.offset) ? 32 : Int($1.element)) }
        #expect(Int(text(148 ..< 154), radix: 8) == checksum)
        #expect(bytes.suffix(1024).allSatisfy { $0 == 0 })

        // Read back: names, PNGs and captions in order.
        let sampler = ShapeSampler(seed: 3)
        var names: [String] = []
        for shard in shards {
            for (name, data) in try TarArchive.read(contentsOf: shard) {
                names.append(name)
                let index = Int(name.prefix(6)) ?? -1
                let (scene, caption) = sampler.sample(index: index)
                if name.hasSuffix(".png") {
                    #expect(try PixelImage.decode(data).image == ShapeRenderer().render(scene))
                } else {
                    #expect(String(decoding: data, as: UTF8.self) == caption)
                }
            }
        }
        #expect(names == (0 ..< 7).flatMap { [String(format: "%06d.png", $0), String(format: "%06d.txt", $0)] })
    }

    /// The system tar, found once; the test that lists a shard with it is skipped (and says so) without one.
    static let systemTar = ["/usr/bin/tar", "/bin/tar"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(.enabled(if: systemTar != nil, "no system tar at /usr/bin/tar or /bin/tar"))
    func systemTarListsTheShards() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = ShapeDatasetWriter(output: folder, count: 7, seed: 3, format: .tar, shardSize: 4)
        let shards = try writer.write(pool: ThreadPool(threads: 1)).files.filter { $0.hasSuffix(".tar") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.systemTar))
        process.arguments = ["-tf", shards[1]]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(listing.split(separator: "\n") == ["000004.png", "000004.txt", "000005.png", "000005.txt",
                                                   "000006.png", "000006.txt"])
    }

    @Test func tarNamesAndDamage() throws {
        // Long names split at a '/' into prefix and name; names that cannot be split are refused.
        let long = String(repeating: "d", count: 120) + "/" + String(repeating: "f", count: 90)
        let header = try TarArchive.header(name: long, size: 3)
        let listed = try ([UInt8](header) + [1, 2, 3] + [UInt8](repeating: 0, count: 509 + 1024)).withUnsafeBytes {
            try TarArchive.entries(in: $0)
        }
        #expect(listed == [TarEntry(name: long, data: 512 ..< 515)])
        #expect(throws: TarError.nameTooLong(String(repeating: "x", count: 101))) {
            _ = try TarArchive.header(name: String(repeating: "x", count: 101), size: 0)
        }
        // A flipped byte breaks the checksum; a cut archive is reported as truncated.
        var damaged = header + [1, 2, 3]
        damaged[10] ^= 1
        #expect(throws: TarError.self) { _ = try damaged.withUnsafeBytes { try TarArchive.entries(in: $0) } }
        #expect(throws: TarError.truncated(source: "tar data", name: long)) {
            _ = try (header + [1]).withUnsafeBytes { try TarArchive.entries(in: $0) }
        }
    }
}
