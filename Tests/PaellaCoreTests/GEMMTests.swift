import Foundation
import CPaellaKernels
import PaellaTestSupport
import Testing
@testable import PaellaCore

/// A level seen on another thread (written before a semaphore signal, read after the wait).
private final class LevelBox: @unchecked Sendable { var value: UInt32 = 0 }

/// One GEMM problem with its operands stored in padded row-major buffers (lda/ldb/ldc wider than the rows).
private struct Problem: CustomStringConvertible {
    let transA: Transpose, transB: Transpose
    let m: Int, n: Int, k: Int
    var alpha: Float, beta: Float
    let lda: Int, ldb: Int, ldc: Int
    var a: [Float], b: [Float], c: [Float]

    init(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0,
         padding: Int = 0, seed: UInt64) {
        self.transA = transA
        self.transB = transB
        self.m = m
        self.n = n
        self.k = k
        self.alpha = alpha
        self.beta = beta
        var random = TestRandom(seed: seed)
        lda = max(1, (transA == .none ? k : m) + padding)
        ldb = max(1, (transB == .none ? n : k) + padding)
        ldc = max(1, n + padding)
        a = random.floats((transA == .none ? m : k) * lda)
        b = random.floats((transB == .none ? k : n) * ldb)
        // With beta == 0, C must be ignored: fill it with NaN so any read of it shows in the result.
        c = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : random.floats(m * ldc)
    }

    var description: String {
        "\(transA == .none ? "N" : "T")\(transB == .none ? "N" : "T") m=\(m) n=\(n) k=\(k) alpha=\(alpha) beta=\(beta) lda=\(lda) ldb=\(ldb) ldc=\(ldc)"
    }

    /// C after running `backend` on a copy of the operands.
    func run(_ backend: GEMMBackend, pool: ThreadPool) -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    backend.sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda,
                                  b: pb.baseAddress!, ldb: ldb, beta: beta, c: pc.baseAddress!, ldc: ldc, pool: pool)
                }
            }
        }
        return out
    }

    /// Checks `result` against ReferenceGEMM (double accumulation, so its own error is one final rounding).
    ///
    /// Tolerance: a float32 dot product of length k has error at most gamma_k * sum|a_p b_p| with
    /// gamma_k ~ k * eps in the worst case, but rounding errors add up like a random walk, so in practice
    /// (Higham & Mary 2019, probabilistic error analysis) the error stays below lambda * sqrt(k) * eps * sum|a_p b_p|
    /// with a small lambda. We take lambda = 4 and add 4 eps for the final roundings of alpha and beta * c, all
    /// scaled per element by |alpha| * sum_p |a_ip b_pj| + |beta * c_ij|. A wrong index or a lost block gives
    /// errors of the size of the values themselves, far above this bound.
    func expectMatchesReference(_ result: [Float], _ label: String, reference: Reference? = nil,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let (reference, scale) = (reference ?? self.reference()).values
        let factor = (4 * Float(k).squareRoot() + 4) * Float.ulpOfOne
        var worst: (excess: Float, i: Int, j: Int) = (0, -1, -1)
        for i in 0..<m {
            for j in 0..<n {
                let index = i * ldc + j
                let bound = factor * (abs(alpha) * scale[index] + (beta == 0 ? 0 : abs(beta * c[index])))
                    + Float.leastNormalMagnitude
                let error = abs(result[index] - reference[index])
                // NaN compares false, so a NaN result counts as a failure.
                if !(error <= bound), worst.i < 0 || error / bound > worst.excess {
                    worst = (error.isNaN ? .infinity : error / bound, i, j)
                }
            }
            // Padding columns of C (j >= n) must be untouched.
            for j in n..<ldc where !(result[i * ldc + j].bitPattern == c[i * ldc + j].bitPattern) {
                Issue.record("\(label) \(self): wrote padding C[\(i)][\(j)]", sourceLocation: sourceLocation)
            }
        }
        if worst.i >= 0 {
            let index = worst.i * ldc + worst.j
            Issue.record("\(label) \(self): C[\(worst.i)][\(worst.j)] = \(result[index]), reference \(reference[index]), \(worst.excess)x the tolerance",
                         sourceLocation: sourceLocation)
        }
    }

    /// The reference result and, per element, sum_p |a_ip| |b_pj| (the reference GEMM on absolute values),
    /// computed once and reused when several backends or settings are checked against them.
    struct Reference {
        let values: (result: [Float], scale: [Float])
    }

    func reference() -> Reference {
        let pool = ThreadPool(threads: 1)
        var magnitude = Problem(self, absolute: true)
        magnitude.c = [Float](repeating: 0, count: m * ldc)
        return Reference(values: (run(ReferenceGEMM(), pool: pool), magnitude.run(ReferenceGEMM(), pool: pool)))
    }

    private init(_ other: Problem, absolute: Bool) {
        self = other
        a = other.a.map { abs($0) }
        b = other.b.map { abs($0) }
        beta = 0
        alpha = 1
    }
}

