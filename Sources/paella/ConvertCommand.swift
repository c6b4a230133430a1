import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTraining

/// `paella convert`: the released checkpoints -> a model folder (docs/model-folder.md).
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Make a model folder from the released checkpoints (or others with the same keys).",
        discussion: """
            Loads each component strictly (every key and shape is checked against its configuration) before \
            anything is written, keeps only what inference needs (drops the VQGAN's loss.* entries, CLIP's \
            logit_scale and, without --with-vision, CLIP's vision tower) and writes safetensors files with the \
            upstream key names, the tokenizer vocabulary and model.json into the output folder, atomically. \
            Defaults are the Paella v1 presets; --denoiser-config, --vqgan-config and --clip-config read other \
            shapes from upstream-style JSON (DenoiseUNet arguments, a taming model.params block, an OpenCLIP \
            model config).
            """)

    @Option(help: "Folder holding the three released files (as `paella download v1 --no-convert` leaves them).")
    var from: String?

    @Option(help: "Denoiser checkpoint (model_600000.pt, or a safetensors file with the same keys).")
    var denoiser: String?

    @Flag(help: "Start a new model instead of converting a denoiser: upstream's initialisation for --denoiser-config (then `paella train denoiser --from-scratch`).")
    var newDenoiser = false

    @Option(help: "VQGAN checkpoint (vqgan.gumbelf8-sber.model.ckpt).")
    var vqgan: String?

    @Option(help: "OpenCLIP checkpoint (open_clip_pytorch_model.bin).")
    var clip: String?

    @Option(help: "The model folder to write.")
    var output: String

    @Option(help: "Stored weight type: f32, f16 or bf16 (weights are widened to float32 when loaded).")
    var dtype: String = "f32"

    @Flag(help: "Keep CLIP's vision tower (needed for `paella vary`).")
    var withVision = false

    @Option(help: "Model name written into model.json and images.")
    var name: String = "paella-v1"

    @Flag(help: "Replace an existing output folder.")
    var force = false

    @Option(help: "Denoiser configuration JSON (DenoiseUNet's arguments: num_labels, c_hidden, ...).")
    var denoiserConfig: String?

    @Option(help: "VQGAN configuration JSON (a taming/ruDALL-E model.params block with ddconfig).")
    var vqganConfig: String?

    @Option(help: "CLIP configuration JSON (an OpenCLIP model config with text_cfg and vision_cfg).")
    var clipConfig: String?

    @Option(help: "Sampling defaults JSON (the \"defaults\" object of a model.json).")
    var defaults: String?

    @Option(help: "OpenCLIP vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the one Paella finds.")
    var vocab: String?

    @Flag(help: "No progress lines.")
    var quiet = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if from == nil {
            let missing = [("--denoiser", newDenoiser ? "new" : denoiser), ("--vqgan", vqgan), ("--clip", clip)]
                .filter { $0.1 == nil }.map(\.0)
            if !missing.isEmpty {
                throw ValidationError("Give --from DIR or all of --denoiser, --vqgan and --clip (missing: \(missing.joined(separator: ", "))).")
            }
        }
        if newDenoiser && (denoiser != nil || denoiserConfig == nil) {
            throw ValidationError("--new-denoiser takes --denoiser-config and no --denoiser.")
        }
        _ = try storageDType(dtype)
    }

    func run() throws {
        let folder = try reportingErrors { try describingCheckpointErrors {
            var conversion = ModelConversion(downloadFolder: from ?? ".", output: output)
            if let denoiser { conversion.denoiser = denoiser }
            if let vqgan { conversion.vqgan = vqgan }
            if let clip { conversion.clip = clip }
            conversion.dtype = try storageDType(dtype)
            conversion.withVision = withVision
            conversion.name = name
            conversion.overwrite = force
            conversion.vocabulary = vocab
            if let denoiserConfig { conversion.denoiserConfig = try ModelConfigFile.denoiser(denoiserConfig) }
            var initialWeights: String?
            defer { if let initialWeights { try? FileManager.default.removeItem(atPath: initialWeights) } }
            if newDenoiser {
                let path = NSTemporaryDirectory() + "paella-new-denoiser-\(UUID().uuidString).safetensors"
                try SafeTensors.write(TrainableParameters.newDenoiser(conversion.denoiserConfig, seed: 0).named, to: path)
                initialWeights = path
                conversion.denoiser = path
            }
            if let vqganConfig { conversion.vqganConfig = try ModelConfigFile.vqgan(vqganConfig) }
            if let clipConfig { conversion.clipConfig = try ModelConfigFile.clip(clipConfig) }
            if let defaults { conversion.defaults = try ModelConfigFile.defaults(defaults) }
            return try conversion.run(compute: try compute.makeCompute()) { line in
                if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            }
        } }
        print(folder.path)
    }
}

/// `f32`, `f16`, `bf16` (or the full names) as a storage dtype.
func storageDType(_ text: String) throws -> DType {
    switch text.lowercased() {
    case "f32", "float32", "fp32": return .float32
    case "f16", "float16", "fp16", "half": return .float16
    case "bf16", "bfloat16": return .bfloat16
    default: throw ValidationError("--dtype must be f32, f16 or bf16, got '\(text)'.")
    }
}
