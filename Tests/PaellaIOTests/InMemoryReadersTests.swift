import Foundation
import PaellaCore
import PaellaIO
import PaellaTestSupport
import Testing

/// The readers that take a `MappedFile` read bytes held in memory (`MappedFile(copying:name:)`, what the fuzz
/// targets use) exactly as they read the file: same names, shapes and bytes, the given name in errors.
@Suite struct InMemoryReadersTests {
    func inMemory(_ fixture: String) throws -> MappedFile {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture)))
        return bytes.withUnsafeBytes { MappedFile(copying: $0, name: "memory:" + fixture) }
    }

    func bytes(_ t: Tensor?) -> [UInt8]? {
        t.map { Array(UnsafeRawBufferPointer(start: $0.storage.pointer + $0.byteOffset, count: $0.byteCount)) }
    }

    @Test func safeTensorsFromMemoryMatchTheFile() throws {
        let file = try SafeTensors(path: Fixtures.path("vqgan_tiny_io.safetensors"))
        let memory = try SafeTensors(file: inMemory("vqgan_tiny_io.safetensors"))
        #expect(memory.names == file.names)
        #expect(memory.path == "memory:vqgan_tiny_io.safetensors")
        for name in file.names {
            let a = try file.tensor(name), b = try memory.tensor(name)
            #expect(a.shape == b.shape && a.dtype == b.dtype)
            #expect(bytes(a) == bytes(b))
        }
    }

    @Test func checkpointFromMemoryMatchesTheFile() throws {
        let file = try PyTorchCheckpoint(path: Fixtures.path("denoiser_v1_tiny.pt"))
        let memory = try PyTorchCheckpoint(file: inMemory("denoiser_v1_tiny.pt"))
        #expect(memory.names == file.names)
        for (name, tensor) in file.tensors {
            #expect(memory[name]?.shape == tensor.shape)
            #expect(bytes(memory[name]) == bytes(tensor))
        }
        let empty = MappedFile(copying: UnsafeRawBufferPointer(start: nil, count: 0), name: "empty.pt")
        #expect(throws: (any Error).self) { _ = try PyTorchCheckpoint(file: empty) }
    }
}
