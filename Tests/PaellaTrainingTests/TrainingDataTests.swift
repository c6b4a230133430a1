import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTraining
import Testing

@Suite struct TrainingDataTests {
    static func folder(images: Int) throws -> String {
        let path = NSTemporaryDirectory() + "paella-data-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path + "/sub", withIntermediateDirectories: true)
        for i in 0..<images {
            let file = i % 2 == 0 ? "\(path)/x\(i)" : "\(path)/sub/y\(i)"
            try PixelImage(width: 10 + i, height: 8, layout: .gray, repeating: UInt8(i)).write(to: file + ".png")
            if i > 0 { try " caption \(i)\n".write(toFile: file + ".txt", atomically: true, encoding: .utf8) }
        }
        try "not an image".write(toFile: path + "/notes.md", atomically: true, encoding: .utf8)
        return path
    }

    @Test func readsImagesWithCaptionsInAReproducibleShuffledOrder() throws {
        let path = try Self.folder(images: 5)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = try ImageCaptionFolder(path: path)
        #expect(data.count == 5)
        let captions = try (0..<5).map { try data.caption($0) }
        #expect(captions.filter(\.isEmpty).count == 1 && captions.contains("caption 3"))
        #expect(try data.image(0).layout == .rgb)
        // Each epoch visits every sample once; the same step always gives the same batch.
        let epoch = (0..<5).flatMap { data.batchIndices(step: $0, size: 1, seed: 9) }
        #expect(epoch.sorted() == [0, 1, 2, 3, 4])
        #expect(data.batchIndices(step: 7, size: 3, seed: 9) == data.batchIndices(step: 7, size: 3, seed: 9))
        #expect((0..<10).map { data.batchIndices(step: $0, size: 2, seed: 1) } != (0..<10).map { data.batchIndices(step: $0, size: 2, seed: 2) })
        #expect(throws: TrainingDataError.self) { _ = try ImageCaptionFolder(path: path + "/nowhere") }
    }

    /// A data folder named through a symbolic link holds the same samples.
    @Test func readsAFolderGivenAsASymbolicLink() throws {
        let path = try Self.folder(images: 3)
        let link = path + "-link"
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: link) }
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        let data = try ImageCaptionFolder(path: link)
        #expect(data.count == 3 && data.images.allSatisfy { $0.hasPrefix(link + "/") })
        #expect(try Set((0..<3).map(data.caption)) == ["", "caption 1", "caption 2"])
        #expect(try (0..<3).map { try data.image($0).width }.sorted() == [10, 11, 12])
    }

    /// A caption that is a FIFO is refused at once instead of blocking, one over 1 MiB by its size, and an image
    /// far larger than any trainer's crop is decoded reduced (its shorter side kept at 1024 or more).
    @Test func hostileSamplesAreBoundedInFolders() throws {
        let path = try Self.folder(images: 3)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = try ImageCaptionFolder(path: path)
        let captions = data.images.map { ($0 as NSString).deletingPathExtension + ".txt" }
        try? FileManager.default.removeItem(atPath: captions[1])
        #expect(mkfifo(captions[1], 0o644) == 0)
        #expect(throws: TrainingDataError.unreadable(path: captions[1], reason: "it is a named pipe (FIFO), not a regular file")) {
            _ = try data.caption(1)
        }
        let long = Data(repeating: UInt8(ascii: "a"), count: TrainingSampleLimits.captionBytes + 1)
        try long.write(to: URL(fileURLWithPath: captions[2]))
        #expect(throws: TrainingDataError.captionTooLong(path: captions[2], bytes: long.count)) { _ = try data.caption(2) }
        #expect(TrainingDataError.captionTooLong(path: "c.txt", bytes: 5_000_000).description.hasSuffix("shorten it."))

        try PixelImage(width: 2304, height: 4100, layout: .rgb, repeating: 90).write(to: data.images[0])
        let reduced = try data.image(0)
        #expect(reduced.width == 1152 && reduced.height == 2050 && reduced.pixels.allSatisfy { $0 == 90 })
    }

    @Test func trainingCropResizesTheShorterSideThenCrops() {
        var random = SplitMix64(seed: 3)
        let image = PixelImage(width: 30, height: 20, layout: .rgb, repeating: 7)
        let crop = image.trainingCrop(size: 16, random: &random)
        #expect(crop.width == 16 && crop.height == 16 && crop.pixels.allSatisfy { $0 == 7 })
    }

    @Test func newDenoiserWeightsFollowUpstreamInitialisation() throws {
        let config = DenoiserConfig(numLabels: 10, cHidden: 32, cClip: 8, cR: 4, downLevels: [1, 2], upLevels: [2, 1])
        let p = try TrainableParameters.newDenoiser(config, seed: 1)
        #expect(p.names == (try Denoiser.parameterShapes(config)).map(\.name))
        #expect(p["down_blocks.0.0.gamma"]?.floats.allSatisfy { $0 == 1e-6 } == true)
        #expect(p["down_blocks.0.0.ln.ln.weight"]?.floats.allSatisfy { $0 == 1 } == true)
        // channelwise.0 of a 16-channel block: fan-in 16, bound 1/4; channelwise.2 (fan-in 64): 1/8 * sqrt(1/3).
        #expect(maxAbsOf(p["down_blocks.0.0.channelwise.0.weight"]) <= 0.25 && maxAbsOf(p["down_blocks.0.0.channelwise.0.weight"]) > 0.2)
        #expect(maxAbsOf(p["down_blocks.0.0.channelwise.2.weight"]) <= Float(0.125 * (1.0 / 3).squareRoot()) + 1e-7)
        // The transposed convolution [32, 16, 4, 4]: PyTorch's fan-in is 16 * 16.
        #expect(maxAbsOf(p["up_blocks.0.2.weight"]) <= 1.0 / 16 && maxAbsOf(p["up_blocks.0.2.weight"]) > 0.05)
        _ = try Denoiser(config: config, weights: p.loader(), compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()))
    }

    func maxAbsOf(_ t: Tensor?) -> Float { (t?.floats ?? [.infinity]).reduce(0) { max($0, abs($1)) } }
}

