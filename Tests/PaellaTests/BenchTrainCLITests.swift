import Foundation
import PaellaTestSupport
import Testing

/// `paella bench train` on the bundled model's denoiser config (how fast the bundled recipe's denoiser stage can
/// run), tiny so that it takes a second: both rows as JSON with the config's parameter count, and a config file
/// that is not there refused in one sentence.
@Suite struct BenchTrainCLITests {
    @Test func timesTheDenoiserOfAConfigFile() throws {
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/paella-small/denoiser.json").path
        let run = try PaellaCLI.run(["bench", "train", "--config", config, "--batch", "2", "--size", "8", "--repeats", "1",
                                     "--warmup", "0", "--threads", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try run.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.compactMap { $0["name"] as? String } == ["train step denoiser c256 8x8", "train forward denoiser c256 8x8"])
        #expect(rows.allSatisfy { ($0["median_ms"] as? Double ?? 0) > 0 && $0["parameters"] as? String == "4390868" })
        let missing = try PaellaCLI.run(["bench", "train", "--config", "/nonexistent/denoiser.json", "--repeats", "1"])
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/denoiser.json"), "\(missing.stderr)")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
    }
}
