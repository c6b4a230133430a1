// Reading gzip files (RFC 1952) through zlib, for small data files such as the CLIP BPE vocabulary.
import CZlib
import Foundation

/// A gzip file that could not be read or inflated.
public struct GzipError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public var description: String { "Cannot read the gzip file \(path): \(reason)." }
}

public enum Gzip {
    /// The decompressed contents of the gzip file at `path` (all members, as `gzip -dc` gives them).
    /// Refuses to inflate more than `limit` bytes, so a corrupt or hostile file cannot exhaust memory.
    public static func decompress(path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        guard let input = FileManager.default.contents(atPath: path) else {
            throw GzipError(path: path, reason: "the file does not exist or cannot be read")
        }
        return try decompress(Array(input), source: path, limit: limit)
    }

    /// The decompressed contents of gzip data held in memory (`source` names it in errors).
    public static func decompress(_ input: [UInt8], source: String = "gzip data", limit: Int = 1 << 30) throws -> [UInt8] {
        guard input.count >= 18, input[0] == 0x1F, input[1] == 0x8B else {
            throw GzipError(path: source, reason: "it does not start with the gzip signature")
        }
        var stream = z_stream()
        // 16 + MAX_WBITS: expect a gzip header and trailer (checked by zlib, CRC included).
        guard inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw GzipError(path: source, reason: "zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        return try input.withUnsafeBufferPointer { src -> [UInt8] in
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress!)
            stream.avail_in = UInt32(src.count)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { dst -> Int32 in
                    stream.next_out = dst.baseAddress!
                    stream.avail_out = UInt32(dst.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                // Checked before the output grows, so the limit bounds the memory as well as the result.
                guard produced <= limit - output.count else {
                    throw GzipError(path: source, reason: "it inflates to more than \(limit) bytes")
                }
                output.append(contentsOf: chunk[0 ..< produced])
                switch status {
                case Z_STREAM_END:
                    // Concatenated members: start over on what is left.
                    if stream.avail_in == 0 { return output }
                    guard inflateReset(&stream) == Z_OK else {
                        throw GzipError(path: source, reason: "zlib could not start the next member")
                    }
                case Z_OK:
                    if stream.avail_in == 0 && stream.avail_out != 0 {
                        throw GzipError(path: source, reason: "the data ends before the compressed stream does")
                    }
                default:
                    throw GzipError(path: source, reason: "the compressed data is corrupt (zlib status \(status))")
                }
            }
        }
    }
}
