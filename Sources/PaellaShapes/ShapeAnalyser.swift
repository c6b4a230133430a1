import Foundation
import PaellaIO

// A deterministic analyser of shape images (rendered or generated): finds the objects and reads back their
// colour, shape, position and size, and a scorer that compares what it found with the scene that was asked for.

/// An object the analyser found.
public struct DetectedObject: Sendable, Hashable {
    public var color: ShapeColor
    public var shape: ShapeKind
    public var position: GridPosition
    public var size: ShapeSize
    /// Pixels that belong to the object.
    public var area: Int
    /// Bounding box in pixels, inclusive: columns `minX...maxX`, rows `minY...maxY`.
    public var minX: Int, minY: Int, maxX: Int, maxY: Int
    /// Area over bounding-box area (circle ~0.79, square ~1, triangle and diamond ~0.5, star ~0.4).
    public var fillRatio: Float
    /// Soft intersection over union of the object's coverage with each shape's template (fitted to the object's
    /// area and centroid), in `ShapeKind.allCases` order; `shape` is the best of these.
    public var templateScores: [Float]
}

/// What the analyser found in one image.
public struct ShapeAnalysis: Sendable, Hashable {
    /// The background colour used (given, or estimated from the image border).
    public var background: RGB
    /// The palette background nearest to `background`, when it is close to one.
    public var backgroundName: ShapeBackground?
    /// The objects, largest first.
    public var objects: [DetectedObject]
}

/// Finds the objects of a shapes image.
///
/// Every pixel is explained as a blend `background + a (colour - background)` of the background with each
/// palette colour; the colour with the smallest residual wins and the pixel belongs to an object when its
/// blend weight `a` is at least one half (so anti-aliased and blurred edges split where the renderer's
/// coverage is 50%). Pixels far from every such blend are ignored. Connected components (8-neighbour) of one
/// colour smaller than `minAreaFraction` of the image are speckles and dropped; components of one colour whose
/// boxes nearly touch are merged into one object. Each object's shape is the template (the renderer's own
/// geometry, placed to match the object's area and centroid, optionally blurred) that overlaps its coverage
/// best; its cell comes from that template's box centre, its size from the box side relative to a grid cell.
/// Deterministic: the same image always gives the same analysis.
public struct ShapeAnalyser: Sendable {
    /// Components with fewer pixels than this fraction of the image are ignored (20 pixels at 64x64; the
    /// smallest rendered object, a small star, has about 35).
    public var minAreaFraction: Float = 20.0 / 4096
    /// Same-colour components whose boxes are at most this fraction of the image side apart are one object.
    public var mergeDistanceFraction: Float = 3.0 / 64
    /// Pixels farther than this (RGB distance) from every background-colour blend are ignored.
    public var maxResidual: Float = 90
    /// An object whose fitted box side is at least this fraction of a grid cell is large (rendered: small
    /// objects at most 0.55, large ones at least 0.75).
    public var largeThreshold: Float = 0.65
    /// Weight of the chroma axes against luma when measuring an object's coverage (1: plain YCbCr distance).
    public var chromaWeight: Float = 0.15
    /// Blurs (standard deviations in pixels at 64x64, scaled with the image) tried on each shape template.
    public var templateBlurs: [Float] = [0, 0.7, 1.2]
    /// A background estimate closer than this to a palette background snaps to it.
    public var backgroundSnapDistance: Float = 60

    /// An analyser with the settings tuned on the renderer's output (see each property).
    public init() {}

    /// The objects of `image`; `background` is the scene's background colour when known, otherwise it is
    /// estimated as the per-channel median of the border pixels.
    public func analyse(_ image: PixelImage, background: RGB? = nil) -> ShapeAnalysis {
        let image = image.layout == .rgb ? image : image.rgb()
        let (w, h) = (image.width, image.height)
        var bg = background ?? ShapeAnalyser.borderMedian(image)
        let nearest = ShapeBackground.allCases.min { $0.rgb.distance(to: bg) < $1.rgb.distance(to: bg) }
        var backgroundName: ShapeBackground? = nil
        if let nearest, nearest.rgb.distance(to: bg) <= backgroundSnapDistance {
            backgroundName = nearest
            if background == nil { bg = nearest.rgb }
        }

        let labels = classifyPixels(image, background: bg)
        var components = ShapeAnalyser.components(labels, width: w, height: h)
        let minArea = max(1, Int((minAreaFraction * Float(w * h)).rounded()))
        components.removeAll { $0.pixels.count < minArea }
        let merged = merge(components, gap: Int((mergeDistanceFraction * Float(max(w, h))).rounded()))

        var objects = merged.map { describe($0, labels: labels, image: image, background: bg) }
        objects.sort { ($0.area, -$0.color.index) > ($1.area, -$1.color.index) }
        return ShapeAnalysis(background: bg, backgroundName: backgroundName, objects: objects)
    }