@Suite struct CaptionEmbeddingCacheTests {
    @Test func encodesEachCaptionOnceAndRoundTrips() throws {
        let cache = try CaptionEmbeddingCache()
        var calls: [String] = []
        func encode(_ caption: String) -> Tensor {
            calls.append(caption)
            return Tensor([Float(caption.count), 1, -1], shape: [1, 3])
        }
        let a = try cache.embeddings(for: ["a cat", "a dog", "a cat"], encode: encode)
        #expect(a.shape == [3, 3] && a.floats == [5, 1, -1, 5, 1, -1, 5, 1, -1])
        #expect(calls == ["a cat", "a dog"] && cache.count == 2)
        let path = NSTemporaryDirectory() + "paella-cache-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try cache.save(to: path)
        let loaded = try CaptionEmbeddingCache(path: path)
        calls = []
        #expect(try loaded.embeddings(for: ["a dog", "a bird"], encode: encode).floats == [5, 1, -1, 6, 1, -1])
        #expect(calls == ["a bird"])
    }
}

@Suite struct ImageTokenCacheTests {
    /// Images 0..<10, 4x4 except image 5 (6x4); image i's grey level is 10 i.
    static func load(_ i: Int) -> PixelImage {
        PixelImage(width: i == 5 ? 6 : 4, height: 4, layout: .rgb, repeating: UInt8(10 * i))
    }

    /// Whole images are encoded once, in their fixed chunk, whatever batch first asks for them; an image of another
    /// size is cropped and encoded with every batch that holds it; the tokens come back in batch order.
    @Test func encodesFixedChunksOnceAndCropsTheRest() throws {
        let cache = ImageTokenCache(imageCount: 10, size: 4, chunkSize: 4)
        var encoded: [[UInt8]] = [], cropped: [UInt8] = []
        // A stand-in encoder: [n, 1, 2] tokens from each image's grey level (which names the image), 65535 beside it.
        func encode(_ images: [PixelImage]) -> Tensor {
            encoded.append(images.map { $0.pixels[0] })
            return Tensor(int32: images.flatMap { [Int32($0.pixels[0]), 65_535] }, shape: [images.count, 1, 2])
        }
        var croppedPositions: [Int] = []
        func crop(_ position: Int, _ image: PixelImage) -> PixelImage {
            cropped.append(image.pixels[0])
            croppedPositions.append(position)
            return image.cropped(x: 1, y: 0, width: 4, height: 4)
        }
        let first = try cache.tokens(for: [6, 1, 5], load: Self.load, crop: crop, encode: encode)
        #expect(first.shape == [3, 1, 2] && first.dtype == .int32)
        #expect(first.integers() == [60, 65_535, 10, 65_535, 50, 65_535])
        // Chunk 4..<8 (without the 6x4 image 5), chunk 0..<4, then image 5 cropped on its own.
        #expect(encoded == [[40, 60, 70], [0, 10, 20, 30], [50]] && cropped == [50] && cache.count == 7)
        let second = try cache.tokens(for: [3, 5, 9, 4], load: Self.load, crop: crop, encode: encode)
        #expect(second.integers() == [30, 65_535, 50, 65_535, 90, 65_535, 40, 65_535])
        #expect(encoded == [[40, 60, 70], [0, 10, 20, 30], [50], [80, 90], [50]] && cropped == [50, 50] && cache.count == 9)
        #expect(croppedPositions == [2, 1])  // image 5's place in each batch
        // A first batch of cropped images only (chunks of one): the token grid's shape comes from their encoding.
        let croppedOnly = try ImageTokenCache(imageCount: 10, size: 4, chunkSize: 1).tokens(for: [5], load: Self.load, crop: crop, encode: encode)
        #expect(croppedOnly.shape == [1, 1, 2] && croppedOnly.integers() == [50, 65_535])
        #expect(ImageTokenCache.holds(codebookSize: 8192) && ImageTokenCache.holds(codebookSize: 65_536))
        #expect(!ImageTokenCache.holds(codebookSize: 65_537))
    }
}
