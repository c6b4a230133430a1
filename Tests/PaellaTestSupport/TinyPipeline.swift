import Foundation
import Paella
import PaellaCore
import PaellaIO

/// The tiny model folder of the test support (fixture VQGAN and CLIP, a denoiser adapted to them), loaded once.
public enum TinyPipeline {
    static let shared: Result<Pipeline, Error> = Result { try make() }

    public static func get() throws -> Pipeline { try shared.get() }

    public static func make(withVision: Bool = true) throws -> Pipeline {
        try Pipeline(folder: ModelFolder(path: Fixtures.tinyModelFolder(withVision: withVision)),
                     compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()), loadVision: withVision)
    }

    /// A non-square picture with some structure, `width` x `height`.
    public static func picture(width: Int, height: Int) -> PixelImage {
        var image = PixelImage(width: width, height: height, layout: .rgb, repeating: 0)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                image.pixels[i] = UInt8(x * 255 / max(1, width - 1))
                image.pixels[i + 1] = UInt8(y * 255 / max(1, height - 1))
                image.pixels[i + 2] = (x / 8 + y / 8) % 2 == 0 ? 200 : 40
            }
        }
        return image
    }
}