    /// Per pixel the palette colour index it belongs to, or -1 for background and unexplained pixels.
    func classifyPixels(_ image: PixelImage, background bg: RGB) -> [Int8] {
        let palette = ShapeColor.allCases.map { $0.rgb }
        let (br, bgG, bb) = (Float(bg.r), Float(bg.g), Float(bg.b))
        let directions = palette.map { (Float($0.r) - br, Float($0.g) - bgG, Float($0.b) - bb) }
        let inverseNorms = directions.map { 1 / max($0.0 * $0.0 + $0.1 * $0.1 + $0.2 * $0.2, 1) }
        let maxResidual2 = maxResidual * maxResidual
        var labels = [Int8](repeating: -1, count: image.width * image.height)
        image.pixels.withUnsafeBufferPointer { px in
            for i in 0 ..< labels.count {
                let (pr, pg, pb) = (Float(px[3 * i]) - br, Float(px[3 * i + 1]) - bgG, Float(px[3 * i + 2]) - bb)
                var best = -1, bestResidual = Float.infinity, bestWeight: Float = 0
                for c in 0 ..< directions.count {
                    let (dr, dg, db) = directions[c]
                    let a = min(max((pr * dr + pg * dg + pb * db) * inverseNorms[c], 0), 1)
                    let (er, eg, eb) = (pr - a * dr, pg - a * dg, pb - a * db)
                    let residual = er * er + eg * eg + eb * eb
                    if residual < bestResidual { (best, bestResidual, bestWeight) = (c, residual, a) }
                }
                if bestWeight >= 0.5 && bestResidual <= maxResidual2 { labels[i] = Int8(best) }
            }
        }
        return labels
    }

    /// A connected set of pixels of one colour.
    struct Component {
        var color: Int
        var pixels: [Int]
        var minX: Int, minY: Int, maxX: Int, maxY: Int
    }

    /// 8-connected components of equal labels (label -1 is background).
    static func components(_ labels: [Int8], width w: Int, height h: Int) -> [Component] {
        var seen = [Bool](repeating: false, count: labels.count)
        var result: [Component] = []
        var stack: [Int] = []
        for start in 0 ..< labels.count where labels[start] >= 0 && !seen[start] {
            let color = labels[start]
            var c = Component(color: Int(color), pixels: [], minX: w, minY: h, maxX: -1, maxY: -1)
            seen[start] = true
            stack.append(start)
            while let p = stack.popLast() {
                let (x, y) = (p % w, p / w)
                c.pixels.append(p)
                c.minX = min(c.minX, x); c.maxX = max(c.maxX, x)
                c.minY = min(c.minY, y); c.maxY = max(c.maxY, y)
                for dy in -1 ... 1 {
                    let ny = y + dy
                    guard ny >= 0 && ny < h else { continue }
                    for dx in -1 ... 1 {
                        let nx = x + dx
                        guard nx >= 0 && nx < w else { continue }
                        let q = ny * w + nx
                        if !seen[q] && labels[q] == color {
                            seen[q] = true
                            stack.append(q)
                        }
                    }
                }
            }
            result.append(c)
        }
        return result
    }

    /// Merges components of one colour whose boxes are at most `gap` pixels apart, until none are.
    func merge(_ components: [Component], gap: Int) -> [Component] {
        var groups = components
        var changed = true
        while changed {
            changed = false
            search: for i in 0 ..< groups.count {
                for j in (i + 1) ..< groups.count where groups[i].color == groups[j].color {
                    let (a, b) = (groups[i], groups[j])
                    let dx = max(0, max(a.minX, b.minX) - min(a.maxX, b.maxX) - 1)
                    let dy = max(0, max(a.minY, b.minY) - min(a.maxY, b.maxY) - 1)
                    guard dx <= gap && dy <= gap else { continue }
                    groups[i] = Component(color: a.color, pixels: a.pixels + b.pixels, minX: min(a.minX, b.minX),
                                          minY: min(a.minY, b.minY), maxX: max(a.maxX, b.maxX), maxY: max(a.maxY, b.maxY))
                    groups.remove(at: j)
                    changed = true
                    break search
                }
            }
        }
        return groups
    }

