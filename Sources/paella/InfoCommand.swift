import ArgumentParser
import Foundation
import Paella
import PaellaCore
import PaellaModels

/// `paella info`: what this machine gives Paella (BLAS backend, CPU features, threads) and, with `--model`, what a
/// model folder holds.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the GEMM backend, the CPU features in use, the thread count and what a model folder holds.")

    @Option(help: "A model folder to describe (made by `paella convert` or `paella download v1`).")
    var model: String?

    @Flag(help: "With --model: read every weight file, check it against the SHA-256 that model.json records (done on every open for folders up to 4 MB) and check that every weight is a finite number.")
    var verify = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if verify && model == nil { throw ValidationError("--verify checks a model folder: give it with --model.") }
    }

    func run() throws {
        try reportingErrors {
            let ctx = try compute.makeCompute()
            var rows: [(String, String)] = [
                ("paella", PaellaVersion.string),
                ("threads", "\(ctx.pool.threadCount) (cores available: \(ThreadPool.coreCount))"),
                ("gemm backend", ctx.gemm.name),
                ("gemm details", ctx.gemm.details),
                ("cpu features", CPUInfo.summary),
                ("mpi", Self.mpiSummary(ProcessInfo.processInfo.environment)),
            ]
            if let warning = (ctx.gemm as? BLASLibrary)?.warning { rows.append(("gemm warning", warning)) }
            if let model {
                let folder = try ModelFolder(path: model)
                rows += try Self.describe(folder)
                if verify {
                    rows.append(("checksums", try Self.verification(folder)))
                    rows.append(("weight values", "all \(formatCount(try folder.checkWeightValues())) finite, none bfloat16 read as float16"))
                }
            }
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows {
                print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
            }
        }
    }

    /// Whether Open MPI can be loaded (training runs data-parallel under `mpirun` or `srun`), and whether this
    /// process was started by such a launcher.
    static func mpiSummary(_ environment: [String: String]) -> String {
        let launch = MPILaunch.detect(environment).map { "started as one of \($0.size) processes (\($0.variable))" }
            ?? "not started by an MPI launcher"
        do {
            let library = try MPILibrary.load(environment)
            return "\(library.version) (\(library.path)); \(launch)"
        } catch MPISetupError.notFound {
            return "not found (no libmpi.so.40); training runs as one process; \(launch)"
        } catch {
            return "unusable: \(error)"
        }
    }

    /// Reads every weight file of `folder` against model.json's checksums (a mismatch throws, naming the file).
    static func verification(_ folder: ModelFolder) throws -> String {
        let checked = try folder.verifyChecksums()
        let unrecorded = folder.manifest.weightFiles.filter { $0.sha256 == nil }.map(\.role)
        let verified = checked.isEmpty ? "none verified" : "SHA-256 verified for " + checked.joined(separator: ", ")
        return unrecorded.isEmpty ? verified
            : verified + "; none recorded for " + unrecorded.joined(separator: ", ") + " (written before checksums were recorded)"
    }

    /// Rows for a model folder: name, each component's file, dtype, parameters and size, the towers, the defaults.
    static func describe(_ folder: ModelFolder) throws -> [(String, String)] {
        let m = folder.manifest
        var rows: [(String, String)] = [("model", "\(m.name) (\(folder.path), format \(m.format))")]
        if let description = m.description { rows.append(("description", description)) }
        for c in try folder.storedComponents() {
            rows.append((c.role, "\(c.file): \(formatCount(c.parameters)) parameters in \(c.tensors) tensors, "
                         + "\(c.dtype), \(formatBytes(c.bytes)) on disk"))
        }
        let d = m.denoiser.config, v = m.vqgan.config, clip = m.clip.config
        rows.append(("denoiser shape", "\(d.numLabels) labels, c_hidden \(d.cHidden), c_clip \(d.cClip), "
                     + "levels down \(d.downLevels) up \(d.upLevels)"))
        rows.append(("vqgan shape", "f\(v.downsamplingFactor), codebook \(v.nEmbed) x \(v.embedDim)"))
        rows.append(("clip towers", m.clip.towers.joined(separator: ", ")
                     + " (text width \(clip.text.width), \(clip.text.layers) layers; embedding \(clip.embedDim))"
                     + (folder.hasVisionTower ? "" : "; `paella vary` needs --with-vision")))
        rows.append(("tokenizer", m.tokenizer))
        let defaults = m.defaults
        rows.append(("image size", "\(defaults.imageSize) x \(defaults.imageSize) pixels "
                     + "(\(defaults.imageSize / v.downsamplingFactor) x \(defaults.imageSize / v.downsamplingFactor) tokens)"))
        rows.append(("defaults", "per mode:"))
        let modes: [(String, SamplingSettings)] = [("generate", defaults.generate), ("interpolate", defaults.interpolate),
                                               ("compose", defaults.compose), ("inpaint", defaults.inpaint),
                                               ("outpaint", defaults.outpaint), ("edit", defaults.edit), ("vary", defaults.vary)]
        for (mode, s) in modes {
            var text = "\(s.steps) steps, guidance \(s.guidanceScale), temperature \(s.temperatureRange.map { "\($0)" }.joined(separator: "->")), "
                + (s.typicalFiltering ? "typical mass \(s.typicalMass)" : "no typical filtering") + ", renoise \(s.renoiseMode.rawValue)"
            if mode == "edit" { text += ", strength \(defaults.editStrength)" }
            rows.append(("  " + mode, text))
        }
        return rows
    }
}
