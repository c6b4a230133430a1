// Caption embeddings computed once: a CLIP text tower is deterministic, so a caption's embedding can be kept
// instead of recomputed every time its image comes round again.
import Foundation
import PaellaCore
import PaellaIO

/// Text embeddings by caption, in memory and in a safetensors file (one `[width]` tensor per caption, named by
/// the SHA-256 of its UTF-8 text). Each missing caption is encoded on its own, so its embedding does not depend
/// on which other captions shared its batch (a resumed run gets the same values as an uninterrupted one).
public final class CaptionEmbeddingCache: @unchecked Sendable {
    private var embeddings: [String: Tensor] = [:]
    private let lock = NSLock()

    /// An empty cache, or the one saved at `path` when that file exists.
    public init(path: String? = nil) throws {
        guard let path, FileManager.default.fileExists(atPath: path) else { return }
        for (name, tensor) in try SafeTensors(path: path).tensors {
            embeddings[name] = Tensor(tensor.toFloat32().floats, shape: tensor.shape)
        }
    }

    /// Captions held.
    public var count: Int { lock.withLock { embeddings.count } }

    /// `[captions.count, width]` embeddings, encoding (one caption per call of `encode`, which returns
    /// `[1, width]`) only the captions not seen before.
    public func embeddings(for captions: [String], encode: (String) throws -> Tensor) throws -> Tensor {
        var rows: [Tensor] = []
        for caption in captions {
            let key = SHA256.hex(of: Array(caption.utf8))
            if let known = lock.withLock({ embeddings[key] }) {
                rows.append(known)
                continue
            }
            let e = try encode(caption)
            precondition(e.rank == 2 && e.shape[0] == 1, "CaptionEmbeddingCache: the encoder returned \(e.shape), expected [1, width]")
            let row = Tensor(e.toFloat32().floats, shape: [e.shape[1]])
            lock.withLock { embeddings[key] = row }
            rows.append(row)
        }
        let width = rows.first?.count ?? 0
        precondition(rows.allSatisfy { $0.count == width }, "CaptionEmbeddingCache: embeddings of different widths")
        return Tensor(rows.flatMap(\.floats), shape: [rows.count, width])
    }

    /// Writes every embedding to `path` atomically.
    public func save(to path: String) throws {
        let named = lock.withLock { embeddings.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) } }
        try SafeTensors.write(named, metadata: ["content": "CLIP text embeddings by SHA-256 of the caption"], to: path)
    }
}
