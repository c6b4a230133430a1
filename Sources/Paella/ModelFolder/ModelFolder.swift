// A model folder: model.json + one safetensors file per component + the tokenizer vocabulary
// (docs/model-folder.md). Reading checks the manifest and that every file it names is there; the weights are
// memory-mapped and checked key by key when a component is loaded.
import Foundation
import PaellaCore
import PaellaIO
import PaellaModels

/// A problem with a model folder, as one sentence naming the file and what to do.
public enum ModelFolderError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String)
    case notAFolder(path: String)
    case missingManifest(path: String)
    case invalidManifest(path: String, reason: String)
    case unsupportedFormat(path: String, format: Int)
    /// Components whose configurations do not fit together (before anything is written).
    case inconsistent(reason: String)
    /// A configuration file given to `paella convert` that cannot be read.
    case badConfigFile(path: String, reason: String)
    case missingFile(path: String, role: String)
    case noVisionTower(path: String)
    /// A file of the folder that is far larger than its kind ever is (read whole, it could exhaust memory).
    case tooLarge(path: String, bytes: Int, limit: Int, what: String)
    /// A weights file whose SHA-256 is not the one model.json records: damaged (a bit flip, a cut) or replaced.
    case checksumMismatch(path: String, expected: String, found: String)
    /// A component's weights file does not hold the tensors its configuration in model.json describes.
    case weightsDisagree(path: String, component: String, detail: String)
    /// A checkpoint given to a conversion that does not exist or cannot be read.
    case missingCheckpoint(path: String, role: String)
    /// A checkpoint given to a conversion that its reader refused, with the reader's sentence (which did not
    /// name the file).
    case unusableCheckpoint(path: String, role: String, reason: String)
    /// The output of a write exists and overwriting was not asked for.
    case outputExists(path: String)
    case writeFailed(path: String, reason: String)
    /// Weights that hold NaN or infinite values (damaged, or stored in another dtype than their header says):
    /// `tensors` names the first few, each with its count.
    case nonFiniteWeights(path: String, tensors: [String], total: Int)
    /// A float16 matrix whose values all look like bfloat16 bits read as float16 (see `ModelFolder.looksLikeBFloat16`).
    case bfloat16StoredAsFloat16(path: String, tensor: String)

    public var description: String {
        let remake = "make the folder again with `paella convert` (or `paella download v1`)"
        switch self {
        case .notFound(let path):
            return "The model folder \(path) does not exist; \(remake.replacingOccurrences(of: "make the folder again", with: "make one"))."
        case .notAFolder(let path):
            return "\(path) is not a folder; pass a model folder made by `paella convert` or `paella download v1`."
        case .missingManifest(let path):
            return "\(path) has no \(ModelManifest.fileName), so it is not a Paella model folder; \(remake)."
        case .invalidManifest(let path, let reason):
            return "\(path) \(reason); fix it or \(remake)."
        case .unsupportedFormat(let path, let format):
            return "\(path) has format \(format), but this version of Paella reads format \(ModelManifest.currentFormat); "
                + (format > ModelManifest.currentFormat ? "update Paella or " : "") + "\(remake)."
        case .inconsistent(let reason):
            return "These components do not make one model: the manifest \(reason); check the configurations."
        case .badConfigFile(let path, let reason):
            return "\(path) \(reason); pass an upstream-style JSON configuration."
        case .missingFile(let path, let role):
            return "\(path), the \(role) named in \(ModelManifest.fileName), does not exist; \(remake)."
        case let .checksumMismatch(path, expected, found):
            return "\(path) has the SHA-256 \(found), not the \(expected) that \(ModelManifest.fileName) records, so it "
                + "was damaged or replaced since the folder was written; \(remake)."
        case let .tooLarge(path, bytes, limit, what):
            return "\(path) is \(formatBytes(bytes)), more than the \(formatBytes(limit)) \(what) may have; \(remake)."
        case .weightsDisagree(let path, let component, let detail):
            return "\(path) does not hold the weights that the \(component) config in \(ModelManifest.fileName) describes: "
                + "\(detail); correct the config to match the weights or \(remake)."
        case .noVisionTower(let path):
            return "The model folder \(path) has no CLIP vision tower; rerun paella convert with --with-vision."
        case .missingCheckpoint(let path, let role):
            return "The \(role) checkpoint \(path) does not exist or cannot be read; check the path "
                + "(`paella download v1 --no-convert` fetches the released files)."
        case let .unusableCheckpoint(path, role, reason):
            let sentence = reason.hasSuffix(".") ? String(reason.dropLast()) : reason
            return "The \(role) checkpoint \(path) cannot be used: " + sentence.prefix(1).lowercased() + sentence.dropFirst() + "."
        case .outputExists(let path):
            return "\(path) already exists; choose another output folder or pass --force to replace it."
        case let .nonFiniteWeights(path, tensors, total):
            let named = tensors.joined(separator: ", ") + (total > tensors.count ? " and \(total - tensors.count) more tensors" : "")
            return "\(path) holds weights that are not finite numbers (\(named)), so the file is damaged or its data is "
                + "not in the dtype its header gives; convert the original checkpoint again."
        case let .bfloat16StoredAsFloat16(path, tensor):
            return "\(path) labels \(tensor) float16, but its values look like bfloat16 data (every one between 0.5 and 2 in "
                + "size, as bfloat16 weights read as float16 come out); convert the original checkpoint again."
        case .writeFailed(let path, let reason):
            return "Writing the model folder \(path) failed (\(reason)); nothing was left behind, fix the cause and try again."
        }
    }
}