    /// Reads colour, shape, cell and size off a component.
    ///
    /// The component's blend weights (its coverage, soft at the edges) around its box give its area A and
    /// centroid. For each shape, a template is placed at the scale that gives it area A (blur keeps the total
    /// coverage, so this scale survives blur) and at the position that puts its centroid on the observed one;
    /// its supersampled coverage is compared with the observed one by soft intersection over union. This
    /// needs no pixel-exact registration, so it works on objects of a few pixels.
    func describe(_ c: Component, labels: [Int8], image: PixelImage, background bg: RGB) -> DetectedObject {
        let (w, h) = (image.width, image.height)
        let margin = 3
        let (rx0, ry0) = (max(0, c.minX - margin), max(0, c.minY - margin))
        let (rx1, ry1) = (min(w - 1, c.maxX + margin), min(h - 1, c.maxY + margin))
        let (rw, rh) = (rx1 - rx0 + 1, ry1 - ry0 + 1)
        let color = ShapeColor.allCases[c.color].rgb
        // Blend weights in YCbCr with chroma down-weighted: JPEG-like damage and chroma subsampling keep the
        // luma edges far sharper than the chroma ones.
        let d = ShapeAnalyser.weightedYCbCr(Float(color.r) - Float(bg.r), Float(color.g) - Float(bg.g),
                                            Float(color.b) - Float(bg.b), chromaWeight: chromaWeight)
        let inverseNorm = 1 / max(d.0 * d.0 + d.1 * d.1 + d.2 * d.2, 1)
        let maxResidual2 = maxResidual * maxResidual
        var coverage = [Float](repeating: 0, count: rw * rh)
        var area: Float = 0, sumX: Float = 0, sumY: Float = 0
        for y in ry0 ... ry1 {
            for x in rx0 ... rx1 {
                let label = labels[y * w + x]
                // Another colour's pixel (a speckle on the object, or a neighbour) says nothing about this one.
                if label >= 0 && Int(label) != c.color { coverage[(y - ry0) * rw + (x - rx0)] = -1; continue }
                let p = ShapeAnalyser.weightedYCbCr(Float(image[x, y, 0]) - Float(bg.r), Float(image[x, y, 1]) - Float(bg.g),
                                                    Float(image[x, y, 2]) - Float(bg.b), chromaWeight: chromaWeight)
                let a = min(max((p.0 * d.0 + p.1 * d.1 + p.2 * d.2) * inverseNorm, 0), 1)
                let (er, eg, eb) = (p.0 - a * d.0, p.1 - a * d.1, p.2 - a * d.2)
                // Faint weights are mostly noise on the background; ill-fitting pixels are something else.
                guard a >= ShapeAnalyser.minimumWeight && er * er + eg * eg + eb * eb <= maxResidual2 else { continue }
                coverage[(y - ry0) * rw + (x - rx0)] = a
                area += a
                sumX += a * (Float(x) + 0.5)
                sumY += a * (Float(y) + 0.5)
            }
        }
        let (cx, cy) = (sumX / max(area, 1e-6), sumY / max(area, 1e-6))

        var scores: [Float] = []
        var boxes: [(x: Float, y: Float, half: Float)] = []
        for shape in ShapeKind.allCases {
            let stats = ShapeAnalyser.unitStatistics[shape.index]
            let half = (area / stats.area).squareRoot()  // the unit box [-1, 1] has area 4, scaled by half^2
            let (bx, by) = (cx - half * stats.centroidU, cy - half * stats.centroidV)
            boxes.append((bx, by, half))
            var template = [Float](repeating: 0, count: rw * rh)
            for y in 0 ..< rh {
                for x in 0 ..< rw {
                    template[y * rw + x] = ShapeAnalyser.templateCoverage(shape, x: Float(rx0 + x), y: Float(ry0 + y),
                                                                          centerX: bx, centerY: by, half: half)
                }
            }
            // The image may be blurred: compare with the template blurred by each candidate amount, keep the best.
            var score: Float = 0
            for blur in templateBlurs {
                let sigma = blur * Float(max(w, h)) / 64
                let t = sigma > 0 ? ShapeAnalyser.blurred(template, width: rw, height: rh, sigma: sigma) : template
                var intersection: Float = 0, union: Float = 0
                for i in 0 ..< t.count where coverage[i] >= 0 {
                    intersection += min(t[i], coverage[i])
                    union += max(t[i], coverage[i])
                }
                score = max(score, union > 0 ? intersection / union : 0)
            }
            scores.append(score)
        }
        let best = scores.indices.max { scores[$0] < scores[$1] } ?? 0
        let box = boxes[best]
        let (cellW, cellH) = (Float(w) / 3, Float(h) / 3)
        let column = min(2, max(0, Int(box.x / cellW))), row = min(2, max(0, Int(box.y / cellH)))
        let extent = 2 * box.half / min(cellW, cellH)
        let (bw, bh) = (c.maxX - c.minX + 1, c.maxY - c.minY + 1)
        return DetectedObject(color: ShapeColor.allCases[c.color], shape: ShapeKind.allCases[best],
                              position: GridPosition(row: row, column: column),
                              size: extent >= largeThreshold ? .large : .small, area: c.pixels.count,
                              minX: c.minX, minY: c.minY, maxX: c.maxX, maxY: c.maxY,
                              fillRatio: Float(c.pixels.count) / Float(bw * bh), templateScores: scores)
    }

