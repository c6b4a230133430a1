import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

/// `paella bench denoiser`: one forward of the full-size v1 denoiser with random weights.
struct BenchDenoiserCommand: ParsableCommand, BenchDefaults {
    static let configuration = CommandConfiguration(
        commandName: "denoiser",
        abstract: "Time one forward of the full-size v1 denoiser (random weights) at batch 1 and 2.",
        discussion: """
            Builds DenoiseUNet(8192) with random weights (2.3 GB) and times forwards on a token grid with a \
            global conditioning, printing the median milliseconds and GFLOP/s (multiply-adds counted twice). \
            Compare with PyTorch on the same machine: bench/pytorch/denoiser_bench.py.
            """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precisionOption: PrecisionOption

    @OptionGroup var bench: BenchOptions<Self>
    static let repeats = 5, warmup = 1  // the default --repeats and --warmup, per batch size

    @Option(name: .long, help: "Token grid side (height = width).")
    var size: Int = 32

    @Option(name: .long, help: "Batch size (repeatable; default: 1 and 2).")
    var batch: [Int] = []

    func validate() throws {
        guard size >= 8, size % 4 == 0 else { throw ValidationError("--size must be a multiple of 4, at least 8.") }
        guard batch.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batch must be at least 1.") }
    }

    func run() throws {
        try reportingErrors { try runBenchmark() }
    }

    private func runBenchmark() throws {
        let compute = try self.compute.makeCompute()
        let config = DenoiserConfig.v1
        let clock = ContinuousClock()
        let loadStart = clock.now
        let denoiser = try Denoiser(config: config, weights: precisionOption.randomWeights(seed: 1, scale: 0.02),
                                    compute: compute)
        if !bench.json {
            print(CPUInfo.summary)
            print("\(compute.gemm.name): \(compute.gemm.details)")
            print("random weights built in \(formatSeconds(clock.now - loadStart)) s; \(memoryReport())")
        }
        // With bf16 weights, the float32 model on the same random weights, to measure how far bf16 moves the logits.
        let float32 = precisionOption.precision == .fp32 ? nil
            : try Denoiser(config: config, weights: WeightLoader(synthetic: .random(seed: 1, scale: 0.02)), compute: compute)
        let precision = precisionOption.precision.rawValue
        var rows: [BenchmarkRow] = [], agreements: [(text: String, json: String)] = []
        for b in batch.isEmpty ? [1, 2] : batch {
            var generator = TorchCompatibleGenerator(seed: 2)
            let x = generator.randint(config.numLabels, [b, size, size])
            let c = generator.uniform([b, config.cClip])
            let r = generator.uniform([b]).floats
            var logits = denoiser(x, conditioning: c, r: r)
            let (ms, fastest) = bench.time { logits = denoiser(x, conditioning: c, r: r) }
            let flops = config.forwardFLOPs(height: size, width: size, batch: b)
            rows.append(BenchmarkRow(name: "denoiser v1 \(size)x\(size)", medianMs: ms, gflops: flops / ms / 1e6,
                                     backend: compute.gemm.name, threads: compute.pool.threadCount,
                                     extra: [("batch", String(b)), ("min ms", String(format: "%.1f", fastest)), ("precision", precision)]))
            // What a sampling step adds to the forward: typical filtering and the Gumbel-max draw over all rows.
            let flat = logits.reshaped([-1, config.numLabels])
            let uniforms = generator.uniform(flat.shape)
            let (drawMs, fastestDraw) = bench.time {
                let filtered = compute.typicalFilter(flat, mass: 0.2, minTokens: 1)
                _ = compute.gumbelArgmax(logits: filtered, uniforms: uniforms, temperature: 1)
            }
            rows.append(BenchmarkRow(name: "typical filter + draw", medianMs: drawMs, gflops: nil,
                                     backend: "-", threads: compute.pool.threadCount,
                                     extra: [("batch", String(b)), ("min ms", String(format: "%.1f", fastestDraw)), ("precision", "-")]))
            // The draw alone (sampling without the filter, as the bundled model's defaults do).
            let (gumbelMs, fastestGumbel) = bench.time { _ = compute.gumbelArgmax(logits: flat, uniforms: uniforms, temperature: 1) }
            rows.append(BenchmarkRow(name: "draw only", medianMs: gumbelMs, gflops: nil,
                                     backend: "-", threads: compute.pool.threadCount,
                                     extra: [("batch", String(b)), ("min ms", String(format: "%.1f", fastestGumbel)), ("precision", "-")]))
            if let float32 { agreements.append(Self.agreement(logits, float32(x, conditioning: c, r: r), uniforms: uniforms, batch: b, compute: compute)) }
        }
        BenchmarkReport.print(rows, json: bench.json)
        for line in agreements { print(bench.json ? line.json : line.text) }
        if !bench.json { print(memoryReport()) }
    }

    /// How far the bf16 logits are from float32's: the relative error (root of the summed squared differences over
    /// that of the float32 logits), the share of positions whose argmax token is the same, and the share whose token
    /// drawn at temperature 1 with the same random numbers (Gumbel-max, as the sampler draws) is the same.
    static func agreement(_ bf16: Tensor, _ fp32: Tensor, uniforms: Tensor, batch: Int, compute: Compute) -> (text: String, json: String) {
        let a = bf16.floats, b = fp32.floats
        let error = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            / max(Double.leastNormalMagnitude, b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot())
        let labels = bf16.shape.last ?? 1, flatA = bf16.reshaped([-1, labels]), flatB = fp32.reshaped([-1, labels])
        func share(_ x: Tensor, _ y: Tensor) -> Double {
            let p = x.integers(), q = y.integers()
            return Double(zip(p, q).filter { $0 == $1 }.count) / Double(max(1, p.count))
        }
        let argmax = share(compute.argmax(flatA), compute.argmax(flatB))
        let drawn = share(compute.gumbelArgmax(logits: flatA, uniforms: uniforms, temperature: 1),
                          compute.gumbelArgmax(logits: flatB, uniforms: uniforms, temperature: 1))
        let text = String(format: "bf16 against fp32, batch %d: logits relative error %.2e; same argmax token at %.2f%% of positions, "
                          + "same token drawn at temperature 1 at %.2f%%", batch, error, 100 * argmax, 100 * drawn)
        let json = String(format: "{\"name\": \"bf16 agreement\", \"batch\": %d, \"relative_error\": %.4e, \"argmax_agreement\": %.5f, "
                          + "\"sampled_agreement\": %.5f}", batch, error, argmax, drawn)
        return (text, json)
    }

    /// Resident and peak resident memory from /proc/self/status (Linux), e.g. "RSS 2.3 GB, peak 2.4 GB".
    private func memoryReport() -> String {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return "memory: unknown" }
        func gigabytes(_ field: String) -> String {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            return String(format: "%.2f GB", kilobytes * 1024 / 1e9)
        }
        return "memory: RSS \(gigabytes("VmRSS")), peak \(gigabytes("VmHWM"))"
    }