/// The instruction-set levels this CPU can run, best first (pk_force_isa can only go down).
let availableISAs: [pk_isa] = {
    switch pk_detected_isa() {
    case PK_ISA_AVX512: return [PK_ISA_AVX512, PK_ISA_AVX2, PK_ISA_PORTABLE]
    case PK_ISA_AVX2: return [PK_ISA_AVX2, PK_ISA_PORTABLE]
    case PK_ISA_NEON: return [PK_ISA_NEON, PK_ISA_PORTABLE]
    default: return [PK_ISA_PORTABLE]
    }
}()

/// Runs `body` with the kernels forced onto `isa`, then restores the previous level; returns what `body` returns.
func withISA<Result>(_ isa: pk_isa, _ body: () throws -> Result) rethrows -> Result {
    let saved = pk_set_thread_isa(Int32(isa.rawValue))
    #expect(pk_active_isa() == isa)
    defer { pk_set_thread_isa(saved) }
    return try body()
}

private let openBLAS: BLASLibrary? = try? BLASLibrary.load(family: "openblas", threads: 2)

// Serialized: the OpenBLAS thread count the tests set is process-wide.
@Suite(.serialized) struct GEMMTests {
    static let oddSizes = [1, 3, 17, 31, 65, 129]

    /// Random problems over the odd sizes, all four transpose combinations, alpha/beta including beta 0 over
    /// NaN, and padded leading dimensions.
    private static func randomProblems(count: Int, seed: UInt64) -> [Problem] {
        var random = TestRandom(seed: seed)
        let transposes: [(Transpose, Transpose)] = [(.none, .none), (.none, .transposed), (.transposed, .none), (.transposed, .transposed)]
        let scalars: [(Float, Float)] = [(1, 0), (1, 1), (-0.5, 0), (2, -1.5), (0.75, 0.25)]
        return (0..<count).map { i in
            let (ta, tb) = transposes[i % 4]
            let (alpha, beta) = scalars[i % scalars.count]
            return Problem(ta, tb, m: oddSizes[random.int(0...5)], n: oddSizes[random.int(0...5)],
                           k: oddSizes[random.int(0...5)], alpha: alpha, beta: beta, padding: random.int(0...3),
                           seed: random.next())
        }
    }

    @Test("built-in GEMM matches the reference on odd shapes, at every ISA level and thread count",
          arguments: availableISAs.map { String(cString: pk_isa_name($0)) })
    func builtinMatchesReference(isaName: String) throws {
        let isa = try #require(availableISAs.first { String(cString: pk_isa_name($0)) == isaName })
        let problems = Self.randomProblems(count: 48, seed: 0x5eed_0000 + UInt64(isa.rawValue))
        let references = problems.map { $0.reference() }
        withISA(isa) {
            for threads in [1, 3] {
                let pool = ThreadPool(threads: threads)
                for (problem, reference) in zip(problems, references) {
                    problem.expectMatchesReference(problem.run(BuiltinGEMM(), pool: pool), "\(isaName) \(threads) threads",
                                                   reference: reference)
                }
            }
        }
    }