    /// An RGB difference in YCbCr (ITU-R 601) with the chroma axes scaled by `chromaWeight`.
    static func weightedYCbCr(_ r: Float, _ g: Float, _ b: Float, chromaWeight: Float) -> (Float, Float, Float) {
        (0.299 * r + 0.587 * g + 0.114 * b,
         chromaWeight * (-0.168_736 * r - 0.331_264 * g + 0.5 * b),
         chromaWeight * (0.5 * r - 0.418_688 * g - 0.081_312 * b))
    }

    /// `map` (width x height) blurred by a Gaussian of standard deviation `sigma`, zero outside.
    static func blurred(_ map: [Float], width w: Int, height h: Int, sigma: Float) -> [Float] {
        let radius = max(1, Int((2.5 * sigma).rounded(.up)))
        var kernel = (-radius ... radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = kernel.reduce(0, +)
        kernel = kernel.map { $0 / total }
        var rows = [Float](repeating: 0, count: map.count), out = rows
        for y in 0 ..< h {
            for x in 0 ..< w {
                var acc: Float = 0
                for k in -radius ... radius where x + k >= 0 && x + k < w { acc += kernel[k + radius] * map[y * w + x + k] }
                rows[y * w + x] = acc
            }
        }
        for y in 0 ..< h {
            for x in 0 ..< w {
                var acc: Float = 0
                for k in -radius ... radius where y + k >= 0 && y + k < h { acc += kernel[k + radius] * rows[(y + k) * w + x] }
                out[y * w + x] = acc
            }
        }
        return out
    }

    /// Blend weights below this are treated as background noise.
    static let minimumWeight: Float = 0.15

    /// Coverage of pixel (x, y) by `shape` with box centre (centerX, centerY) and half side `half`, on a 4x4
    /// grid of samples, as the renderer draws it.
    static func templateCoverage(_ shape: ShapeKind, x: Float, y: Float, centerX: Float, centerY: Float, half: Float) -> Float {
        // Quick rejects: pixels entirely outside the box.
        if x + 1 < centerX - half || x > centerX + half || y + 1 < centerY - half || y > centerY + half { return 0 }
        var hits = 0
        for sy in 0 ..< 4 {
            let v = (y + (Float(sy) + 0.5) / 4 - centerY) / half
            for sx in 0 ..< 4 {
                if shape.contains((x + (Float(sx) + 0.5) / 4 - centerX) / half, v) { hits += 1 }
            }
        }
        return Float(hits) / 16
    }

    /// Area and centroid of each shape in box coordinates (box [-1, 1]^2), measured on a fine grid.
    static let unitStatistics: [(area: Float, centroidU: Float, centroidV: Float)] = ShapeKind.allCases.map { shape in
        let n = 400
        var count = 0, sumU: Double = 0, sumV: Double = 0
        for j in 0 ..< n {
            let v = -1 + 2 * (Float(j) + 0.5) / Float(n)
            for i in 0 ..< n {
                let u = -1 + 2 * (Float(i) + 0.5) / Float(n)
                if shape.contains(u, v) { count += 1; sumU += Double(u); sumV += Double(v) }
            }
        }
        return (4 * Float(count) / Float(n * n), Float(sumU / Double(max(count, 1))), Float(sumV / Double(max(count, 1))))
    }

    /// Per-channel median of the pixels on the image border.
    static func borderMedian(_ image: PixelImage) -> RGB {
        let (w, h) = (image.width, image.height)
        var channels: [[UInt8]] = [[], [], []]
        func add(_ x: Int, _ y: Int) { for c in 0 ..< 3 { channels[c].append(image[x, y, c]) } }
        for x in 0 ..< w { add(x, 0); if h > 1 { add(x, h - 1) } }
        for y in 1 ..< max(1, h - 1) { add(0, y); if w > 1 { add(w - 1, y) } }
        let m = channels.map { values -> UInt8 in
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
        return RGB(m[0], m[1], m[2])
    }
}

extension ShapeColor {
    /// Position in `allCases`.
    var index: Int { ShapeColor.allCases.firstIndex(of: self) ?? 0 }
}

extension ShapeKind {
    /// Position in `allCases`.
    var index: Int { ShapeKind.allCases.firstIndex(of: self) ?? 0 }
}