    private func formatSeconds(_ d: Duration) -> String { String(format: "%.1f", milliseconds(d) / 1e3) }
}

extension DenoiserConfig {
    /// Floating-point operations of one forward (a multiply-add counts 2) on a `height` x `width` grid with a
    /// global conditioning: the convolutions, the per-pixel MLPs, the conditioning maps and the logits.
    func forwardFLOPs(height: Int, width: Int, batch: Int) -> Double {
        let c = levelChannels, cond = conditioningChannels
        var total = 0.0
        func block(_ channels: Int, skip: Int, pixels: Int) {
            let p = Double(batch * pixels), ch = Double(channels)
            total += p * ch * 9 * 2                                   // depthwise 3x3
            total += Double(batch) * Double(cond) * ch * 2            // cond_mapper
            total += p * (ch + Double(skip)) * 4 * ch * 2 + p * 4 * ch * ch * 2  // channelwise MLP
        }
        func pixels(_ level: Int) -> Int { (height >> level) * (width >> level) }
        for (i, count) in downLevels.enumerated() {
            if i > 0 { total += Double(batch * pixels(i)) * 16 * Double(c[i - 1] * c[i]) * 2 }   // 4x4 stride-2 conv
            for _ in 0..<count { block(c[i], skip: 0, pixels: pixels(i)) }
        }
        for (i, count) in upLevels.enumerated() {
            let level = c.count - 1 - i
            for j in 0..<count { block(c[level], skip: i > 0 && j == 0 ? c[level] : 0, pixels: pixels(level)) }
            if i < upLevels.count - 1 { total += Double(batch * pixels(level)) * 16 * Double(c[level] * c[level - 1]) * 2 }
        }
        total += Double(batch * pixels(0)) * Double(c[0] * numLabels) * 2  // clf
        return total
    }
}
