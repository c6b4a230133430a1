// libFuzzer entry point for every parser of Paella that reads outside bytes. One binary serves all targets (one
// link on a small machine); the environment variable PAELLA_FUZZ_TARGET names the one to run (scripts/fuzz.sh sets
// it). Each target calls the same entry point the project calls, on bytes held in memory, and touches what the
// parser returns (every tensor's first and last byte, every field) so that a view outside its buffer is a crash the
// address sanitizer reports. Errors thrown by the parsers are the expected outcome for most inputs and are ignored.
import Foundation
import NIOCore
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
@testable import PaellaServer
@testable import PaellaTraining

/// The fuzz targets by name; scripts/fuzz.sh and Fuzz/Corpus/ use the same names.
let targets: [String: (UnsafeRawBufferPointer) throws -> Void] = [
    "safetensors": fuzzSafeTensors,
    "zip": fuzzZip,
    "pickle": fuzzPickle,
    "checkpoint": fuzzCheckpoint,
    "png": fuzzImage,
    "jpeg": fuzzImage,
    "gzip": fuzzGzip,
    "tar": fuzzTar,
    "tokenizer": fuzzTokenizer,
    "config": fuzzConfig,
    "server-json": fuzzServerJSON,
    "server-multipart": fuzzServerMultipart,
]

let selected: (UnsafeRawBufferPointer) throws -> Void = {
    let name = ProcessInfo.processInfo.environment["PAELLA_FUZZ_TARGET"] ?? ""
    guard let target = targets[name] else {
        FileHandle.standardError.write(Data("Set PAELLA_FUZZ_TARGET to one of: \(targets.keys.sorted().joined(separator: ", ")).\n".utf8))
        exit(2)
    }
    return target
}()

/// With PAELLA_FUZZ_PRINT_ERRORS set, each input's error is printed: to check that seeds get past the first checks.
let printErrors = ProcessInfo.processInfo.environment["PAELLA_FUZZ_PRINT_ERRORS"] != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    do {
        try selected(UnsafeRawBufferPointer(start: data, count: size))
        if printErrors { print("accepted") }
    } catch {
        if printErrors { print(error) }
    }
    return 0
}

// MARK: Helpers

/// Reads the first and last byte of a tensor's elements, as a consumer would, so that a view past its buffer is caught.
func touch(_ tensor: Tensor) {
    guard tensor.byteCount > 0 else { return }
    let first = tensor.storage.pointer + tensor.byteOffset
    blackHole(first.load(as: UInt8.self) &+ first.load(fromByteOffset: tensor.byteCount - 1, as: UInt8.self))
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func mapped(_ bytes: UnsafeRawBufferPointer, _ name: String) -> MappedFile {
    MappedFile(copying: bytes, name: name)
}

// MARK: File formats

func fuzzSafeTensors(_ bytes: UnsafeRawBufferPointer) throws {
    let file = try SafeTensors(file: mapped(bytes, "fuzz.safetensors"))
    for name in file.names { touch(try file.tensor(name)) }
    blackHole(file.metadata)
}

func fuzzZip(_ bytes: UnsafeRawBufferPointer) throws {
    let archive = try ZipArchive(file: mapped(bytes, "fuzz.zip"))
    for entry in archive.entries {
        // Each entry on its own: a bad one must not hide the checks of the next.
        _ = try? archive.withBytes(of: entry) { blackHole($0.reduce(0, &+)) }
    }
}

func fuzzPickle(_ bytes: UnsafeRawBufferPointer) throws {
    // Every persistent id resolves to one small storage, so that tensor rebuilds are checked against its size.
    let storage = PickleStorage(typeName: "torch.FloatStorage", dtype: .float32, key: "0", location: "cpu", elementCount: 16,
                                storage: TensorStorage(byteCount: 64))
    let value = try Unpickler().load(bytes, persistentLoad: { _ in storage })
    visit(value)
}

func visit(_ value: PickleValue) {
    switch value {
    case .tensor(let t): touch(t)
    case .list(let items), .tuple(let items), .set(let items): items.forEach(visit)
    case .dict(let d): for (k, v) in d.entries { visit(k); visit(v) }
    default: blackHole(value)
    }
}

func fuzzCheckpoint(_ bytes: UnsafeRawBufferPointer) throws {
    let checkpoint = try PyTorchCheckpoint(file: mapped(bytes, "fuzz.pt"))
    for (_, tensor) in checkpoint.tensors { touch(tensor) }
}

func fuzzImage(_ bytes: UnsafeRawBufferPointer) throws {
    let decoded = try PixelImage.decode(bytes, source: "fuzz image", limits: .default)
    blackHole(decoded.image.rgb().pixels.last)
}

func fuzzGzip(_ bytes: UnsafeRawBufferPointer) throws {
    blackHole(try Gzip.decompress(Array(bytes), source: "fuzz.gz").count)
}

func fuzzTar(_ bytes: UnsafeRawBufferPointer) throws {
    // The WebDataset index (the training data's reader) lists the members through TarArchive, then groups them.
    let members = try WebDatasetShards.members(in: bytes, source: "fuzz.tar", index: 0, maxMemberBytes: TarArchive.defaultMaxMemberBytes)
    for (_, member) in members {
        let start = Int(member.offset)
        blackHole(bytes[start ..< start + member.size].reduce(0, &+))
    }
    blackHole(WebDatasetShards.samples(of: members).count)
}

// MARK: Text

/// OpenCLIP's vocabulary, the one every model folder ships (vocab/ of this repository), loaded once.
let tokenizer: CLIPTokenizer = {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    do {
        return try CLIPTokenizer(openCLIPVocabulary: repository.appendingPathComponent("vocab/bpe_simple_vocab_16e6.txt.gz").path)
    } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        exit(2)
    }
}()

