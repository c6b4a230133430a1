extension PixelImage {
    /// Images of one size and layout tiled row by row into one image, `columns` per row (default: the
    /// smallest count that makes the grid about square, `ceil(sqrt(n))`), with `padding` pixels of
    /// `background` around every tile as torchvision's `make_grid` lays them out: a grid of `rows` x `columns`
    /// tiles is `columns * (w + padding) + padding` wide and `rows * (h + padding) + padding` high.
    /// Throws when the images differ in size or layout (e.g. user-supplied inputs).
    public static func grid(_ images: [PixelImage], columns: Int? = nil, padding: Int = 0,
                            background: UInt8 = 0) throws -> PixelImage {
        guard let first = images.first else { throw ImageError.batchMismatch("a grid needs at least one image") }
        for (i, image) in images.enumerated()
        where image.width != first.width || image.height != first.height || image.layout != first.layout {
            throw ImageError.batchMismatch("image \(i) is \(image.width)x\(image.height) \(image.layout), " +
                                           "image 0 is \(first.width)x\(first.height) \(first.layout)")
        }
        precondition(padding >= 0, "PixelImage.grid: negative padding \(padding)")
        var perRow = columns ?? 1
        if columns == nil { while perRow * perRow < images.count { perRow += 1 } }
        precondition(perRow > 0, "PixelImage.grid: columns must be positive, got \(perRow)")
        perRow = min(perRow, images.count)
        let rows = (images.count + perRow - 1) / perRow
        let (w, h, c) = (first.width, first.height, first.channels)
        var out = PixelImage(width: perRow * (w + padding) + padding, height: rows * (h + padding) + padding,
                             layout: first.layout, repeating: background)
        let outRow = out.width * c
        for (i, image) in images.enumerated() {
            let left = (i % perRow) * (w + padding) + padding
            let top = (i / perRow) * (h + padding) + padding
            for y in 0 ..< h {
                let d = (top + y) * outRow + left * c
                out.pixels.replaceSubrange(d ..< d + w * c, with: image.pixels[y * w * c ..< (y + 1) * w * c])
            }
        }
        return out
    }
}
