import CPaellaKernels

// 2-D convolutions over channels-last images [B, H, W, C], with weights converted once from PyTorch layouts.
//
// Strategy (forward):
// - 1x1, stride 1, no padding, groups 1: one GEMM over all pixels ([B*H*W, Cin] x [Cin, Cout]).
// - depthwise (groups == Cin == Cout): a C kernel vectorized over channels.
// - 3x3, stride 1, one zero of padding, one group, images of 32x32 and more (the VQGAN's): Winograd F(2x2, 3x3)
//   (pk_conv2d_winograd3x3_nhwc), 2.25x fewer multiplies; with the built-in GEMM and in optimised builds, as below.
// - everything else: an implicit GEMM per group (Paella's GEMM driver with a packing routine that reads each
//   tap's channels straight from the input, pk_conv2d_gemm_nhwc), so the lowered input, 9x the activation for a
//   3x3 kernel, is never written. With the reference backend (the twin of every GEMM): im2col (a C kernel) into
//   a column buffer of a bounded size, then one GEMM per group, chunked over output rows.
// Transposed convolution: GEMM (x * W gives every input pixel's kernel-sized patch) then a gather (col2im).

/// How a convolution reads outside the image.
public enum PaddingMode: Sendable, Equatable {
    /// Zeros (PyTorch `padding_mode="zeros"`, the default).
    case zeros
    /// Mirror without repeating the edge pixel (PyTorch `ReflectionPad2d` / `padding_mode="reflect"`).
    case reflect

    var kernelValue: pk_pad_mode { self == .zeros ? PK_PAD_ZEROS : PK_PAD_REFLECT }
}

/// Padding on each side of an image. An integer literal pads all four sides equally (PyTorch `padding=p`);
/// taming's Downsample pads only right and bottom: `Padding2d(top: 0, bottom: 1, left: 0, right: 1)`.
public struct Padding2d: Sendable, Equatable, ExpressibleByIntegerLiteral {
    public var top: Int, bottom: Int, left: Int, right: Int

    public init(top: Int, bottom: Int, left: Int, right: Int) {
        precondition(top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
                     "Padding2d: padding must be non-negative, got \(top), \(bottom), \(left), \(right)")
        self.top = top
        self.bottom = bottom
        self.left = left
        self.right = right
    }

    public init(_ all: Int) { self.init(top: all, bottom: all, left: all, right: all) }
    public init(integerLiteral value: Int) { self.init(value) }

    public static let zero = Padding2d(0)
    var isZero: Bool { self == .zero }
}

/// Conv2d weights converted for channels-last compute.
///
/// `kernel` is float32 `[kH, kW, Cin / groups, Cout]`: for group g, the rows `(ky, kx, ci)` and columns
/// `g * Cout/groups ..< (g+1) * Cout/groups` form the GEMM operand that multiplies the im2col columns.
/// A depthwise kernel (groups == Cin == Cout) is thus `[kH, kW, 1, C]`, which the depthwise C kernel reads.
public struct Conv2dWeights: Sendable {
    /// The float32 kernel; a read-only zero stand-in of its shape when the kernel is packed as `bf16`.
    public let kernel: Tensor
    /// `[Cout]` float32, or nil.
    public let bias: Tensor?
    public let groups: Int
    /// The kernel as the bfloat16 GEMM's `[kH * kW * Cin, Cout]` matrix, for `Precision.bf16` inference: only
    /// for one group (depthwise and grouped kernels stay float32); nil for float32.
    public let bf16: BFloat16Matrix?

    public var kernelHeight: Int { kernel.shape[0] }
    public var kernelWidth: Int { kernel.shape[1] }
    public var inChannels: Int { kernel.shape[2] * groups }
    public var outChannels: Int { kernel.shape[3] }
    /// Whether every channel is filtered on its own (groups == Cin == Cout).
    public var isDepthwise: Bool { kernel.shape[2] == 1 && groups == outChannels && groups > 1 }

    /// Converts PyTorch `Conv2d.weight` `[Cout, Cin / groups, kH, kW]` (float32, float16 or bfloat16) and
    /// `Conv2d.bias` `[Cout]`. With `precision` `.bf16` a one-group kernel is rounded to bfloat16 and packed once,
    /// and no float32 copy is kept.
    public init(pytorchOIHW weight: Tensor, bias: Tensor?, groups: Int = 1, precision: Precision = .fp32) {
        precondition(weight.rank == 4, "Conv2dWeights: expected an OIHW weight, got shape \(weight.shape)")
        precondition(groups >= 1 && weight.shape[0] % groups == 0,
                     "Conv2dWeights: \(weight.shape[0]) output channels do not split into \(groups) groups")
        self.init(kernel: (weight.dtype == .float32 ? weight : weight.toFloat32()).permuted([2, 3, 1, 0]), bias: bias, groups: groups,
                  precision: precision)
    }