    @Test("every shape size from the odd set, each transpose pair, one thread")
    func builtinCoversEveryOddSize() {
        let pool = ThreadPool(threads: 1)
        for (index, size) in Self.oddSizes.enumerated() {
            let problems = [Problem(.none, .none, m: size, n: 33, k: 19, beta: 0, seed: UInt64(index)),
                            Problem(.transposed, .none, m: 20, n: size, k: 35, beta: 1, seed: UInt64(index + 10)),
                            Problem(.none, .transposed, m: 13, n: 40, k: size, alpha: -1, beta: 0.5, seed: UInt64(index + 20)),
                            Problem(.transposed, .transposed, m: size, n: size, k: size, padding: 2, seed: UInt64(index + 30))]
            for problem in problems { problem.expectMatchesReference(problem.run(BuiltinGEMM(), pool: pool), "odd") }
        }
    }

    @Test("a product larger than every cache block (several k, column and row blocks) matches the C reference twin",
          arguments: availableISAs.filter { $0 != PK_ISA_PORTABLE }.map { String(cString: pk_isa_name($0)) })
    func builtinMatchesReferenceTwinOnLargeProduct(isaName: String) throws {
        let isa = try #require(availableISAs.first { String(cString: pk_isa_name($0)) == isaName })
        // m = 965 > 960 rows (two row blocks); k = 400 > 384 (two k blocks of 200); n = 1300 columns: the B
        // block holds 1280 columns at that depth with AVX-512 and 320 with AVX2, so several column blocks too.
        for (ta, tb) in [(Transpose.none, Transpose.none), (.transposed, .transposed)] {
            let p = Problem(ta, tb, m: 965, n: 1300, k: 400, alpha: 0.5, beta: -1, padding: 1, seed: 77)
            var expected = p.c
            p.a.withUnsafeBufferPointer { pa in
                p.b.withUnsafeBufferPointer { pb in
                    pk_sgemm_ref(ta == .none ? 0 : 1, tb == .none ? 0 : 1, p.m, p.n, p.k, p.alpha, pa.baseAddress, p.lda,
                                 pb.baseAddress, p.ldb, p.beta, &expected, p.ldc)
                }
            }
            withISA(isa) {
                let result = p.run(BuiltinGEMM(), pool: ThreadPool(threads: 2))
                // Elements are 0.5 * (sums of 400 products of numbers in [-1, 1]) - c, so sum |a b| <= k and the
                // bound 4 sqrt(k) eps * k (see Problem.expectMatchesReference) is ~1e-3, plus the beta term.
                let bound = 4 * Float(p.k).squareRoot() * Float.ulpOfOne * Float(p.k) + 4 * Float.ulpOfOne * 20
                #expect(maxAbsDifference(result, expected) <= bound, "\(isaName) \(p)")
            }
        }
    }

    @Test("splitting C between threads gives bitwise the single-threaded result")
    func threadedEqualsSingleThreaded() {
        // Every part sums each element over the same k blocks in the same order, so the results are identical.
        let shapes = [(64, 5120, 40), (1024, 64, 32), (257, 300, 129), (5, 7, 9)]
        for (index, (m, n, k)) in shapes.enumerated() {
            let p = Problem(.none, .transposed, m: m, n: n, k: k, alpha: 1.5, beta: 0.5, padding: 1, seed: UInt64(index))
            let single = p.run(BuiltinGEMM(), pool: ThreadPool(threads: 1))
            for threads in [2, 3, 4] {
                let multi = p.run(BuiltinGEMM(), pool: ThreadPool(threads: threads))
                #expect(multi == single, "\(threads) threads, \(p)")
            }
        }
    }

