import Foundation
import Testing
import Paella
import PaellaTestSupport

/// `paella bench generate` on the tiny model folder: the four rows per thread count, as a table and as JSON, and
/// bad options refused with one sentence before anything is timed.
@Suite("Bench generate CLI", .serialized)
struct BenchGenerateCLITests {
    static let rowNames = ["generate: CLIP text", "generate: sampler", "generate: VQGAN decode", "generate: whole"]
    let model: String

    init() throws { model = try Fixtures.tinyModelFolder(withVision: false) }

    func bench(_ arguments: [String]) throws -> PaellaCLI.Output {
        try PaellaCLI.run(["bench", "generate", "--model", model, "--repeats", "1", "--warmup", "0"] + arguments)
    }

    @Test func jsonRowsPerThreadCountWithPositiveTimes() throws {
        let result = try bench(["--threads", "1", "--threads", "2", "--steps", "3", "-n", "2", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try result.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
        #expect(rows.map { $0["name"] as? String } == Self.rowNames + Self.rowNames)
        #expect(rows.map { $0["threads"] as? Int } == [1, 1, 1, 1, 2, 2, 2, 2])
        for row in rows {
            #expect(((row["median_ms"] as? Double) ?? 0) > 0, "\(row)")
            #expect(row["steps"] as? String == "3" && row["count"] as? String == "2", "\(row)")
        }
        // The sampler's time per step is its time over the steps; peak memory belongs to the whole generation.
        for sampler in rows where sampler["name"] as? String == Self.rowNames[1] {
            let perStep = try #require(Double(sampler["per_step_ms"] as? String ?? ""))
            #expect(abs(perStep - (sampler["median_ms"] as? Double ?? 0) / 3) < 0.1, "\(sampler)")
        }
        for whole in rows where whole["name"] as? String == Self.rowNames[3] {
            #expect((Double(whole["peak_rss_mb"] as? String ?? "") ?? 0) > 0, "\(whole)")
        }
    }

    @Test func tableNamesEveryPart() throws {
        let result = try bench(["--threads", "1", "--steps", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        for name in Self.rowNames { #expect(result.stdout.contains(name), "\(result.stdout)") }
        #expect(result.stdout.contains("per_step_ms") && result.stdout.contains("peak_rss_mb"))
    }

    @Test func badOptionsAreOneSentence() throws {
        let side = try ModelFolder(path: model).manifest.defaults.imageSize
        let cases: [(arguments: [String], says: String)] = [
            (["--size", "\(side + 1)"], "does not fit this model"),
            (["--steps", "0"], "--steps must be at least 1."),
            (["--count", "0"], "--count must be at least 1."),
            (["--size", "big"], "--size takes pixels"),
        ]
        for (arguments, says) in cases {
            let result = try bench(arguments + ["--json"])
            #expect(result.status != 0 && result.status < 128, "\(arguments): status \(result.status)")
            #expect(result.stderr.contains(says), "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(arguments) printed \(result.stdout)")
        }
        let missing = try PaellaCLI.run(["bench", "generate", "--model", "/nonexistent/paella-folder", "--json"])
        #expect(missing.status == 1 && missing.stdout.isEmpty, "status \(missing.status)")
        #expect(missing.stderr.contains("The model folder /nonexistent/paella-folder does not exist"), "\(missing.stderr)")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
    }
}
