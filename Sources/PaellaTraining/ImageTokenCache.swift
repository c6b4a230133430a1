// VQGAN tokens computed once: an image whose training crop is always the whole image (it is already square at
// the training size) has the same tokens every time it comes round, and encoding them is a large share of a
// small denoiser's training step (the encoder runs at full resolution).
import Foundation
import PaellaCore
import PaellaIO

/// VQGAN tokens of training images by index, in memory, two bytes a token (30,000 images of 16x16 tokens: 15 MB).
///
/// Images are encoded in fixed chunks of consecutive indices (the chunk of each index, the first time any of its
/// images is asked for), so an image's tokens do not depend on which images shared its training batch: a resumed
/// run, which starts with an empty cache, trains on the same tokens as an uninterrupted one. Images of another
/// size (their random crop changes every time) are not kept: they are cropped and encoded with each batch.
public final class ImageTokenCache {
    private enum Entry: Sendable {
        case tokens([UInt16])
        case cropped
    }

    /// Training images in all, and the side they are trained at.
    public let imageCount: Int, size: Int
    /// Consecutive images encoded together the first time one of them is needed.
    public let chunkSize: Int
    private var entries: [Int: Entry] = [:]
    private var latentShape: [Int]?

    /// An empty cache for `imageCount` training images trained at `size` x `size`.
    public init(imageCount: Int, size: Int, chunkSize: Int = 64) {
        precondition(imageCount >= 0 && size > 0 && chunkSize > 0, "ImageTokenCache: bad counts")
        (self.imageCount, self.size, self.chunkSize) = (imageCount, size, chunkSize)
    }

    /// Images whose tokens are held.
    public var count: Int { entries.values.count { if case .tokens = $0 { true } else { false } } }

    /// Whether a codebook of `codes` entries fits the cache's two-byte tokens.
    public static func holds(codebookSize codes: Int) -> Bool { codes <= Int(UInt16.max) + 1 }

    /// `[indices.count, h, w]` tokens of training images `indices`. `load(i)` reads image `i` as stored,
    /// `crop(position, image)` makes the training crop of an image of another size (called for those only, with
    /// the image's position in `indices`), and `encode` turns `[size x size]` images into `[n, h, w]` integer tokens.
    public func tokens(for indices: [Int], load: (Int) throws -> PixelImage, crop: (Int, PixelImage) -> PixelImage,
                                encode: ([PixelImage]) throws -> Tensor) throws -> Tensor {
        for index in indices where entries[index] == nil {
            try encodeChunk(containing: index, load: load, encode: encode)
        }
        let croppedAt = indices.indices.filter { if case .cropped = entries[indices[$0]] { true } else { false } }
        var cropped: [Int] = []
        if !croppedAt.isEmpty {
            let encoded = try encode(croppedAt.map { crop($0, try load(indices[$0])) })
            // The token grid's shape, also when no whole image has been encoded yet (every image so far cropped).
            let shape = Array(encoded.shape.dropFirst())
            precondition(latentShape == nil || latentShape == shape, "ImageTokenCache: tokens of shape \(shape) after \(latentShape ?? [])")
            latentShape = shape
            cropped = encoded.integers()
        }
        let rowLength = latentShape.map { $0.reduce(1, *) } ?? 0
        var batch: [Int32] = []
        batch.reserveCapacity(indices.count * rowLength)
        for (position, index) in indices.enumerated() {
            switch entries[index] {
            case .tokens(let row): batch += row.map(Int32.init)
            default:
                let k = croppedAt.firstIndex(of: position)!
                batch += cropped[k * rowLength ..< (k + 1) * rowLength].map { Int32($0) }
            }
        }
        return Tensor(int32: batch, shape: [indices.count] + (latentShape ?? [0, 0]))
    }

    private func encodeChunk(containing index: Int, load: (Int) throws -> PixelImage, encode: ([PixelImage]) throws -> Tensor) throws {
        precondition((0..<imageCount).contains(index), "ImageTokenCache: image \(index) of \(imageCount)")
        let start = index / chunkSize * chunkSize
        var whole: [(index: Int, image: PixelImage)] = []
        for i in start ..< min(imageCount, start + chunkSize) {
            let image = try load(i)
            if image.width == size && image.height == size { whole.append((i, image)) } else { entries[i] = .cropped }
        }
        guard !whole.isEmpty else { return }
        let encoded = try encode(whole.map(\.image))
        precondition(encoded.rank == 3 && encoded.shape[0] == whole.count,
                     "ImageTokenCache: the encoder returned \(encoded.shape) for \(whole.count) images")
        let shape = Array(encoded.shape.dropFirst())
        precondition(latentShape == nil || latentShape == shape, "ImageTokenCache: tokens of shape \(shape) after \(latentShape ?? [])")
        latentShape = shape
        let rowLength = shape.reduce(1, *)
        let tokens = encoded.integers()
        for (k, item) in whole.enumerated() {
            entries[item.index] = .tokens(tokens[k * rowLength ..< (k + 1) * rowLength].map { token in
                precondition(token >= 0 && token <= Int(UInt16.max), "ImageTokenCache: token \(token) does not fit two bytes")
                return UInt16(token)
            })
        }
    }
}