    /// Wraps a kernel already in this type's layout `[kH, kW, Cin / groups, Cout]` (e.g. after an optimizer step).
    public init(kernel: Tensor, bias: Tensor?, groups: Int = 1, precision: Precision = .fp32) {
        precondition(kernel.rank == 4 && kernel.dtype == .float32,
                     "Conv2dWeights: expected a float32 [kH, kW, Cin/groups, Cout] kernel, got \(kernel)")
        precondition(groups >= 1 && kernel.shape[3] % groups == 0,
                     "Conv2dWeights: \(kernel.shape[3]) output channels do not split into \(groups) groups")
        if let bias {
            precondition(bias.count == kernel.shape[3],
                         "Conv2dWeights: bias has \(bias.count) values for \(kernel.shape[3]) output channels")
        }
        self.bias = bias.map { $0.toFloat32().reshaped([kernel.shape[3]]) }
        self.groups = groups
        if precision == .bf16 && groups == 1 {
            let (kh, kw, cin, cout) = (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3])
            bf16 = BFloat16Matrix(kernel.reshaped([kh * kw * cin, cout]), transposed: false)
            self.kernel = Tensor(readOnlyZeros: kernel.shape)
        } else {
            bf16 = nil
            self.kernel = kernel
        }
    }

    /// The kernel back in PyTorch's `[Cout, Cin / groups, kH, kW]` layout (for saving and for tests).
    public func pytorchOIHW() -> Tensor { kernel.permuted([3, 2, 0, 1]) }

    /// The weights whose stride-1 convolution of an output gradient is the input gradient: each group's kernel
    /// rotated by 180 degrees with its input and output channels swapped,
    /// K'[ky, kx, o, g * cg + c] = K[kH - 1 - ky, kW - 1 - kx, c, g * og + o], no bias.
    func flippedForInputGradient() -> Conv2dWeights {
        let kh = kernelHeight, kw = kernelWidth, cg = kernel.shape[2], cout = outChannels, og = cout / groups
        var flipped = Tensor(uninitialized: [kh, kw, og, cg * groups])
        kernel.withFloats { src in flipped.withMutableFloats { dst in
            for ky in 0..<kh { for kx in 0..<kw { for group in 0..<groups { for o in 0..<og { for c in 0..<cg {
                dst[((ky * kw + kx) * og + o) * cg * groups + group * cg + c] =
                    src[(((kh - 1 - ky) * kw + (kw - 1 - kx)) * cg + c) * cout + group * og + o]
            }}}}}
        }}
        return Conv2dWeights(kernel: flipped, bias: nil, groups: groups)
    }
}

/// ConvTranspose2d weights converted for channels-last compute.
///
/// `kernel` is float32 `[Cin, kH, kW, Cout / groups]`: the rows of group g form the GEMM operand
/// `[Cin/groups, kH * kW * Cout/groups]` that turns an input pixel into its output patch.
public struct ConvTranspose2dWeights: Sendable {
    public let kernel: Tensor
    /// `[Cout]` float32, or nil.
    public let bias: Tensor?
    public let groups: Int

    public var kernelHeight: Int { kernel.shape[1] }
    public var kernelWidth: Int { kernel.shape[2] }
    public var inChannels: Int { kernel.shape[0] }
    public var outChannels: Int { kernel.shape[3] * groups }

    /// Converts PyTorch `ConvTranspose2d.weight` `[Cin, Cout / groups, kH, kW]` (float32, float16 or bfloat16)
    /// and its bias `[Cout]`.
    public init(pytorch weight: Tensor, bias: Tensor?, groups: Int = 1) {
        precondition(weight.rank == 4, "ConvTranspose2dWeights: expected a [Cin, Cout/groups, kH, kW] weight, got \(weight.shape)")
        precondition(groups >= 1 && weight.shape[0] % groups == 0,
                     "ConvTranspose2dWeights: \(weight.shape[0]) input channels do not split into \(groups) groups")
        kernel = (weight.dtype == .float32 ? weight : weight.toFloat32()).permuted([0, 2, 3, 1])
        if let bias {
            precondition(bias.count == weight.shape[1] * groups,
                         "ConvTranspose2dWeights: bias has \(bias.count) values for \(weight.shape[1] * groups) output channels")
        }
        self.bias = bias.map { $0.toFloat32().reshaped([weight.shape[1] * groups]) }
        self.groups = groups
    }
}