    @Test("the thread split picks the long side and covers C exactly once")
    func partition() {
        // Half-perimeter rule: M = 64, N = 5120 splits only the columns; M = 1024, N = 320 only the rows; up to
        // 2 parts per thread while parts keep >= 96 rows or >= 256 columns.
        let wide = GEMMPartition(m: 64, n: 5120, k: 1280, threads: 2)
        #expect(wide.rowParts == 1 && wide.columnParts == 4)
        let tall = GEMMPartition(m: 1024, n: 320, k: 1280, threads: 2)
        #expect(tall.rowParts == 4 && tall.columnParts == 1)
        let square = GEMMPartition(m: 1024, n: 1280, k: 320, threads: 2)
        #expect(square.rowParts == 2 && square.columnParts == 2)  // 512 + 640 beats 1024 + 320 and 256 + 1280
        #expect(GEMMPartition(m: 8, n: 8, k: 8, threads: 4).count == 1)  // too small to be worth threads
        #expect(GEMMPartition(m: 30, n: 100, k: 200, threads: 2).count == 2)  // small: one part per thread
        for (m, n, threads) in [(64, 5120, 2), (1024, 1280, 4), (1000, 37, 3), (13, 2000, 5), (97, 97, 6), (5, 7, 3)] {
            let plan = GEMMPartition(m: m, n: n, k: 512, threads: threads)
            #expect(plan.count <= threads * GEMMPartition.partsPerThread)
            var hits = [Int](repeating: 0, count: m * n)
            for index in 0..<plan.count {
                let (rows, cols) = plan.part(index)
                for i in rows { for j in cols { hits[i * n + j] += 1 } }
            }
            #expect(hits.allSatisfy { $0 == 1 }, "m=\(m) n=\(n) threads=\(threads)")
        }
    }

    @Test("k = 0 and alpha = 0 scale C by beta; beta 0 clears NaN")
    func degenerateProducts() {
        let pool = ThreadPool(threads: 1)
        for (k, alpha) in [(0, Float(1)), (5, 0)] {
            var keep = Problem(.none, .none, m: 4, n: 6, k: max(k, 1), alpha: alpha, beta: 0.5, seed: 3)
            keep = Problem(keep, k: k)
            let result = keep.run(BuiltinGEMM(), pool: pool)
            #expect(result == keep.c.map { $0 * 0.5 })
            let cleared = Problem(Problem(.none, .none, m: 4, n: 6, k: 1, alpha: alpha, beta: 0, seed: 4), k: k)
            #expect(cleared.run(BuiltinGEMM(), pool: pool) == [Float](repeating: 0, count: 24))
        }
    }

    @Test("batched GEMM multiplies each matrix of the batch", arguments: [2, 5])
    func batched(batchCount: Int) {
        // 2 matrices on a 3-thread pool splits each product; 5 matrices gives whole matrices to threads.
        let m = 17, n = 33, k = 9
        var random = TestRandom(seed: 99)
        let a = random.floats(batchCount * m * k), b = random.floats(batchCount * n * k)
        var c = [Float](repeating: .nan, count: batchCount * m * n)
        let pool = ThreadPool(threads: 3)
        BuiltinGEMM().sgemmBatched(.none, .transposed, m: m, n: n, k: k, alpha: 1, a: a, lda: k, strideA: m * k,
                                   b: b, ldb: k, strideB: n * k, beta: 0, c: &c, ldc: n, strideC: m * n,
                                   batchCount: batchCount, pool: pool)
        var expected = [Float](repeating: 0, count: batchCount * m * n)
        expected.withUnsafeMutableBufferPointer { out in
            for i in 0..<batchCount {
                pk_sgemm_ref(0, 1, m, n, k, 1, Array(a[(i * m * k)...]), k, Array(b[(i * n * k)...]), k, 0,
                             out.baseAddress! + i * m * n, n)
            }
        }
        // Sums of 9 products of values in [-1, 1]: |error| <= 4 sqrt(9) eps * 9 ~ 1e-5.
        #expect(maxAbsDifference(c, expected) <= 1e-5)
    }

