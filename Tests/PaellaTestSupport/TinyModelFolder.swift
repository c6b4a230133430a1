import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels

extension Fixtures {
    /// A tiny model folder built from the fixture checkpoints (random weights), for end-to-end tests of the
    /// pipeline; built once per process and dtype in a temporary folder, and converted exactly as
    /// `paella convert` does (from the `.ckpt` and `.bin` fixtures).
    ///
    /// The fixture models were made independently, so their sizes do not meet: the denoiser fixture predicts more
    /// labels than the VQGAN fixture has codebook entries, and is conditioned on wider vectors than the CLIP
    /// fixture gives. The folder's denoiser is therefore `denoiser_v1_tiny` with `num_labels` = the VQGAN's
    /// `n_embed` and `c_clip` = CLIP's `embed_dim`; its weights are the fixture's, cropped (or tiled) to those
    /// shapes. Defaults: images of `imageSize` pixels = a token grid of `tinyTokenSide` x the VQGAN factor, few steps.
    public static func tinyModelFolder(dtype: DType = .float32, withVision: Bool = true) throws -> String {
        TinyModelFolders.lock.lock()
        defer { TinyModelFolders.lock.unlock() }
        let key = "\(dtype.rawValue)\(withVision ? "-vision" : "")"
        if let path = TinyModelFolders.built[key] { return path }
        let root = try TinyModelFolders.processDirectory()
        let path = (root as NSString).appendingPathComponent("tiny-\(key)")
        try? FileManager.default.removeItem(atPath: path)
        var conversion = try tinyModelConversion(output: path, denoiser: try tinyPipelineDenoiser(in: root))
        conversion.dtype = dtype
        conversion.withVision = withVision
        try conversion.run(compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        TinyModelFolders.built[key] = path
        return path
    }

    /// Token grid side of the tiny folder's default image: 8, rounded up to the denoiser's grid multiple.
    public static func tinyTokenSide(_ denoiser: DenoiserConfig) -> Int {
        let m = denoiser.sideMultiple
        return (8 + m - 1) / m * m
    }

    /// The fixture configurations, with the denoiser adapted to the VQGAN and CLIP fixtures (see `tinyModelFolder`).
    public static func tinyConfigs() throws -> (denoiser: DenoiserConfig, vqgan: VQGANConfig, clip: CLIPConfig) {
        let vqgan = try ModelConfigFile.vqgan(path("vqgan_tiny.json"))
        let clip = try ModelConfigFile.clip(path("clip_tiny.json"))
        var denoiser = try ModelConfigFile.denoiser(path("denoiser_v1_tiny.json"))
        denoiser.numLabels = vqgan.nEmbed
        denoiser.cClip = clip.embedDim
        return (denoiser, vqgan, clip)
    }

    /// The conversion `tinyModelFolder` runs (float32, no vision tower; change them before `run`).
    public static func tinyModelConversion(output: String, denoiser: String) throws -> ModelConversion {
        let configs = try tinyConfigs()
        let side = tinyTokenSide(configs.denoiser) * configs.vqgan.downsamplingFactor
        let fast = SamplingSettings(steps: 4, guidanceScale: 3)
        let defaults = PipelineDefaults(
            imageSize: side, generate: fast, interpolate: fast, compose: fast, inpaint: fast, outpaint: fast,
            edit: SamplingSettings(steps: 6, guidanceScale: 3, renoiseMode: .prev), editStrength: 0.5, vary: fast)
        var conversion = ModelConversion(denoiser: denoiser, vqgan: path("vqgan_tiny.ckpt"), clip: path("clip_tiny.bin"),
                                         output: output)
        conversion.name = "paella-tiny"
        conversion.description = "Tiny random-weight model built from the test fixtures"
        conversion.vocabulary = try CLIPTokenizer.locateVocabulary()
        conversion.denoiserConfig = configs.denoiser
        conversion.vqganConfig = configs.vqgan
        conversion.clipConfig = configs.clip
        conversion.defaults = defaults
        return conversion
    }

    /// Writes (once per process) `denoiser_v1_tiny.pt`'s weights reshaped to the adapted tiny configuration as a
    /// safetensors file in `directory` and returns its path.
    public static func tinyPipelineDenoiser(in directory: String) throws -> String {
        let out = (directory as NSString).appendingPathComponent("denoiser_tiny_pipeline.safetensors")
        if FileManager.default.fileExists(atPath: out) { return out }
        let expected = Dictionary(try Denoiser.parameterShapes(try tinyConfigs().denoiser).map { ($0.name, $0.shape) },
                                  uniquingKeysWith: { a, _ in a })
        let source = try PyTorchCheckpoint(path: path("denoiser_v1_tiny.pt")).tensors
        let adapted = source.map { name, tensor in
            (name, expected[name].map { tiled(tensor.toFloat32(), to: $0) } ?? tensor)
        }
        try SafeTensors.write(adapted, to: out)
        return out
    }

    /// `t` cropped or repeated along each axis to `shape` (element [i, j, ...] = t[i mod n0, j mod n1, ...]).
    static func tiled(_ t: Tensor, to shape: [Int]) -> Tensor {
        if t.shape == shape { return t }
        precondition(t.rank == shape.count, "tiled: \(t.shape) and \(shape) differ in rank")
        let source = t.floats
        var sourceStrides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) { sourceStrides[axis] = sourceStrides[axis + 1] * t.shape[axis + 1] }
        let count = shape.reduce(1, *)
        var values = [Float](repeating: 0, count: count)
        for flat in 0 ..< count {
            var rest = flat, offset = 0
            for axis in stride(from: shape.count - 1, through: 0, by: -1) {
                offset += (rest % shape[axis]) % t.shape[axis] * sourceStrides[axis]
                rest /= shape[axis]
            }
            values[flat] = source[offset]
        }
        return Tensor(values, shape: shape)
    }
}

/// The folders built in this process, under a per-process temporary folder (folders of finished processes are
/// removed when the next process starts building).
private enum TinyModelFolders {
    static let lock = NSLock()
    nonisolated(unsafe) static var built: [String: String] = [:]
    nonisolated(unsafe) static var directory: String?

    static func processDirectory() throws -> String {
        if let directory { return directory }
        let parent = NSTemporaryDirectory() + "paella-tiny-model-folders"
        let fm = FileManager.default
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        for entry in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] {
            if let pid = Int32(entry), pid != getpid(), kill(pid, 0) != 0 {
                try? fm.removeItem(atPath: (parent as NSString).appendingPathComponent(entry))
            }
        }
        let path = (parent as NSString).appendingPathComponent("\(getpid())")
        try? fm.removeItem(atPath: path)
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        directory = path
        return path
    }
}
