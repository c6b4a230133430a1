/// One measured result of a `paella bench` subcommand: a readable table row, or one JSON object per line.
public struct BenchmarkRow: Sendable, Equatable {
    /// What was measured ("1024x1280x320", "denoiser step", ...).
    public var name: String
    /// Median wall time of one repetition, in milliseconds.
    public var medianMs: Double
    /// Billions of floating-point operations per second at the median time, when the operation count is known.
    public var gflops: Double?
    /// Which implementation ran ("builtin", "openblas", ...).
    public var backend: String
    /// Threads it ran on.
    public var threads: Int
    /// Further fields, in order: name and a value printed as a JSON string (layout, dtype, ...).
    public var extra: [(String, String)]

    public init(name: String, medianMs: Double, gflops: Double?, backend: String, threads: Int,
                extra: [(String, String)] = []) {
        self.name = name
        self.medianMs = medianMs
        self.gflops = gflops
        self.backend = backend
        self.threads = threads
        self.extra = extra
    }

    public static func == (lhs: BenchmarkRow, rhs: BenchmarkRow) -> Bool {
        lhs.name == rhs.name && lhs.medianMs == rhs.medianMs && lhs.gflops == rhs.gflops && lhs.backend == rhs.backend
            && lhs.threads == rhs.threads && lhs.extra.map { $0.0 } == rhs.extra.map { $0.0 }
            && lhs.extra.map { $0.1 } == rhs.extra.map { $0.1 }
    }

    /// `{"name": ..., "median_ms": ..., "gflops": ..., "backend": ..., "threads": ..., extra...}` on one line.
    public var json: String {
        var fields = ["\"name\": \(jsonStringLiteral(name))",
                      "\"median_ms\": \(formatNumber(medianMs, decimals: 4))",
                      "\"gflops\": \(gflops.map { formatNumber($0, decimals: 2) } ?? "null")",
                      "\"backend\": \(jsonStringLiteral(backend))",
                      "\"threads\": \(threads)"]
        fields += extra.map { "\(jsonStringLiteral($0.0)): \(jsonStringLiteral($0.1))" }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}

/// Prints benchmark rows the same way for every `paella bench` subcommand.
public enum BenchmarkReport {
    /// A readable table (columns padded to fit), or with `json` one JSON object per row and line.
    public static func format(_ rows: [BenchmarkRow], json: Bool) -> String {
        if json { return rows.map(\.json).joined(separator: "\n") }
        let extraKeys = rows.first?.extra.map { $0.0 } ?? []
        let header = ["name"] + extraKeys + ["backend", "threads", "median ms", "GFLOP/s"]
        let body = rows.map { row in
            [row.name] + row.extra.map { $0.1 } + [row.backend, String(row.threads), formatNumber(row.medianMs, decimals: 3),
                                                   row.gflops.map { formatNumber($0, decimals: 1) } ?? "-"]
        }
        let widths = header.indices.map { column in
            ([header] + body).map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: max(0, widths[column] - cell.count))
                // Text left-aligned, numbers (the last three columns) right-aligned.
                return column >= header.count - 3 ? pad + cell : cell + pad
            }.joined(separator: "  ")
        }
        return ([line(header)] + body.map(line)).joined(separator: "\n")
    }

    public static func print(_ rows: [BenchmarkRow], json: Bool) {
        Swift.print(format(rows, json: json))
    }
}

/// One matrix-multiply shape to time: C[m, n] = op(A)[m, k] * op(B)[k, n].
public struct GEMMShape: Sendable, Equatable {
    public var m: Int, n: Int, k: Int
    public var transA: Transpose, transB: Transpose

    public init(m: Int, n: Int, k: Int, transA: Transpose = .none, transB: Transpose = .none) {
        self.m = m
        self.n = n
        self.k = k
        self.transA = transA
        self.transB = transB
    }

    /// "MxNxK", the name the plain C baseline (bench/cblas_sgemm_bench.c) prints too.
    public var name: String { "\(m)x\(n)x\(k)" }
    /// "NN", "NT", "TN" or "TT": whether op(A), op(B) are transposed.
    public var layout: String { (transA == .none ? "N" : "T") + (transB == .none ? "N" : "T") }
    /// Multiply-adds count twice.
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }

    /// The same shape in all four transpose layouts.
    public var allLayouts: [GEMMShape] {
        [(Transpose.none, Transpose.none), (.none, .transposed), (.transposed, .none), (.transposed, .transposed)].map {
            GEMMShape(m: m, n: n, k: k, transA: $0.0, transB: $0.1)
        }
    }
}