    @Test("OpenBLAS loaded at run time matches the reference", .enabled(if: openBLAS != nil, "OpenBLAS not installed"))
    func openBLASMatchesReference() throws {
        let library = try #require(openBLAS)
        #expect(library.name == "openblas")
        #expect(library.details.contains("OpenBLAS"))
        let pool = ThreadPool(threads: 1)
        for problem in Self.randomProblems(count: 24, seed: 0xb1a5) {
            problem.expectMatchesReference(problem.run(library, pool: pool), "openblas")
        }
        // And the two fast paths agree with each other on a denoiser-sized product.
        let p = Problem(.none, .none, m: 64, n: 1280, k: 320, seed: 5)
        let fromBLAS = p.run(library, pool: pool), fromBuiltin = p.run(BuiltinGEMM(), pool: pool)
        #expect(maxAbsDifference(fromBLAS, fromBuiltin) <= 2 * 4 * Float(320).squareRoot() * Float.ulpOfOne * 320)
    }

    @Test("backend choices parse, and unloadable libraries give one clear error")
    func choices() throws {
        #expect(try GEMMBackendChoice(parsing: "auto") == .automatic)
        #expect(try GEMMBackendChoice(parsing: "") == .automatic)
        #expect(try GEMMBackendChoice(parsing: " builtin ") == .builtin)
        #expect(try GEMMBackendChoice(parsing: "OpenBLAS") == .library("openblas"))
        #expect(try GEMMBackendChoice(parsing: "mkl") == .library("mkl"))
        #expect(try GEMMBackendChoice(parsing: "blis") == .library("blis"))
        #expect(try GEMMBackendChoice(parsing: "/opt/lib/libblas.so.3") == .library("/opt/lib/libblas.so.3"))
        #expect(try GEMMBackendChoice(parsing: "libopenblas.so.0") == .library("libopenblas.so.0"))
        #expect(throws: ComputeSetupError.unknownBackend("cuda")) { try GEMMBackendChoice(parsing: "cuda") }

        #expect(try GEMMBackends.make(.builtin, threads: 2).name == "builtin")
        let automatic = try GEMMBackends.make(.automatic, threads: 2)
        // Automatic tries OpenBLAS first, then MKL and BLIS, and falls back to the built-in GEMM without failing.
        if openBLAS != nil {
            #expect(automatic.name == "openblas")
        } else {
            #expect(["builtin", "mkl", "blis"].contains(automatic.name))
        }

        do {
            _ = try GEMMBackends.make(.library("/nonexistent/libnothing.so"), threads: 1)
            Issue.record("loading a missing file should throw")
        } catch let error as ComputeSetupError {
            guard case .cannotLoad(let path, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(path == "/nonexistent/libnothing.so")
            #expect(error.description.hasPrefix("Cannot load the BLAS library /nonexistent/libnothing.so"))
        }
        // The C library opens fine but is not a BLAS.
        #expect(throws: ComputeSetupError.missingSymbol(path: "libc.so.6", symbol: "cblas_sgemm")) {
            try GEMMBackends.make(.library("libc.so.6"), threads: 1)
        }
        #if !canImport(Accelerate)
        #expect(throws: ComputeSetupError.notOnThisPlatform("Accelerate")) {
            try GEMMBackends.make(.library("accelerate"), threads: 1)
        }
        #endif
        if openBLAS == nil {
            #expect(throws: ComputeSetupError.self) { try GEMMBackends.make(.library("openblas"), threads: 1) }
        }
    }

    @Test("a level forced for one thread holds for its pool loops and nowhere else")
    func threadLevel() {
        let processLevel = pk_active_isa()
        let saved = pk_set_thread_isa(Int32(PK_ISA_PORTABLE.rawValue))
        defer { pk_set_thread_isa(saved) }
        let pool = ThreadPool(threads: 2)
        let seen = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: 64)
        defer { seen.deallocate() }
        pool.parallelFor(64) { i in seen[i] = pk_active_isa().rawValue }
        #expect(seen.allSatisfy { $0 == PK_ISA_PORTABLE.rawValue })
        let other = LevelBox()
        let done = DispatchSemaphore(value: 0)
        Thread { other.value = pk_active_isa().rawValue; done.signal() }.start()
        done.wait()
        #expect(other.value == processLevel.rawValue)
    }

    @Test("CPU features are described and the ISA can be forced down, not up")
    func cpuInfo() throws {
        #expect(CPUInfo.summary.contains(CPUInfo.activeISA))
        #expect(throws: ComputeSetupError.unknownISA("sse9")) { try CPUInfo.forceISA("sse9") }
        let saved = pk_thread_isa()
        defer { pk_set_thread_isa(saved) }
        try CPUInfo.forceISA("portable", thisThreadOnly: true)
        #expect(CPUInfo.activeISA == "portable")
        #expect(BuiltinGEMM().details.contains("portable 4x8"))
        #if arch(x86_64)
        #expect(throws: ComputeSetupError.isaNotSupported(requested: "neon", detected: CPUInfo.detectedISA)) {
            try CPUInfo.forceISA("neon", thisThreadOnly: true)
        }
        #endif
    }
}