/// Gradients of `conv2d` with respect to its input and weights, in the layouts of the forward arguments.
public struct Conv2dGradients: Sendable {
    /// `[B, H, W, Cin]`, like the input.
    public var input: Tensor
    /// `[kH, kW, Cin / groups, Cout]`, like `Conv2dWeights.kernel`.
    public var kernel: Tensor
    /// `[Cout]`, or nil when the weights have no bias.
    public var bias: Tensor?
}

/// Internal knobs of the convolution strategy.
enum ConvolutionTuning {
    /// The largest column buffer (in floats) a convolution allocates: 4M floats = 16 MiB.
    static let columnBudget = 1 << 22
    /// The smallest image (out_h * out_w) a 3x3 convolution takes Winograd F(2x2, 3x3) for.
    static let winogradMinimumPixels = 32 * 32
}

extension Compute {
    /// Whether general convolutions (and their gradients) run as implicit GEMMs on Paella's own GEMM kernels
    /// instead of im2col + the backend's GEMM: with the built-in backend, and with a BLAS backend when the kernels
    /// are compiled with optimisation. A BLAS has no convolution, and the packing that reads taps straight from the
    /// input beat im2col + OpenBLAS in release builds (VQGAN f8 decode 6-10% faster, the bundled VQGAN's training
    /// step 24% at 2 threads; bench/README.md); in a debug build (C at -O0) the BLAS is far faster. The reference
    /// backend keeps im2col, as the twin. The backend still multiplies everything else: linear layers, attention,
    /// 1x1 convolutions.
    var usesImplicitGEMM: Bool {
        if gemm is ReferenceGEMM { return false }
        return gemm is BuiltinGEMM || pk_kernels_optimized() != 0
    }

    /// PyTorch `F.conv2d` on channels-last input `[B, H, W, Cin]`, giving `[B, Hout, Wout, Cout]` with
    /// `Hout = (H + top + bottom - dilation * (kH - 1) - 1) / stride + 1`.
    /// Reflection padding needs each pad smaller than the image side it pads (as in PyTorch).
    public func conv2d(_ x: Tensor, _ w: Conv2dWeights, stride: Int = 1, padding: Padding2d = .zero,
                       paddingMode: PaddingMode = .zeros, dilation: Int = 1) -> Tensor {
        conv2dImplementation(x, w, stride: stride, padding: padding, paddingMode: paddingMode, dilation: dilation,
                             columnBudget: ConvolutionTuning.columnBudget)
    }