/// A model folder on disk, its manifest read and checked. Loading a component maps its file and checks every
/// key and shape against the manifest's configuration.
public struct ModelFolder: Sendable {
    /// Tensors by checkpoint key, in the order they are written.
    public typealias NamedTensors = [(name: String, tensor: Tensor)]

    public let path: String
    public let manifest: ModelManifest

    /// Reads and checks `path/model.json` and that every file it names exists.
    public init(path: String) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw ModelFolderError.notFound(path: path)
        }
        guard isFolder.boolValue else { throw ModelFolderError.notAFolder(path: path) }
        let manifestPath = (path as NSString).appendingPathComponent(ModelManifest.fileName)
        // Sizes first: a manifest is a few kilobytes and CLIP's vocabulary 1.4 MB, and both are read whole.
        try Self.checkSize(manifestPath, limit: ModelManifest.maxBytes, what: "a manifest")
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw ModelFolderError.missingManifest(path: path)
        }
        let manifest = try ModelManifest.decode(data, path: manifestPath)
        if let problem = manifest.problems().first {
            throw ModelFolderError.invalidManifest(path: manifestPath, reason: problem)
        }
        self.path = path
        self.manifest = manifest
        for (role, file) in [("denoiser weights", manifest.denoiser.file), ("VQGAN weights", manifest.vqgan.file),
                             ("CLIP weights", manifest.clip.file), ("tokenizer vocabulary", manifest.tokenizer)] {
            let full = self.file(file)
            guard FileManager.default.isReadableFile(atPath: full) else { throw ModelFolderError.missingFile(path: full, role: role) }
        }
        try Self.checkSize(file(manifest.tokenizer), limit: CLIPTokenizer.maxVocabularyFileBytes, what: "a tokenizer vocabulary")
        try checkWeights()
        if weightBytes <= Self.verifiedOnOpenBytes { try verifyChecksums() }
    }

    /// Folders whose weights add up to at most this many bytes have their checksums verified every time they are
    /// opened; larger ones (the bundled paella-small is 22 MB, v1 several GB) by `paella info --verify`. Hashing runs
    /// at about 4 MB/s in a debug build (hundreds in a release build), so this keeps every open under a second.
    /// A truncated file is refused on every open regardless: its safetensors header claims bytes it lacks.
    public static let verifiedOnOpenBytes = 4_000_000

    /// The bytes of the three weight files together.
    public var weightBytes: Int {
        manifest.weightFiles.reduce(0) { total, entry in
            total + ((try? FileManager.default.attributesOfItem(atPath: file(entry.file)))?[.size] as? Int ?? 0)
        }
    }

    /// Compares each weight file with the SHA-256 model.json records for it, reading every byte; returns the roles
    /// checked (a folder written before checksums were recorded has none to check).
    @discardableResult
    public func verifyChecksums() throws -> [String] {
        var checked: [String] = []
        for (role, name, expected) in manifest.weightFiles {
            guard let expected else { continue }
            let found = try SHA256.hex(ofFile: file(name))
            guard found == expected else { throw ModelFolderError.checksumMismatch(path: file(name), expected: expected, found: found) }
            checked.append(role)
        }
        return checked
    }

    /// Throws `tooLarge` when the file at `path` is larger than `limit` bytes (a missing file passes: the caller
    /// reports it as missing).
    static func checkSize(_ path: String, limit: Int, what: String) throws {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > limit else { return }
        throw ModelFolderError.tooLarge(path: path, bytes: size, limit: limit, what: what)
    }

    /// Compares each component's safetensors header with the tensors its configuration needs (every one present
    /// with the configured shape, none left over), so a config that disagrees with its weights is refused when the
    /// folder is opened, before any layer is built. Only the headers are read; the data stays mapped, untouched.
    func checkWeights() throws {
        let m = manifest
        let hasVision = hasVisionTower
        try Self.compare(file(m.denoiser.file), component: "denoiser",
                         needs: try Denoiser.parameterShapes(m.denoiser.config), skipping: { _ in false })
        try Self.compare(file(m.vqgan.file), component: "vqgan",
                         needs: try VQGAN.parameterShapes(m.vqgan.config), skipping: VQGAN.isTrainingOnlyKey)
        // The vision tower's keys are needed only when the manifest says the file has it; `logit_scale` is
        // training-only (as `CLIPModel` loads).
        let clipShapes = try CLIPModel.parameterShapes(m.clip.config).filter { hasVision || !$0.name.hasPrefix("visual.") }
        try Self.compare(file(m.clip.file), component: "clip", needs: clipShapes,
                         skipping: { $0 == "logit_scale" || (!hasVision && $0.hasPrefix("visual.")) })
    }

    /// Throws `weightsDisagree` naming the first few tensors of `path` that are missing, misshapen or unexpected.
    static func compare(_ path: String, component: String, needs: [(name: String, shape: [Int])],
                        skipping: (String) -> Bool) throws {
        let stored = try SafeTensors(path: path)
        var problems: [String] = []
        var needed = Set<String>()
        for (name, shape) in needs {
            needed.insert(name)
            guard let found = stored[name] else {
                problems.append("it has no tensor \"\(name)\" (the config needs \(shape))")
                continue
            }
            if found.shape != shape {
                problems.append("\"\(name)\" is \(found.shape) where the config needs \(shape)")
            } else if !ModelManifest.storageDTypes.contains(found.dtype) {
                problems.append("\"\(name)\" is stored as \(found.dtype.rawValue), not as float32, float16 or bfloat16")
            }
        }
        for name in stored.names where !needed.contains(name) && !skipping(name) {
            problems.append("it holds \"\(name)\", which the config has no place for")
        }
        guard let first = problems.first else { return }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more tensors disagree)" : ""
        throw ModelFolderError.weightsDisagree(path: path, component: component, detail: first + more)
    }

    /// The full path of a file inside the folder.
    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// The denoiser, its weights widened to float32 where stored narrower (or packed as bfloat16 at `.bf16`).
    public func loadDenoiser(compute: Compute, precision: Precision = .fp32) throws -> Denoiser {
        try Denoiser(config: manifest.denoiser.config, path: file(manifest.denoiser.file), compute: compute, precision: precision)
    }

    public func loadVQGAN(compute: Compute, precision: Precision = .fp32) throws -> VQGAN {
        try VQGAN(contentsOf: file(manifest.vqgan.file), config: manifest.vqgan.config, compute: compute, precision: precision)
    }

    /// Whether the CLIP file holds the vision tower (needed for image variations).
    public var hasVisionTower: Bool { manifest.clip.towers.contains("vision") }

    /// The asked-for CLIP towers; asking for the vision tower of a folder converted without it throws
    /// `ModelFolderError.noVisionTower`.
    public func loadCLIP(towers: CLIPTowers, precision: Precision = .fp32) throws -> CLIPModel {
        if towers != .text && !hasVisionTower { throw ModelFolderError.noVisionTower(path: path) }
        return try CLIPModel(path: file(manifest.clip.file), config: manifest.clip.config, towers: towers, precision: precision)
    }

    public func loadTokenizer() throws -> CLIPTokenizer {
        try CLIPTokenizer(openCLIPVocabulary: file(manifest.tokenizer))
    }

    // MARK: What the folder holds

    /// One component's file as stored: tensor count, parameters, dtype and bytes on disk.
    public struct StoredComponent: Sendable, Equatable {
        public let role: String
        public let file: String
        public let dtype: String
        public let tensors: Int
        public let parameters: Int
        public let bytes: Int
    }

    /// Reads the headers of the component files (nothing else is read) and sums their contents.
    public func storedComponents() throws -> [StoredComponent] {
        try [("denoiser", manifest.denoiser.file, manifest.denoiser.dtype), ("vqgan", manifest.vqgan.file, manifest.vqgan.dtype),
             ("clip", manifest.clip.file, manifest.clip.dtype)].map { role, name, dtype in
            let full = file(name)
            let contents = try SafeTensors(path: full).tensors
            let bytes = (try? FileManager.default.attributesOfItem(atPath: full)[.size] as? Int) ?? 0
            return StoredComponent(role: role, file: name, dtype: dtype, tensors: contents.count,
                                   parameters: contents.reduce(0) { $0 + $1.tensor.count }, bytes: bytes)
        }
    }

    /// Reads every weight of the folder and throws for the first file whose values are damaged (`checkValues`);
    /// returns how many values were checked.
    @discardableResult
    public func checkWeightValues() throws -> Int {
        try manifest.weightFiles.reduce(0) { checked, entry in
            let path = file(entry.file)
            let tensors = try SafeTensors(path: path).tensors
            try Self.checkValues(tensors, path: path)
            return checked + tensors.reduce(0) { $0 + $1.tensor.count }
        }
    }

    /// Throws `nonFiniteWeights` when any of `tensors` (from the file at `path`) holds a NaN or an infinity, and
    /// `bfloat16StoredAsFloat16` for a float16 matrix that `looksLikeBFloat16`.
    public static func checkValues(_ tensors: NamedTensors, path: String) throws {
        let damaged = tensors.compactMap { named -> String? in
            let count = named.tensor.nonFiniteCount
            return count == 0 ? nil : "\(terminalSafe(named.name, maxLength: 80)): \(count) of \(named.tensor.count) values"
        }
        guard damaged.isEmpty else { throw ModelFolderError.nonFiniteWeights(path: path, tensors: Array(damaged.prefix(3)), total: damaged.count) }
        if let mislabelled = tensors.first(where: { looksLikeBFloat16($0.tensor) }) {
            throw ModelFolderError.bfloat16StoredAsFloat16(path: path, tensor: terminalSafe(mislabelled.name, maxLength: 80))
        }
    }

    /// Whether a float16 tensor holds bfloat16 bits. A bfloat16 weight of size 2^-13 to 1 has a biased exponent of
    /// 114 to 127, whose top five bits (01110 or 01111) land in float16's exponent field as 14 or 15: read as
    /// float16 it is between 0.5 and 2 in size. Trained matrices (rank 2 or more) are mostly far smaller than 0.5,
    /// so a matrix of at least 1,024 values with every non-zero one in that band is taken for bfloat16 data. Norm
    /// gains, which do sit near 1, are vectors and are not judged.
    public static func looksLikeBFloat16(_ t: Tensor) -> Bool {
        guard t.dtype == .float16, t.rank >= 2, t.count >= 1024 else { return false }
        return t.withUnsafeBufferPointer(as: UInt16.self) { bits in
            var nonZero = 0
            for b in bits where b & 0x7FFF != 0 {
                let exponent = (b >> 10) & 0x1F
                if exponent != 14 && exponent != 15 { return false }
                nonZero += 1
            }
            return nonZero >= 1024
        }
    }

    // MARK: Writing

    /// Writes a model folder at `path`: each component's tensors as safetensors in the dtype the manifest gives
    /// (tensors already in it are written as they are; others are converted, rounding to nearest even), the vocabulary
    /// file copied from `vocabulary`, and `model.json` with each weight file's SHA-256. Atomic: everything goes into a temporary sibling folder
    /// that is renamed into place at the end, so a failure leaves nothing behind and an existing folder is only
    /// replaced (with `overwrite`) by a complete new one.
    public static func write(to path: String, manifest original: ModelManifest, denoiser: NamedTensors, vqgan: NamedTensors,
                             clip: NamedTensors, vocabulary: String, overwrite: Bool = false, compute: Compute,
                             progress: (String) -> Void = { _ in }) throws {
        let manifestName = ModelManifest.fileName
        var manifest = original
        if let problem = manifest.problems().first {
            throw ModelFolderError.inconsistent(reason: problem)
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: path) && !overwrite { throw ModelFolderError.outputExists(path: path) }
        let parent = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let temporary = (parent as NSString).appendingPathComponent(".\(base).tmp-\(UUID().uuidString.prefix(8))")
        do {
            try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        } catch {
            throw ModelFolderError.writeFailed(path: path, reason: "cannot create \(temporary): \(error.localizedDescription)")
        }
        do {
            let parts: [(String, String, String, NamedTensors)] = [
                ("denoiser", manifest.denoiser.file, manifest.denoiser.dtype, denoiser),
                ("vqgan", manifest.vqgan.file, manifest.vqgan.dtype, vqgan),
                ("clip", manifest.clip.file, manifest.clip.dtype, clip)]
            for (role, file, dtypeName, tensors) in parts {
                guard let dtype = DType(rawValue: dtypeName) else { preconditionFailure("checked by problems()") }
                let stored = tensors.map { ($0.name, storageTensor($0.tensor, as: dtype, compute: compute)) }
                let bytes = stored.reduce(0) { $0 + $1.1.byteCount }
                progress("\(role): writing \(file) (\(stored.count) tensors, \(formatBytes(bytes)), \(dtypeName))")
                try SafeTensors.write(stored, metadata: ["format": "pt"],
                                      to: (temporary as NSString).appendingPathComponent(file))
            }
            guard let vocab = fm.contents(atPath: vocabulary) else {
                throw ModelFolderError.writeFailed(path: path, reason: "cannot read the vocabulary \(vocabulary)")
            }
            try AtomicFile.write(vocab, to: (temporary as NSString).appendingPathComponent(manifest.tokenizer))
            try manifest.recordChecksums(in: temporary)
            try AtomicFile.write(try manifest.encoded(), to: (temporary as NSString).appendingPathComponent(manifestName))
            try moveIntoPlace(temporary, path, parent: parent, base: base)
        } catch {
            try? fm.removeItem(atPath: temporary)
            if let e = error as? ModelFolderError { throw e }
            throw ModelFolderError.writeFailed(path: path, reason: "\(error)")
        }
    }

    /// Renames the finished `temporary` folder to `path`; an existing folder there is moved aside first and
    /// deleted only once the new one is in place (or moved back when the rename fails).
    private static func moveIntoPlace(_ temporary: String, _ path: String, parent: String, base: String) throws {
        let fm = FileManager.default
        var aside: String?
        if fm.fileExists(atPath: path) {
            let old = (parent as NSString).appendingPathComponent(".\(base).old-\(UUID().uuidString.prefix(8))")
            guard rename(path, old) == 0 else {
                throw ModelFolderError.writeFailed(path: path, reason: "cannot move the existing \(path) aside: \(String(cString: strerror(errno)))")
            }
            aside = old
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            if let aside { _ = rename(aside, path) }
            throw ModelFolderError.writeFailed(path: path, reason: "cannot rename \(temporary) to \(path): \(reason)")
        }
        if let aside { try? fm.removeItem(atPath: aside) }
    }

    /// `t` as stored in `dtype`: unchanged when it already is, else widened to float32 and rounded down.
    static func storageTensor(_ t: Tensor, as dtype: DType, compute: Compute) -> Tensor {
        if t.dtype == dtype { return t }
        let wide = t.dtype == .float32 ? t : t.toFloat32(using: compute)
        return dtype == .float32 ? wide : wide.converted(to: dtype, using: compute)
    }
}

/// 573,000,000
public func formatCount(_ n: Int) -> String {
    let digits = Array(String(n.magnitude))
    let groups = stride(from: digits.count, to: 0, by: -3).reversed().map { String(digits[max(0, $0 - 3) ..< $0]) }
    return (n < 0 ? "-" : "") + groups.joined(separator: ",")
}

/// "1.2 GB", "340.5 MB", "12.0 kB" (decimal units, as file managers show them).
public func formatBytes(_ n: Int) -> String {
    let units: [(Double, String)] = [(1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
    for (size, unit) in units where Double(n) >= size { return String(format: "%.1f", Double(n) / size) + " " + unit }
    return "\(n) bytes"
}
