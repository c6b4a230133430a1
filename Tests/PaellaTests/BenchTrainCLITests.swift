import Foundation
import PaellaTestSupport
import Testing

/// `paella bench train` on the bundled model's denoiser config (how fast the bundled recipe's denoiser stage can
/// run), tiny so that it takes a second: both rows as JSON with the config's parameter count, and a config file
/// that is not there refused in one sentence. `paella bench train-vqgan` likewise on a tiny VQGAN config.
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
        #expect(rows.allSatisfy { ($0["median_ms"] as? Double ?? 0) > 0 && $0["parameters"] as? String == "4559580" })
        let missing = try PaellaCLI.run(["bench", "train", "--config", "/nonexistent/denoiser.json", "--repeats", "1"])
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/denoiser.json"), "\(missing.stderr)")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
    }

    @Test func timesTheVQGANOfAConfigFile() throws {
        let config = try PaellaCLI.temporaryDirectory() + "/vqgan.json"
        try Data(#"{"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 4, "embed_dim": 4, "n_embed": 16, "resolution": 16, "in_channels": 3, "out_ch": 3}"#.utf8)
            .write(to: URL(fileURLWithPath: config))
        let run = try PaellaCLI.run(["bench", "train-vqgan", "--config", config, "--batch", "2", "--repeats", "1",
                                     "--warmup", "0", "--threads", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try run.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.compactMap { $0["name"] as? String } == ["train step vqgan ch32 16x16", "train forward vqgan ch32 16x16"])
        #expect(rows.allSatisfy { ($0["median_ms"] as? Double ?? 0) > 0 && $0["batch"] as? String == "2" })
        let refused = try PaellaCLI.run(["bench", "train-vqgan", "--batch", "0"])
        #expect(refused.status != 0 && refused.stderr.contains("--batch must be at least 1"), "\(refused.stderr)")
    }
}
