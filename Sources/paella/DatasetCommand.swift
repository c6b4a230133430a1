import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaShapes
import PaellaIO

/// `paella dataset`: makes training data.
struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Make training datasets.",
        subcommands: [DatasetShapesCommand.self, DatasetAnalyseCommand.self])
}

/// `paella dataset shapes`: the captioned shapes dataset the bundled small model is trained on.
struct DatasetShapesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shapes",
        abstract: "Write captioned images of coloured shapes, deterministic from a seed.",
        discussion: """
            Each image shows one or two objects (circle, square, triangle, star, diamond, cross; 8 colours; a \
            3x3 grid of positions; small or large) on a white, black, gray or beige background, with a caption \
            drawn from varied templates and synonyms. The train split never contains the held-out combinations \
            (every purple triangle, green at the bottom right, orange in the centre, blue at the top left, stars \
            on the left); the heldout split always starts with one. Writes NNNNNN.png + NNNNNN.txt pairs, or \
            with --format tar WebDataset shards SPLIT-NNNNNN.tar, and metadata.jsonl with every scene.
            """)

    @Option(help: "Folder to write to (created when missing).")
    var output: String

    @Option(help: "Number of samples.")
    var count: Int

    @Option(help: "Seed: the same seed, split and size give the same dataset.")
    var seed: UInt64 = 0

    @Option(help: "Image side in pixels.")
    var size: Int = 64

    @Option(help: "Which split: train or heldout.")
    var split: String = "train"

    @Option(help: "Layout: files (PNG and caption per sample) or tar (WebDataset shards).")
    var format: String = "files"

    @Option(help: "Samples per tar shard.")
    var shardSize: Int = 1000

    @Option(help: ArgumentHelp(
        "How far objects stray from their nominal place and size, from 0 to 1.",
        discussion: "1 (the default) moves each object up to 5% of a cell and scales it by 0.94-1.06; 0 draws every "
            + "object exactly at its cell's centre and its size's nominal side. The scenes and captions are the same."))
    var placementVariation: Float = 1

    @Option(help: "Worker threads (default: the cores this process may use).")
    var threads: Int?

    @Flag(help: "No progress display.")
    var quiet = false

    @Flag(help: "Afterwards, read every image back with the shape analyser and print its accuracy per attribute.")
    var verify = false

    func validate() throws {
        guard count >= 0 else { throw ValidationError("--count must be at least 0, got \(count).") }
        guard size >= 12 && size <= 4096 else { throw ValidationError("--size must be between 12 and 4096, got \(size).") }
        guard ShapeSplit(rawValue: split) != nil else { throw ValidationError("--split must be train or heldout, got '\(split)'.") }
        guard ShapeDatasetWriter.Format(rawValue: format) != nil else {
            throw ValidationError("--format must be files or tar, got '\(format)'.")
        }
        guard shardSize >= 1 else { throw ValidationError("--shard-size must be at least 1, got \(shardSize).") }
        guard (0 ... 1).contains(placementVariation) else {
            throw ValidationError("--placement-variation must be between 0 and 1, got \(placementVariation).")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads).") }
    }

    func run() throws {
        let writer = ShapeDatasetWriter(output: output, count: count, seed: seed, side: size,
                                        split: ShapeSplit(rawValue: split) ?? .train,
                                        format: ShapeDatasetWriter.Format(rawValue: format) ?? .files,
                                        shardSize: shardSize, placementVariation: placementVariation)
        let pool = ThreadPool(threads: threads ?? ThreadPool.coreCount)
        let bar = ProgressBar(quiet: quiet)
        let summary = try reportingErrors {
            try writer.write(pool: pool) { done in bar.update("shapes", done: done, total: count) }
        }
        bar.finish()
        let rate = Double(summary.samples) / max(summary.seconds, 1e-9)
        let megabytes = Double(summary.bytes) / 1_048_576
        print("Wrote \(summary.samples) samples (\(String(format: "%.1f", megabytes)) MB) to \(output) in "
              + "\(String(format: "%.2f", summary.seconds)) s: \(Int(rate.rounded())) images/s on \(pool.threadCount) "
              + (pool.threadCount == 1 ? "thread." : "threads."))
        if verify { try verifyDataset(shards: summary.files.filter { $0.hasSuffix(".tar") }, pool: pool) }
    }

    /// Reads the written PNGs back (from the files or the shards), analyses each and scores it against its scene.
    func verifyDataset(shards: [String], pool: ThreadPool) throws {
        let start = Date()
        let records = try reportingErrors { try ShapeDatasetWriter.readMetadata(output + "/metadata.jsonl") }
        var images: [String: [UInt8]] = [:]
        for shard in shards {
            for (name, bytes) in try reportingErrors({ try TarArchive.read(contentsOf: shard) })
            where name.hasSuffix(".png") { images[String(name.dropLast(4))] = bytes }
        }
        var scores = [ShapeScore?](repeating: nil, count: records.count)
        let analyser = ShapeAnalyser()
        let folder = output
        let loaded = images
        scores.withUnsafeMutableBufferPointer { slots in
            pool.parallelFor(records.count) { i in
                let record = records[i]
                let image: PixelImage?
                if let bytes = loaded[record.key] {
                    image = try? PixelImage.decode(bytes).image
                } else {
                    image = try? PixelImage(contentsOf: "\(folder)/\(record.key).png")
                }
                guard let image else { return }
                slots[i] = ShapeScore(analyser.analyse(image), against: record.scene)
            }
        }
        var tally = ShapeScoreTally()
        var unreadable = 0
        for score in scores {
            if let score { tally.add(score) } else { unreadable += 1 }
        }
        print("Analyser on \(tally.images) images (background estimated), \(String(format: "%.2f", Date().timeIntervalSince(start))) s:")
        print(tally.summary)
        if unreadable > 0 { print("\(unreadable) images could not be read.") }
    }
}