    /// `conv2d` with the column-buffer budget (in floats) as a parameter, so tests can force chunking.
    func conv2dImplementation(_ x: Tensor, _ w: Conv2dWeights, stride: Int, padding: Padding2d,
                              paddingMode: PaddingMode, dilation: Int, columnBudget: Int) -> Tensor {
        let geometry = convGeometry(x, w, stride: stride, padding: padding, paddingMode: paddingMode, dilation: dilation)
        let cin = w.inChannels, cout = w.outChannels
        var y = Tensor(uninitialized: [geometry.batch, geometry.out_h, geometry.out_w, cout])
        let rows = geometry.batch * geometry.out_h, pixels = rows * geometry.out_w
        x.withFloats { xs in w.kernel.withFloats { ks in y.withMutableFloats { ys in
            withOptionalFloats(w.bias) { bp in withUnsafePointer(to: geometry) { g in
                let xp = xs.baseAddress!, kp = ks.baseAddress!, yp = ys.baseAddress!
                if w.kernelHeight == 1 && w.kernelWidth == 1 && stride == 1 && padding.isZero && w.groups == 1 {
                    // Every output pixel is its input pixel times a [Cin, Cout] matrix: one GEMM.
                    let beta = fillWithBias(yp, rows: pixels, channels: cout, bias: bp)
                    if let packed = w.bf16 {
                        gemmBF16(m: pixels, a: xp, lda: cin, b: packed, beta: beta, c: yp, ldc: cout)
                        return
                    }
                    gemm.sgemm(.none, .none, m: pixels, n: cout, k: cin, alpha: 1, a: xp, lda: cin,
                               b: kp, ldb: cout, beta: beta, c: yp, ldc: cout, pool: pool)
                } else if w.isDepthwise {
                    pool.parallelChunks(rows) { r in
                        pk_depthwise_conv2d_nhwc(xp, cin, kp, bp, g, r.lowerBound, r.upperBound, yp)
                    }
                } else {
                    let beta = fillWithBias(yp, rows: pixels, channels: cout, bias: bp)
                    if let packed = w.bf16, usesImplicitGEMM && Compute.takesWinograd(geometry, groups: w.groups) {
                        // 2.25x fewer multiplies beat the bfloat16 kernel here (on AVX2 and AVX512-BF16 CPUs alike): the
                        // kernel's bfloat16 values, widened, go through the float32 transform.
                        packed.withUnpacked { winograd(xp, $0, geometry, cin: cin, cout: cout, beta: beta, y: yp) }
                    } else if let packed = w.bf16 {
                        conv2dBF16(xp, g, cin: cin, kernel: packed, beta: beta, y: yp)
                    } else if usesImplicitGEMM && Compute.takesWinograd(geometry, groups: w.groups) {
                        winograd(xp, kp, geometry, cin: cin, cout: cout, beta: beta, y: yp)
                    } else if usesImplicitGEMM {
                        implicitGEMM(xp, kp, g, cin: cin, cout: cout, groups: w.groups, beta: beta, y: yp)
                    } else {
                        im2colGEMM(xp, kp, g, cin: cin, cout: cout, groups: w.groups, beta: beta, y: yp, columnBudget: columnBudget)
                    }
                }
            }}
        }}}
        return y
    }

    /// General convolution: per chunk of output rows, im2col each group then multiply by its kernel columns.
    private func im2colGEMM(_ xp: UnsafePointer<Float>, _ kp: UnsafePointer<Float>, _ gp: UnsafePointer<pk_conv_geometry>,
                            cin: Int, cout: Int, groups: Int, beta: Float, y: UnsafeMutablePointer<Float>,
                            columnBudget: Int) {
        let g = gp.pointee
        let cg = cin / groups, og = cout / groups
        let k = g.kernel_h * g.kernel_w * cg
        let rows = g.batch * g.out_h
        let chunkRows = max(1, min(rows, columnBudget / max(1, g.out_w * k)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * g.out_w * k)
        defer { col.deallocate() }
        for start in Swift.stride(from: 0, to: rows, by: chunkRows) {
            let end = min(rows, start + chunkRows)
            for group in 0..<groups {
                pool.parallelChunks(end - start) { r in
                    pk_im2col_nhwc(xp, cin, group * cg, cg, gp, start + r.lowerBound, start + r.upperBound,
                                   col + r.lowerBound * g.out_w * k)
                }
                gemm.sgemm(.none, .none, m: (end - start) * g.out_w, n: og, k: k, alpha: 1, a: col, lda: k,
                           b: kp + group * og, ldb: cout, beta: beta,
                           c: y + start * g.out_w * cout + group * og, ldc: cout, pool: pool)
            }
        }
    }

    /// Whether a convolution runs as Winograd F(2x2, 3x3) (pk_conv2d_winograd3x3_nhwc): a 3x3 kernel, stride and
    /// dilation 1, one group, one zero of padding on every side, and an image of at least
    /// `ConvolutionTuning.winogradMinimumPixels` pixels (small images have few tiles to spread the per-call weight
    /// transform over; the bound is a choice, not yet tuned: measured so far only on the VQGANs' 64x64-256x256).
    static func takesWinograd(_ g: pk_conv_geometry, groups: Int) -> Bool {
        g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1
            && g.pad_top == 1 && g.pad_left == 1 && g.out_h == g.in_h && g.out_w == g.in_w && g.pad_mode == PK_PAD_ZEROS
            && groups == 1 && g.out_h * g.out_w >= ConvolutionTuning.winogradMinimumPixels
    }

    /// A 3x3 convolution by Winograd F(2x2, 3x3): the kernel transformed once per call, then the 2x2 output tiles
    /// split evenly between threads (a tile's result does not depend on the split: the same bits on any thread count).
    func winograd(_ xp: UnsafePointer<Float>, _ kp: UnsafePointer<Float>, _ g: pk_conv_geometry, cin: Int, cout: Int,
                  beta: Float, y: UnsafeMutablePointer<Float>) {
        let u = UnsafeMutablePointer<Float>.allocate(capacity: pk_winograd3x3_weights_floats(cin, cout))
        defer { u.deallocate() }
        pk_winograd3x3_weights(kp, cin, cout, u)
        let tiles = g.batch * ((g.in_h + 1) / 2) * ((g.in_w + 1) / 2)
        let parts = max(1, min(pool.threadCount, tiles))
        let partFloats = (pk_conv2d_winograd3x3_workspace_floats(cin, cout) + 15) / 16 * 16
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: partFloats * parts)
        defer { workspace.deallocate() }
        pool.parallelFor(parts) { index in
            pk_conv2d_winograd3x3_nhwc(xp, g.in_h, g.in_w, cin, u, cout, tiles * index / parts, tiles * (index + 1) / parts,
                                       beta, y, workspace + index * partFloats)
        }
    }