extension Problem {
    /// The same problem with another depth k (operands regenerated with the same seed-independent shapes).
    fileprivate init(_ other: Problem, k: Int) {
        self.init(other.transA, other.transB, m: other.m, n: other.n, k: k, alpha: other.alpha, beta: other.beta,
                  seed: 1)
        c = other.c
    }
}

@Suite struct BenchmarkReportTests {
    @Test("JSON lines carry the fields scripts compare, table rows line up")
    func format() {
        let rows = [BenchmarkRow(name: "1024x1280x320", medianMs: 3.14159, gflops: 267.4321, backend: "openblas", threads: 2,
                                 extra: [("layout", "NN")]),
                    BenchmarkRow(name: "say \"hi\"", medianMs: 12, gflops: nil, backend: "builtin", threads: 1,
                                 extra: [("layout", "TT")])]
        let json = BenchmarkReport.format(rows, json: true).split(separator: "\n").map(String.init)
        #expect(json == [
            #"{"name": "1024x1280x320", "median_ms": 3.1416, "gflops": 267.43, "backend": "openblas", "threads": 2, "layout": "NN"}"#,
            #"{"name": "say \"hi\"", "median_ms": 12.0000, "gflops": null, "backend": "builtin", "threads": 1, "layout": "TT"}"#,
        ])
        let table = BenchmarkReport.format(rows, json: false).split(separator: "\n").map(String.init)
        #expect(table.count == 3)
        #expect(Set(table.map(\.count)).count == 1)  // every line padded to the same width
        #expect(table[0].hasPrefix("name"))
        #expect(table[1].hasSuffix("267.4"))
        #expect(table[2].hasSuffix("-"))
    }

    @Test("the benchmark times every shape for every backend")
    func smallRun() {
        let shapes = [GEMMShape(m: 8, n: 16, k: 4), GEMMShape(m: 3, n: 5, k: 7, transA: .transposed)]
        let rows = GEMMBenchmark.run(shapes: shapes, backends: [BuiltinGEMM(), ReferenceGEMM()], pool: ThreadPool(threads: 1),
                                     warmup: 0, repeats: 3)
        #expect(rows.map(\.name) == ["8x16x4", "3x5x7", "8x16x4", "3x5x7"])
        #expect(rows.map(\.backend) == ["builtin", "builtin", "reference", "reference"])
        #expect(rows[1].extra.first?.1 == "TN")
        #expect(rows.allSatisfy { $0.medianMs > 0 && ($0.gflops ?? 0) > 0 })
        #expect(median([3, 1, 2]) == 2 && median([4, 1, 3, 2]) == 2.5)
    }
}
