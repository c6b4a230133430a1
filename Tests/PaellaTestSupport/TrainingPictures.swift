import Foundation
import PaellaIO

extension Fixtures {
    /// Writes eight captioned 16x16 pictures into `folder` (created if needed), `000000.png` ... `000007.png` each
    /// with its `.txt`: a red, green or blue square on the left or right of a grey ground, the captions saying
    /// which. Training data for the VQGAN, CLIP and data-parallel command-line tests.
    public static func writeSquarePictures(to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for i in 0..<8 {
            var pixels = [UInt8](repeating: UInt8(40 * (i % 4)), count: 16 * 16 * 3)
            for y in 4..<12 { for x in (i % 2 == 0 ? 2 : 8)..<(i % 2 == 0 ? 8 : 14) { pixels[(y * 16 + x) * 3 + i % 3] = 250 } }
            let name = String(format: "%06d", i)
            try PixelImage(width: 16, height: 16, pixels: pixels).write(to: "\(folder)/\(name).png")
            try "a \(["red", "green", "blue"][i % 3]) square on the \(i % 2 == 0 ? "left" : "right")"
                .write(toFile: "\(folder)/\(name).txt", atomically: true, encoding: .utf8)
        }
    }

    /// A fresh temporary folder (`work`) with `writeSquarePictures` in its `data` subfolder: the workspace of the
    /// training command-line tests.
    public static func squarePicturesWorkspace() throws -> (work: String, data: String) {
        let work = try PaellaCLI.temporaryDirectory()
        try writeSquarePictures(to: work + "/data")
        return (work, work + "/data")
    }
}
