import CPaellaKernels

// bfloat16 compute for inference: weight matrices rounded to bfloat16 and packed once into the panel layout of the
// bfloat16 GEMM (paella_gemm.h), activations rounded as the GEMM packs them, every product summed in float32. On a
// CPU with AVX512-BF16 one vdpbf16ps does two multiply-adds per lane from half the weight bytes; other AVX2 CPUs
// widen the packed pairs in registers, and elsewhere a portable kernel computes the same sums. 3x3 convolutions that
// take Winograd F(2x2, 3x3) widen their kernel back to float32 instead (Convolution.swift). Gradients are not
// defined for packed weights: training stays float32.

/// The arithmetic of a model's weight matrices (linear layers and convolutions with one group).
public enum Precision: String, Sendable, CaseIterable, Codable {
    /// float32 weights and products, the parity path.
    case fp32
    /// Weights rounded to bfloat16 and packed once, activations rounded to bfloat16, products summed in float32.
    case bf16
}

/// A weight matrix op(B) `[k, n]` rounded to bfloat16 and packed into the bfloat16 GEMM's panels of 32 columns
/// (`pk_bf16_pack`). Immutable after packing; 64-byte aligned, as the SIMD kernels load it.
public final class BFloat16Matrix: @unchecked Sendable {
    /// Depth (rows of op(B)) and columns.
    public let k: Int, n: Int
    let words: UnsafeMutablePointer<UInt32>

    /// Bytes the packed matrix holds: half of float32's, plus padding to whole panels and an even depth.
    public var byteCount: Int { pk_bf16_packed_words(k, n) * 4 }

    /// Packs `b` (any float dtype): op(B) = `b` `[k, n]`, or its transpose when `transposed` (`b` is `[n, k]`, as
    /// PyTorch stores `nn.Linear.weight`).
    public init(_ b: Tensor, transposed: Bool) {
        precondition(b.rank == 2, "BFloat16Matrix: expected a matrix, got shape \(b.shape)")
        let source = b.dtype == .float32 ? b : b.toFloat32()
        k = transposed ? source.shape[1] : source.shape[0]
        n = transposed ? source.shape[0] : source.shape[1]
        let count = max(1, pk_bf16_packed_words(k, n))
        words = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64).bindMemory(to: UInt32.self, capacity: count)
        let (k, n) = (k, n)
        source.withFloats { src in
            pk_bf16_pack(transposed ? 1 : 0, src.baseAddress!, source.shape[1], k, n, 0, (n + 31) / 32, words)
        }
    }

    /// Calls `body` with op(B) `[k, n]` widened back to float32 (the bfloat16 values exactly), in a buffer that lives
    /// for the call.
    func withUnpacked<Result>(_ body: (UnsafePointer<Float>) throws -> Result) rethrows -> Result {
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: max(1, k * n))
        defer { floats.deallocate() }
        pk_bf16_unpack(words, k, n, floats)
        return try body(floats)
    }

    deinit { UnsafeMutableRawPointer(words).deallocate() }
}

/// How the bfloat16 GEMM splits C between threads: row ranges (multiples of 12, the AVX-512 kernel's rows) when
/// there are enough rows, otherwise ranges of whole 32-column panels. Every element of C is computed the same way
/// whatever the split, so results are the same bits on any thread count.
struct BFloat16Partition {
    let parts: [(rows: Range<Int>, panels: Range<Int>)]

    static let minimumRowsPerPart = 48

    init(m: Int, n: Int, k: Int, threads: Int) {
        let panels = (n + 31) / 32
        let target = threads * GEMMPartition.partsPerThread
        func chunks(_ total: Int, _ count: Int, unit: Int) -> [Range<Int>] {
            let size = ((total + count - 1) / count + unit - 1) / unit * unit
            return stride(from: 0, to: total, by: max(1, size)).map { $0..<min(total, $0 + size) }
        }
        if threads <= 1 || m * n * k < GEMMPartition.minimumParallelWork || m == 0 || n == 0 {
            parts = [(0..<m, 0..<panels)]
        } else if m >= target * Self.minimumRowsPerPart || panels < threads {
            parts = chunks(m, min(target, max(1, m / 12)), unit: 12).map { ($0, 0..<panels) }
        } else {
            parts = chunks(panels, min(target, panels), unit: 1).map { (0..<m, $0) }
        }
    }
}

extension Compute {
    /// `C = A * B + beta * C` for row-major `A` `[m, k]` (row stride `lda`) and a packed bfloat16 `B` `[k, n]`,
    /// split between the pool's threads.
    func gemmBF16(m: Int, a: UnsafePointer<Float>, lda: Int, b: BFloat16Matrix, beta: Float,
                  c: UnsafeMutablePointer<Float>, ldc: Int) {
        forEachBF16Part(m: m, b, workspaceFloats: { pk_gemm_bf16_workspace_floats($0, b.k) }) { rows, panels, columns, workspace in
            pk_gemm_bf16(rows.count, columns.count, b.k, a + rows.lowerBound * lda, lda, b.words, panels.lowerBound, beta,
                         c + rows.lowerBound * ldc + columns.lowerBound, ldc, workspace)
        }
    }

    /// One group's implicit-GEMM convolution with a packed bfloat16 kernel matrix `[kH * kW * Cin, Cout]`.
    func conv2dBF16(_ xp: UnsafePointer<Float>, _ gp: UnsafePointer<pk_conv_geometry>, cin: Int, kernel b: BFloat16Matrix,
                    beta: Float, y: UnsafeMutablePointer<Float>) {
        let g = gp.pointee
        forEachBF16Part(m: g.batch * g.out_h * g.out_w, b, workspaceFloats: { pk_conv2d_gemm_bf16_workspace_floats($0, b.k, cin) }) {
            rows, panels, columns, workspace in
            pk_conv2d_gemm_bf16_nhwc(xp, cin, 0, cin, gp, rows.lowerBound, rows.upperBound, b.words, panels.lowerBound,
                                     columns.count, beta, y + rows.lowerBound * b.n + columns.lowerBound, b.n, workspace)
        }
    }

    /// Runs `body` on the pool for each part of `BFloat16Partition` of an `m`-row product with `b`: its rows, its
    /// panels, the columns they cover, and a workspace of `workspaceFloats(rows)` floats of its own.
    private func forEachBF16Part(m: Int, _ b: BFloat16Matrix, workspaceFloats: (Int) -> Int,
                                 _ body: (Range<Int>, Range<Int>, Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let split = BFloat16Partition(m: m, n: b.n, k: b.k, threads: pool.threadCount)
        let partFloats = (workspaceFloats(split.parts.map(\.rows.count).max() ?? 0) + 15) / 16 * 16
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: max(1, partFloats * split.parts.count))
        defer { workspace.deallocate() }
        pool.parallelFor(split.parts.count) { index in
            let (rows, panels) = split.parts[index]
            let columns = panels.lowerBound * 32..<min(b.n, panels.upperBound * 32)
            body(rows, panels, columns, workspace + index * partFloats)
        }
    }
}
