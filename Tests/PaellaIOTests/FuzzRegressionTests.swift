import Foundation
import PaellaIO
import PaellaTestSupport
import Testing

/// Inputs that the fuzz targets (Fuzz/, scripts/fuzz.sh) found crashing, hanging or over-allocating, replayed
/// through the same entry points. Each file is kept under Tests/Fixtures/hostile/ with the name of the finding.
@Suite("Fuzz findings", .serialized)
struct FuzzRegressionTests {
    static func hostile(_ name: String) throws -> [UInt8] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/hostile")
        return [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
    }

    /// The process's peak virtual size in bytes (VmPeak), which an allocation raises even when it is never touched.
    static func peakVirtualBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmPeak:") }),
              let kB = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return nil }
        return kB * 1024
    }

    /// A PNG whose iTXt chunk header claims 1.7 GB in a 171-byte file: libpng allocated the claimed length before
    /// finding the data missing (fuzz target png, out-of-memory). The reader now checks every chunk's length against
    /// the bytes left before libpng sees the file.
    @Test func pngChunkClaimingMoreThanTheFileIsRefusedWithoutAllocating() throws {
        let bytes = try Self.hostile("fuzz-png-huge-chunk.png")
        let before = Self.peakVirtualBytes()
        #expect(throws: ImageError.truncated(path: "huge-chunk.png", format: .png)) {
            _ = try PixelImage.decode(bytes, source: "huge-chunk.png")
        }
        if let before, let after = Self.peakVirtualBytes() {
            #expect(after - before < 1 << 30, "decoding a 171-byte PNG raised the peak virtual size by \(after - before) bytes")
        }
    }

    /// A 100-byte grayscale JPEG declaring 16128x15616 pixels (within the limits) whose entropy data stops at a marker:
    /// libjpeg only warned and padded the whole image with gray, so it decoded "successfully" in seconds of work
    /// (fuzz target jpeg, timeout). Data that stops at a marker is now refused at once as damaged.
    @Test func jpegWhoseDataStopsAtAMarkerIsRefusedAtOnce() throws {
        let bytes = try Self.hostile("fuzz-jpeg-padded.jpg")
        let started = Date()
        do {
            let decoded = try PixelImage.decode(bytes, source: "padded.jpg")
            Issue.record("decoded a \(decoded.image.width)x\(decoded.image.height) image from 100 bytes")
        } catch let error as ImageError {
            guard case .corrupt(let path, .jpeg, let reason) = error else { throw error }
            #expect(path == "padded.jpg")
            #expect(reason.contains("premature end of data segment"), "\(reason)")
        }
        // The refusal above is the proof (the old decoder succeeded); this only guards against a hang. It takes
        // milliseconds alone, but over a second was seen with the whole suite running beside it on 2 cores.
        #expect(Date().timeIntervalSince(started) < TimeGuard.seconds(5))
    }
}