/// `paella dataset analyse`: what the shape analyser sees in images, scored against a prompt when given one.
struct DatasetAnalyseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyse",
        abstract: "Find the shapes in images and, with --prompt, score them against what the prompt asks for.",
        discussion: """
            Prints each object found (colour, shape, position, size) and the background. With --prompt (words of \
            the shapes dataset, e.g. "a large red circle at the top left on a white background"), also prints \
            which attributes match, as `paella eval shapes` counts them.
            """)

    @Argument(help: "PNG or JPEG images.")
    var images: [String]

    @Option(help: "The prompt the images were made from.")
    var prompt: String?

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("Give at least one image.") }
        if let prompt, ShapeCaptions.parse(prompt) == nil {
            throw ValidationError("The prompt must name a colour and a shape for each object, "
                                  + "e.g. \"a large red circle at the top left\".")
        }
    }

    func run() throws {
        let analyser = ShapeAnalyser()
        let parsed = prompt.flatMap(ShapeCaptions.parse)
        var tally = ShapeScoreTally()
        for path in images {
            // The analyser measures shapes relative to the image (the dataset's are 64 to 256 pixels), so a large
            // file is decoded reduced, and its memory grows with the pixels it gets: at most 2^24.
            let limits = ImageLimits(maxSide: ImageLimits.default.maxSide, maxPixels: ImageLimits.default.maxPixels,
                                     reduceKeepingSide: 512, maxDecodedPixels: 1 << 24)
            let image = try reportingErrors { try PixelImage(contentsOf: path, limits: limits) }
            let analysis = analyser.analyse(image)
            let found = analysis.objects.map { "\($0.size.rawValue) \($0.color.rawValue) \($0.shape.rawValue) at \($0.position.rawValue)" }
            let background = analysis.backgroundName?.rawValue ?? "unknown (\(analysis.background.r), \(analysis.background.g), \(analysis.background.b))"
            print("\(path): \(found.isEmpty ? "no objects" : found.joined(separator: "; ")); background \(background)")
            if let parsed {
                tally.add(ShapeScore(analysis, against: parsed.scene(), ignoring: parsed.unspecified))
            }
        }
        if let parsed {
            print(tally.summary)
            if !parsed.unspecified.isEmpty {
                print("Not scored (the prompt does not say): " + parsed.unspecified.map(\.rawValue).sorted().joined(separator: ", "))
            }
        }
    }
}
