import Foundation
import PaellaIO

// Shape geometry shared by the renderer and the analyser's templates, and the supersampling renderer.

extension ShapeKind {
    /// Whether the point (u, v) of the object's box, each in [-1, 1] with v pointing down, is inside the shape.
    /// Shapes fill their box's width and height, except the star (a regular 5-pointed outline with inner radius
    /// 0.5 of the outer, fatter than the classic 0.38 so small stars survive blur), which is 1.902 high.
    public func contains(_ u: Float, _ v: Float) -> Bool {
        switch self {
        case .circle: return u * u + v * v <= 1
        case .square: return abs(u) <= 1 && abs(v) <= 1
        case .triangle: return v <= 1 && abs(u) <= (v + 1) / 2
        case .diamond: return abs(u) + abs(v) <= 1
        case .cross:
            let arm: Float = 0.36
            return abs(u) <= 1 && abs(v) <= 1 && (abs(u) <= arm || abs(v) <= arm)
        case .star: return ShapeKind.starPolygon.contains(u, v)
        }
    }

    /// The shape's own bounding box in box coordinates: (minU, minV, maxU, maxV).
    public var bounds: (minU: Float, minV: Float, maxU: Float, maxV: Float) {
        switch self {
        case .star: return (-1, -ShapeKind.starHalfHeight, 1, ShapeKind.starHalfHeight)
        default: return (-1, -1, 1, 1)
        }
    }

    /// Outer radius 1 / sin 72 degrees makes the star exactly 2 wide; its height is R (1 + cos 36 degrees).
    static let starOuterRadius = 1 / Float(sin(72 * Double.pi / 180))
    static let starHalfHeight = starOuterRadius * Float(1 + cos(36 * Double.pi / 180)) / 2

    /// The star's 10 vertices, point up, shifted down so its bounding box is centred on the box's centre.
    static let starPolygon: Polygon = {
        let outer = Double(starOuterRadius)
        let shift = Double(starHalfHeight) - outer  // top vertex at -starHalfHeight
        let points = (0 ..< 10).map { k -> (Float, Float) in
            let angle = -Double.pi / 2 + Double(k) * Double.pi / 5
            let radius = k % 2 == 0 ? outer : outer * 0.5
            return (Float(radius * cos(angle)), Float(radius * sin(angle) - shift))
        }
        return Polygon(points: points)
    }()

    /// A closed polygon with the even-odd inside rule.
    struct Polygon: Sendable {
        let points: [(Float, Float)]

        func contains(_ u: Float, _ v: Float) -> Bool {
            var inside = false
            var j = points.count - 1
            for i in 0 ..< points.count {
                let (ui, vi) = points[i], (uj, vj) = points[j]
                if (vi > v) != (vj > v) && u < (uj - ui) * (v - vi) / (vj - vi) + ui { inside.toggle() }
                j = i
            }
            return inside
        }
    }
}

/// Draws `ShapeScene`s into images: a plain background and each object painted with its coverage of a pixel
/// (estimated on a `supersampling` x `supersampling` grid of samples) as the blending weight.
public struct ShapeRenderer: Sendable {
    /// Side of the square image in pixels.
    public var side: Int
    /// Samples per pixel along each axis for anti-aliasing.
    public var supersampling: Int

    /// A renderer for `side` x `side` images (64 by default) with `supersampling`^2 samples per pixel.
    public init(side: Int = 64, supersampling: Int = 4) {
        precondition(side >= 12, "ShapeRenderer: a \(side)-pixel image is too small for a 3x3 grid of shapes")
        precondition(supersampling >= 1, "ShapeRenderer: supersampling must be at least 1, got \(supersampling)")
        self.side = side
        self.supersampling = supersampling
    }

    /// The scene as an RGB image.
    public func render(_ scene: ShapeScene) -> PixelImage {
        let bg = scene.background.rgb
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for i in 0 ..< side * side {
            pixels[3 * i] = bg.r
            pixels[3 * i + 1] = bg.g
            pixels[3 * i + 2] = bg.b
        }
        for object in scene.objects { paint(object, background: bg, into: &pixels) }
        return PixelImage(width: side, height: side, layout: .rgb, pixels: pixels)
    }

    /// Blends one object into `pixels`; only the pixels of its box are visited.
    private func paint(_ object: ShapeObject, background bg: RGB, into pixels: inout [UInt8]) {
        let (cx, cy) = object.center(side: side)
        let h = object.halfExtent(side: side)
        let shape = object.shape
        let color = object.color.rgb
        let x0 = max(0, Int((cx - h).rounded(.down))), x1 = min(side - 1, Int((cx + h).rounded(.up)))
        let y0 = max(0, Int((cy - h).rounded(.down))), y1 = min(side - 1, Int((cy + h).rounded(.up)))
        guard x0 <= x1 && y0 <= y1 else { return }
        let s = supersampling
        let total = Float(s * s)
        let step = 1 / Float(s)
        for y in y0 ... y1 {
            for x in x0 ... x1 {
                var hits = 0
                for sy in 0 ..< s {
                    let v = (Float(y) + (Float(sy) + 0.5) * step - cy) / h
                    for sx in 0 ..< s {
                        let u = (Float(x) + (Float(sx) + 0.5) * step - cx) / h
                        if shape.contains(u, v) { hits += 1 }
                    }
                }
                guard hits > 0 else { continue }
                let a = Float(hits) / total
                let p = 3 * (y * side + x)
                pixels[p] = blend(bg.r, color.r, a)
                pixels[p + 1] = blend(bg.g, color.g, a)
                pixels[p + 2] = blend(bg.b, color.b, a)
            }
        }
    }

    private func blend(_ background: UInt8, _ color: UInt8, _ alpha: Float) -> UInt8 {
        UInt8((Float(background) * (1 - alpha) + Float(color) * alpha).rounded())
    }
}
