import Foundation
import Testing
import Paella
import PaellaTestSupport
import PaellaIO

@Suite("Generation CLI", .serialized)
struct GenerationCLITests {
    let model: String
    let work: String

    init() throws {
        model = try Fixtures.tinyModelFolder(withVision: true)
        work = try PaellaCLI.temporaryDirectory()
    }

    func paella(_ arguments: [String]) throws -> PaellaCLI.Output {
        try PaellaCLI.run(arguments + (arguments.first == "--help" ? [] : ["--model", model, "--threads", "2"]), in: work)
    }

    func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: work).sorted() }

    @Test func generateWritesPNGsWithParametersAndIsDeterministic() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let first = try paella(["generate", "a red circle", "--seed", "11", "-o", "a.png", "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        #expect(report["files"] as? [String] == ["a.png"])
        let parameters = try #require(report["parameters"] as? [String: Any])
        #expect(parameters["prompt"] as? String == "a red circle" && parameters["seed"] as? Int == 11 && parameters["mode"] as? String == "generate")
        let text = try PixelImage.readPNGText(work + "/a.png")
        #expect(text["parameters"]?.contains("\"prompt\":\"a red circle\"") == true)
        #expect(try paella(["generate", "a red circle", "--seed", "11", "-o", "b.png", "--quiet"]).status == 0)
        #expect(FileManager.default.contents(atPath: work + "/a.png") == FileManager.default.contents(atPath: work + "/b.png"))
    }

    @Test func severalImagesAGridAndJPEG() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let result = try paella(["generate", "a cat", "-n", "2", "--grid", "--seed", "1", "-o", "cat.jpg", "--steps", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try files() == ["cat-1.jpg", "cat-2.jpg", "cat-grid.jpg"])
        let grid = try PixelImage(contentsOf: work + "/cat-grid.jpg")
        let single = try PixelImage(contentsOf: work + "/cat-1.jpg")
        #expect(grid.width >= 2 * single.width && grid.height >= single.height && grid.height < 2 * single.height)
    }

    @Test func everyModeRunsFromTheCommandLine() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        let picture = PixelImage(width: side, height: side, layout: .rgb, repeating: 128)
        try picture.write(to: work + "/in.png")
        let runs: [[String]] = [
            ["interpolate", "a dog", "a cat", "--frames", "2", "--method", "slerp", "-o", "i.png"],
            ["compose", "--blend", "rows", "a dog", "a cat", "-o", "c.png"],
            ["compose", "--columns", "0-\(side / 2)=a dog", "--columns", "\(side / 2)-\(side)=a wolf", "-o", "c2.png"],
            ["inpaint", "in.png", "a hat", "--rect", "0,0,\(side / 2),\(side / 2)", "-o", "p.png"],
            ["outpaint", "in.png", "a beach", "--extend", "right=\(side)", "-o", "o.png"],
            ["edit", "in.png", "a fox", "--strength", "0.5", "-o", "e.png"],
            ["vary", "in.png", "-o", "v.png"],
        ]
        for arguments in runs {
            let result = try paella(arguments + ["--seed", "3", "--quiet"])
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
        }
        #expect(try files() == ["c.png", "c2.png", "e.png", "i-1.png", "i-2.png", "in.png", "o.png", "p.png", "v.png"])
        #expect(try PixelImage(contentsOf: work + "/o.png").width == 2 * side)
    }

    /// `eval shapes --json` reports the parts asked for with their gates; a part it does not know is one sentence.
    @Test func evalShapesReportsGatedParts() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let result = try paella(["eval", "shapes", "--parts", "reconstruction,clip", "--scenes", "32", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect((report["gates"] as? [String: Bool]).map { Set($0.keys) } == ["reconstruction", "clip"])
        #expect(report["reconstructionScenes"] as? Int == 32 && (report["generation"] as? [String: Any])?.isEmpty == true)
        #expect((report["clipAttributes"] as? [String: Double]).map { Set($0.keys) } == ["color", "shape", "position"])
        #expect((report["clipTextSimilarity"] as? [String: Double]).map { Set($0.keys) } == ["color", "shape", "position"])
        #expect((report["clipTextProbe"] as? [String: Double]).map { Set($0.keys) } == ["color", "shape", "position", "size"])
        #expect(report["clipRewordedSimilarity"] is Double)
        let table = try paella(["eval", "shapes", "--parts", "reconstruction", "--scenes", "32"])
        #expect(table.stdout.contains("reconstruction of 32 held-out scenes") && table.stdout.contains("[gate: FAIL]"), "\(table.stdout)")
        let bad = try paella(["eval", "shapes", "--parts", "reconstruction,pictures"])
        #expect(bad.status != 0 && bad.stderr.contains("--parts takes generation, reconstruction and clip"), "\(bad.stderr)")
    }

    @Test func badInputIsOneSentenceAndWritesNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: work) }
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        try PixelImage(width: side, height: side, layout: .rgb, repeating: 50).write(to: work + "/in.png")
        try PixelImage(width: 7, height: 7, layout: .gray, repeating: 255).write(to: work + "/mask.png")
        let cases: [(arguments: [String], says: String)] = [
            (["generate", "x", "--size", "\(side + 1)", "-o", "out.png"], "does not fit this model"),
            (["inpaint", "in.png", "x", "--mask", "mask.png", "-o", "out.png"], "give a mask of the image's size"),
            (["inpaint", "missing.png", "x", "--rect", "0,0,8,8", "-o", "out.png"], "missing.png"),
            (["generate", "x", "--model", work + "/nowhere", "-o", "out.png"], "nowhere"),
            (["generate", "x", "--temperature", "a:b", "-o", "out.png"], "--temperature"),
            (["generate", "x", "-o", "out.gif"], "--output"),
        ]
        for (arguments, says) in cases {
            let result = arguments.contains("--model") ? try PaellaCLI.run(arguments, in: work) : try paella(arguments)
            #expect(result.status != 0, "\(arguments) succeeded")
            #expect(result.stderr.contains(says), "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"))
        }
        #expect(try files() == ["in.png", "mask.png"])
    }
}