func fuzzTokenizer(_ bytes: UnsafeRawBufferPointer) throws {
    // Prompts arrive as bytes (a file, a request body) and become a String with invalid UTF-8 repaired, as here.
    let text = String(decoding: bytes, as: UTF8.self)
    blackHole(tokenizer.encode(text))
    touch(tokenizer.contextTokens([text]))
}

func fuzzConfig(_ bytes: UnsafeRawBufferPointer) throws {
    // The first byte picks the reader, the rest is the file.
    guard let kind = bytes.first else { return }
    let data = Data(bytes.dropFirst())
    switch kind % 5 {
    case 0: blackHole(try ModelManifest.decode(data, path: "model.json").problems())
    case 1: blackHole(try ModelConfigFile.denoiser(contents: data, source: "denoiser.json"))
    case 2: blackHole(try ModelConfigFile.vqgan(contents: data, source: "vqgan.json"))
    case 3: blackHole(try ModelConfigFile.clip(contents: data, source: "clip.json"))
    default: blackHole(try ModelConfigFile.defaults(contents: data, source: "defaults.json"))
    }
}

// MARK: Server requests

func fuzzServerJSON(_ bytes: UnsafeRawBufferPointer) throws {
    // The first byte picks the endpoint's body type, the rest is the body.
    guard let kind = bytes.first else { return }
    let body = ByteBuffer(bytes: bytes.dropFirst())
    if kind % 2 == 0 {
        let decoded: GenerationBody = try PaellaServer.decodeJSON(body)
        blackHole(decoded)
    } else {
        let decoded: JobBody = try PaellaServer.decodeJSON(body)
        blackHole(decoded)
    }
}

func fuzzServerMultipart(_ bytes: UnsafeRawBufferPointer) throws {
    // The first line is the Content-Type header, the rest the body (the boundary must come from the header).
    let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
    let contentType = String(decoding: bytes[..<newline], as: UTF8.self)
    let body = ByteBuffer(bytes: bytes[min(newline + 1, bytes.count)...])
    let form = try MultipartForm(body: body, contentType: contentType)
    for field in ["image", "image[]", "mask"] { blackHole(try? form.file(field)) }
    for field in ["prompt", "size", "response_format", "seed"] { blackHole(try? form.text(field)) }
    for field in ["n", "steps"] { blackHole(try? form.int(field)) }
    for field in ["guidance", "strength"] { blackHole(try? form.float(field)) }
}