/// Times GEMM backends on the shapes the models use.
public enum GEMMBenchmark {
    /// The Paella v1 denoiser's matrix multiplies, M x N x K (positions x out x in, sizes from the weights in
    /// Tests/Fixtures/denoiser_v1_full_manifest.json at a 32 x 32 token grid): the channel-wise MLP of each level
    /// (1024 x 1280 x 320 and 1024 x 320 x 1280 at 32 x 32, 256 x 2560 x 640 at 16 x 16, 64 x 5120 x 1280 at
    /// 8 x 8) and the 1 x 1 classifier onto the 8192 codebook entries (1024 x 8192 x 320). Timed NN (weights
    /// stored [in, out]), like the plain C baseline; PyTorch's [out, in] weights used as stored are the NT layout,
    /// which `GEMMShape.allLayouts` adds.
    public static let denoiserV1Shapes: [GEMMShape] = [
        GEMMShape(m: 1024, n: 1280, k: 320),
        GEMMShape(m: 1024, n: 320, k: 1280),
        GEMMShape(m: 256, n: 2560, k: 640),
        GEMMShape(m: 64, n: 5120, k: 1280),
        GEMMShape(m: 1024, n: 8192, k: 320),
    ]

    /// Median time of `repeats` runs of one shape after `warmup` untimed runs (which fault in C's pages and
    /// start the backend's threads). Operands hold small deterministic values; C is reused between runs.
    public static func measure(_ shape: GEMMShape, backend: GEMMBackend, pool: ThreadPool,
                               warmup: Int = 2, repeats: Int = 10) -> BenchmarkRow {
        run(shapes: [shape], backends: [backend], pool: pool, warmup: warmup, repeats: repeats)[0]
    }

    /// Every shape for every backend; rows are grouped by backend, then shape. The repetitions of one shape
    /// alternate between the backends, so that a machine whose load drifts (shared cores) slows all of them
    /// alike and their ratio stays meaningful.
    public static func run(shapes: [GEMMShape] = denoiserV1Shapes, backends: [GEMMBackend], pool: ThreadPool,
                           warmup: Int = 2, repeats: Int = 10) -> [BenchmarkRow] {
        precondition(repeats >= 1 && warmup >= 0, "GEMMBenchmark.run: need repeats >= 1 and warmup >= 0")
        var rows = [[BenchmarkRow]](repeating: [], count: backends.count)
        let clock = ContinuousClock()
        for shape in shapes {
            let operands = Operands(shape)
            defer { operands.deallocate() }
            for backend in backends {
                for _ in 0..<warmup { operands.multiply(backend, pool: pool) }
            }
            var times = [[Double]](repeating: [], count: backends.count)
            for _ in 0..<repeats {
                for (index, backend) in backends.enumerated() {
                    let elapsed = clock.measure { operands.multiply(backend, pool: pool) }
                    times[index].append(Double(elapsed.components.seconds) * 1e3
                                        + Double(elapsed.components.attoseconds) * 1e-15)
                }
            }
            for (index, backend) in backends.enumerated() {
                let ms = median(times[index])
                rows[index].append(BenchmarkRow(name: shape.name, medianMs: ms, gflops: shape.flops / (ms * 1e6),
                                                backend: backend.name, threads: backendThreads(backend, pool: pool),
                                                extra: [("layout", shape.layout)]))
            }
        }
        return rows.flatMap { $0 }
    }

    /// A, B and C for one shape, with small deterministic values in A and B.
    private struct Operands {
        let shape: GEMMShape
        let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>

        init(_ shape: GEMMShape) {
            self.shape = shape
            let aCount = shape.m * shape.k, bCount = shape.k * shape.n
            a = .allocate(capacity: aCount)
            b = .allocate(capacity: bCount)
            c = .allocate(capacity: shape.m * shape.n)
            for i in 0..<aCount { a[i] = Float(i % 1000) / 1000 - 0.5 }
            for i in 0..<bCount { b[i] = Float((i * 7) % 1000) / 1000 - 0.5 }
            c.initialize(repeating: 0, count: shape.m * shape.n)
        }

        func multiply(_ backend: GEMMBackend, pool: ThreadPool) {
            backend.sgemm(shape.transA, shape.transB, m: shape.m, n: shape.n, k: shape.k, alpha: 1,
                          a: a, lda: shape.transA == .none ? shape.k : shape.m,
                          b: b, ldb: shape.transB == .none ? shape.n : shape.k,
                          beta: 0, c: c, ldc: shape.n, pool: pool)
        }

        func deallocate() {
            a.deallocate()
            b.deallocate()
            c.deallocate()
        }
    }

    /// The threads a backend runs on: a BLAS library's own setting, else the pool's size.
    static func backendThreads(_ backend: GEMMBackend, pool: ThreadPool) -> Int {
        (backend as? BLASLibrary)?.threads ?? pool.threadCount
    }
}

/// The middle value (mean of the two middle ones for an even count).
func median(_ values: [Double]) -> Double {
    precondition(!values.isEmpty, "median of no values")
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// A fixed-point decimal without Foundation ("12.3456"); non-finite values become JSON null.
func formatNumber(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return "null" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9e15 else { return String(value) }
    let whole = Int(scaled) / Int(scale), fraction = Int(scaled) % Int(scale)
    var digits = String(fraction)
    digits = String(repeating: "0", count: max(0, decimals - digits.count)) + digits
    let sign = value < 0 && scaled > 0 ? "-" : ""
    return decimals == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(digits)"
}