    /// General convolution without a column buffer: the GEMM's packing reads each tap's channels straight from x
    /// (pk_conv2d_gemm_nhwc). The output is split between threads as `BuiltinGEMM.sgemm` splits C, and gives the same bits as
    /// im2col + the built-in GEMM on any thread count.
    private func implicitGEMM(_ xp: UnsafePointer<Float>, _ kp: UnsafePointer<Float>, _ gp: UnsafePointer<pk_conv_geometry>,
                              cin: Int, cout: Int, groups: Int, beta: Float, y: UnsafeMutablePointer<Float>) {
        let g = gp.pointee
        let cg = cin / groups, og = cout / groups
        let pixels = g.batch * g.out_h * g.out_w
        let parts = GEMMPartition(m: pixels, n: og, k: g.kernel_h * g.kernel_w * cg, threads: pool.threadCount)
        let partFloats = (pk_conv2d_gemm_workspace_floats(min(pixels, parts.rowsPerPart), min(og, parts.columnsPerPart),
                                                          g.kernel_h * g.kernel_w * cg, cg) + 15) / 16 * 16
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: partFloats * parts.count)
        defer { workspace.deallocate() }
        for group in 0..<groups {
            pool.parallelFor(parts.count) { index in
                let (rows, cols) = parts.part(index)
                pk_conv2d_gemm_nhwc(xp, cin, group * cg, cg, gp, rows.lowerBound, rows.upperBound,
                                    kp + group * og + cols.lowerBound, cout, cols.count, beta,
                                    y + rows.lowerBound * cout + group * og + cols.lowerBound, cout,
                                    workspace + index * partFloats)
            }
        }
    }

    /// Gradients of `conv2d(x, w, ...)` given the gradient `dy` of its output (same arguments as the forward).
    /// Depthwise kernels take a direct per-channel path (DepthwiseConv2dBackward.swift). For every other shape the
    /// kernel gradient is an implicit GEMM (col^T dy with col read straight from x), and the input gradient of a
    /// stride-1, zero-padded convolution is itself a convolution (of dy with the flipped, transposed kernel).
    /// Other geometries, and the reference backend, lower with im2col and scatter back with col2im. im2col runs
    /// over row ranges in parallel; col2im adds overlapping patches, so its threads take whole images (disjoint
    /// parts of dx), each added in the serial order: the same bits on any thread count.
    public func conv2dBackward(_ x: Tensor, _ w: Conv2dWeights, outputGradient dy: Tensor, stride: Int = 1,
                               padding: Padding2d = .zero, paddingMode: PaddingMode = .zeros,
                               dilation: Int = 1) -> Conv2dGradients {
        precondition(w.bf16 == nil, "conv2dBackward: bfloat16-packed kernels are for inference; train with float32 weights")
        if w.isDepthwise {
            return depthwiseConv2dBackward(x, w, outputGradient: dy, stride: stride, padding: padding,
                                           paddingMode: paddingMode, dilation: dilation)
        }
        let g = convGeometry(x, w, stride: stride, padding: padding, paddingMode: paddingMode, dilation: dilation)
        let cin = w.inChannels, cout = w.outChannels, groups = w.groups
        precondition(dy.shape == [g.batch, g.out_h, g.out_w, cout],
                     "conv2dBackward: output gradient has shape \(dy.shape), the output has [\(g.batch), \(g.out_h), \(g.out_w), \(cout)]")
        // dx[iy] = sum over ky of dy[iy + top - ky] K[ky]: a convolution of dy padded by kh - 1 - top above and
        // by what makes its output in_h tall below (the same on the columns), with the kernel flipped.
        let gradientPadding = [g.kernel_h - 1 - padding.top, g.in_h - g.out_h + padding.top,
                               g.kernel_w - 1 - padding.left, g.in_w - g.out_w + padding.left]
        let inputGradientIsConvolution = usesImplicitGEMM && stride == 1 && dilation == 1 && paddingMode == .zeros
            && gradientPadding.allSatisfy { $0 >= 0 }
        let cg = cin / groups, og = cout / groups
        let k = g.kernel_h * g.kernel_w * cg
        let rows = g.batch * g.out_h
        let chunkRows = max(1, min(rows, ConvolutionTuning.columnBudget / max(1, g.out_w * k)))
        var dx = inputGradientIsConvolution
            ? conv2d(dy, w.flippedForInputGradient(), padding: Padding2d(top: gradientPadding[0], bottom: gradientPadding[1],
                                                                         left: gradientPadding[2], right: gradientPadding[3]))
            : Tensor(zeros: x.shape)
        // The kernel gradient reads the lowered input straight from x, as the forward does.
        let kernelGradientIsImplicit = usesImplicitGEMM
        var dk = kernelGradientIsImplicit ? implicitKernelGradient(x, dy, g, cin: cin, cout: cout, groups: groups)
                                          : Tensor(zeros: w.kernel.shape)
        let db: Tensor? = w.bias == nil ? nil : sumRows(dy.reshaped([-1, cout]))
        if kernelGradientIsImplicit && inputGradientIsConvolution {
            return Conv2dGradients(input: dx, kernel: dk, bias: db)
        }
        let col = UnsafeMutablePointer<Float>.allocate(capacity: kernelGradientIsImplicit ? 1 : chunkRows * g.out_w * k)
        let dcol = UnsafeMutablePointer<Float>.allocate(capacity: inputGradientIsConvolution ? 1 : chunkRows * g.out_w * k)
        defer { col.deallocate(); dcol.deallocate() }
        x.withFloats { xs in dy.withFloats { dys in w.kernel.withFloats { ks in
            dx.withMutableFloats { dxs in dk.withMutableFloats { dks in
                let xp = xs.baseAddress!, dyp = dys.baseAddress!, kp = ks.baseAddress!
                for start in Swift.stride(from: 0, to: rows, by: chunkRows) {
                    let end = min(rows, start + chunkRows)
                    let m = (end - start) * g.out_w
                    for group in 0..<groups {
                        let dyGroup = dyp + start * g.out_w * cout + group * og
                        if !kernelGradientIsImplicit {
                            withUnsafePointer(to: g) { gp in
                                pool.parallelChunks(end - start) { r in
                                    pk_im2col_nhwc(xp, cin, group * cg, cg, gp, start + r.lowerBound, start + r.upperBound,
                                                   col + r.lowerBound * g.out_w * k)
                                }
                            }
                            // dK_g[k, o] += sum over pixels of col[p, k] * dy[p, o]
                            gemm.sgemm(.transposed, .none, m: k, n: og, k: m, alpha: 1, a: col, lda: k,
                                       b: dyGroup, ldb: cout, beta: 1, c: dks.baseAddress! + group * og, ldc: cout, pool: pool)
                        }
                        if inputGradientIsConvolution { continue }
                        // dcol[p, k] = sum over o of dy[p, o] * K_g[k, o]; then scatter back onto the input.
                        gemm.sgemm(.none, .transposed, m: m, n: k, k: og, alpha: 1, a: dyGroup, lda: cout,
                                   b: kp + group * og, ldb: cout, beta: 0, c: dcol, ldc: k, pool: pool)
                        let firstImage = start / g.out_h, dxp = dxs.baseAddress!
                        withUnsafePointer(to: g) { gp in
                            pool.parallelFor((end - 1) / g.out_h - firstImage + 1) { i in
                                let imageStart = max(start, (firstImage + i) * g.out_h)
                                let imageEnd = min(end, (firstImage + i + 1) * g.out_h)
                                pk_col2im_nhwc_add(dcol + (imageStart - start) * g.out_w * k, cin, group * cg, cg, gp,
                                                   imageStart, imageEnd, dxp)
                            }
                        }
                    }
                }
            }}
        }}}
        return Conv2dGradients(input: dx, kernel: dk, bias: db)
    }

    /// The kernel gradient `[kH, kW, Cin / groups, Cout]` without a column buffer
    /// (pk_conv2d_gemm_kernel_gradient_nhwc): per group, dK_g = col_g^T dy_g over every output pixel, the product
    /// split between threads by rows and columns of dK, each part summing over all pixels in the same order.
    private func implicitKernelGradient(_ x: Tensor, _ dy: Tensor, _ geometry: pk_conv_geometry,
                                        cin: Int, cout: Int, groups: Int) -> Tensor {
        let cg = cin / groups, og = cout / groups
        let depth = geometry.kernel_h * geometry.kernel_w * cg
        let pixels = geometry.batch * geometry.out_h * geometry.out_w
        var dk = Tensor(uninitialized: [geometry.kernel_h, geometry.kernel_w, cg, cout])
        let parts = GEMMPartition(m: depth, n: og, k: pixels, threads: pool.threadCount)
        let partFloats = (pk_conv2d_gemm_workspace_floats(min(depth, parts.rowsPerPart), min(og, parts.columnsPerPart),
                                                          pixels, cg) + 15) / 16 * 16
        let workspace = UnsafeMutablePointer<Float>.allocate(capacity: partFloats * parts.count)
        defer { workspace.deallocate() }
        x.withFloats { xs in dy.withFloats { dys in dk.withMutableFloats { dks in withUnsafePointer(to: geometry) { gp in
            let xp = xs.baseAddress!, dyp = dys.baseAddress!, dkp = dks.baseAddress!
            for group in 0..<groups {
                pool.parallelFor(parts.count) { index in
                    let (rows, cols) = parts.part(index)
                    pk_conv2d_gemm_kernel_gradient_nhwc(xp, cin, group * cg, cg, gp, rows.lowerBound, rows.upperBound,
                                                        dyp + group * og + cols.lowerBound, cout, cols.count, 0,
                                                        dkp + rows.lowerBound * cout + group * og + cols.lowerBound, cout,
                                                        workspace + index * partFloats)
                }
            }
        }}}}
        return dk
    }

    /// PyTorch `F.conv_transpose2d` on channels-last input `[B, H, W, Cin]`, giving `[B, Hout, Wout, Cout]` with
    /// `Hout = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + outputPadding + 1`.
    public func convTranspose2d(_ x: Tensor, _ w: ConvTranspose2dWeights, stride: Int = 1, padding: Int = 0,
                                outputPadding: Int = 0, dilation: Int = 1) -> Tensor {
        precondition(x.rank == 4 && x.dtype == .float32, "convTranspose2d: expected float32 [B, H, W, C] input, got \(x)")
        precondition(x.shape[3] == w.inChannels, "convTranspose2d: input has \(x.shape[3]) channels, the weights expect \(w.inChannels)")
        precondition(stride >= 1 && dilation >= 1 && padding >= 0, "convTranspose2d: bad stride \(stride), dilation \(dilation) or padding \(padding)")
        precondition(outputPadding >= 0 && outputPadding < max(stride, dilation),
                     "convTranspose2d: output padding \(outputPadding) must be smaller than the stride or the dilation")
        let (batch, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let kh = w.kernelHeight, kw = w.kernelWidth
        let outH = (h - 1) * stride - 2 * padding + dilation * (kh - 1) + outputPadding + 1
        let outW = (wd - 1) * stride - 2 * padding + dilation * (kw - 1) + outputPadding + 1
        precondition(outH >= 1 && outW >= 1, "convTranspose2d: output would be \(outH)x\(outW)")
        let cout = w.outChannels, groups = w.groups
        let cg = cin / groups, og = cout / groups
        let patch = kh * kw * og  // GEMM columns per input pixel and group
        var y = Tensor(uninitialized: [batch, outH, outW, cout])
        let imageColumns = h * wd * patch
        let chunkImages = max(1, min(batch, ConvolutionTuning.columnBudget / max(1, imageColumns)))
        let col = UnsafeMutablePointer<Float>.allocate(capacity: chunkImages * imageColumns)
        defer { col.deallocate() }
        x.withFloats { xs in w.kernel.withFloats { ks in y.withMutableFloats { ys in withOptionalFloats(w.bias) { bp in
            for b0 in Swift.stride(from: 0, to: batch, by: chunkImages) {
                let nb = min(batch, b0 + chunkImages) - b0
                var geometry = pk_conv_geometry(batch: nb, in_h: h, in_w: wd, out_h: outH, out_w: outW,
                                                kernel_h: kh, kernel_w: kw, stride_h: stride, stride_w: stride,
                                                dilation_h: dilation, dilation_w: dilation,
                                                pad_top: padding, pad_left: padding, pad_mode: PK_PAD_ZEROS)
                let yChunk = ys.baseAddress! + b0 * outH * outW * cout
                for group in 0..<groups {
                    // col[pixel, (ky, kx, o)] = sum over input channels of x[pixel, c] * W[c, ky, kx, o]
                    gemm.sgemm(.none, .none, m: nb * h * wd, n: patch, k: cg, alpha: 1,
                               a: xs.baseAddress! + b0 * h * wd * cin + group * cg, lda: cin,
                               b: ks.baseAddress! + group * cg * patch, ldb: patch, beta: 0, c: col, ldc: patch, pool: pool)
                    withUnsafePointer(to: &geometry) { gp in
                        pool.parallelChunks(nb * outH) { r in
                            pk_col2im_transposed_nhwc(col, og, bp, gp, cout, group * og, r.lowerBound, r.upperBound, yChunk)
                        }
                    }
                }
            }
        }}}}
        return y
    }

    // MARK: Helpers

    private func convGeometry(_ x: Tensor, _ w: Conv2dWeights, stride: Int, padding: Padding2d,
                              paddingMode: PaddingMode, dilation: Int) -> pk_conv_geometry {
        precondition(x.rank == 4 && x.dtype == .float32, "conv2d: expected float32 [B, H, W, C] input, got \(x)")
        precondition(x.shape[3] == w.inChannels, "conv2d: input has \(x.shape[3]) channels, the weights expect \(w.inChannels)")
        precondition(stride >= 1 && dilation >= 1, "conv2d: stride \(stride) and dilation \(dilation) must be at least 1")
        let (batch, h, wd) = (x.shape[0], x.shape[1], x.shape[2])
        if paddingMode == .reflect {
            precondition(padding.top < h && padding.bottom < h && padding.left < wd && padding.right < wd,
                         "conv2d: reflection padding \(padding) must be smaller than the \(h)x\(wd) input")
        }
        let outH = (h + padding.top + padding.bottom - dilation * (w.kernelHeight - 1) - 1) / stride + 1
        let outW = (wd + padding.left + padding.right - dilation * (w.kernelWidth - 1) - 1) / stride + 1
        precondition(h + padding.top + padding.bottom >= dilation * (w.kernelHeight - 1) + 1 &&
                     wd + padding.left + padding.right >= dilation * (w.kernelWidth - 1) + 1,
                     "conv2d: the \(w.kernelHeight)x\(w.kernelWidth) kernel is larger than the padded \(h)x\(wd) input")
        return pk_conv_geometry(batch: batch, in_h: h, in_w: wd, out_h: outH, out_w: outW,
                                kernel_h: w.kernelHeight, kernel_w: w.kernelWidth, stride_h: stride, stride_w: stride,
                                dilation_h: dilation, dilation_w: dilation, pad_top: padding.top, pad_left: padding.left,
                                pad_mode: paddingMode.kernelValue)
    }

    /// Writes `bias` into every row of `y` ([rows, channels]) and returns the GEMM beta that keeps it (1),
    /// or 0 without a bias (the GEMM then overwrites the uninitialized output).
    func fillWithBias(_ y: UnsafeMutablePointer<Float>, rows: Int, channels: Int, bias: UnsafePointer<Float>?) -> Float {
        guard let bias else { return 0 }
        pool.parallelChunks(rows, minChunk: 64) { r in
            for row in r { (y + row * channels).update(from: bias, count: channels) }
        }
        return 1
    }

    /// Calls `body` with the elements of an optional float32 tensor (nil when there is none).
    func withOptionalFloats<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let t else { return body(nil) }
        return t.withFloats { body($0.baseAddress) }
    }

    /// Column sums of a [rows, columns] float32 matrix (the bias gradient), accumulated in Double.
    func sumRows(_ m: Tensor) -> Tensor {
        let (rows, cols) = (m.shape[0], m.shape[1])
        var acc = [Double](repeating: 0, count: cols)
        m.withFloats { p in
            for r in 0..<rows { for c in 0..<cols { acc[c] += Double(p[r * cols + c]) } }
        }
        return Tensor(acc.map { Float($0) }, shape: [cols])
    }
}
