// The captioned shapes dataset: a small, fully known world (shapes, colours, positions, sizes on a plain
// background) that a small Paella can learn in minutes and that a deterministic analyser can score.

/// A colour in 8-bit sRGB.
public struct RGB: Sendable, Hashable, Codable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    /// The colour with these red, green and blue levels.
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    /// Euclidean distance in RGB (0...441).
    public func distance(to other: RGB) -> Float {
        let (dr, dg, db) = (Float(r) - Float(other.r), Float(g) - Float(other.g), Float(b) - Float(other.b))
        return (dr * dr + dg * dg + db * db).squareRoot()
    }
}

/// The shape of an object; every shape is drawn upright (triangle and star point up) inside a square box.
public enum ShapeKind: String, Sendable, Hashable, Codable, CaseIterable {
    case circle, square, triangle, star, diamond, cross
}

/// The colour of an object. The palette is chosen so that every colour is far (at least ~80 in RGB) from
/// every other and from every background, also after blending with the background at the edges.
public enum ShapeColor: String, Sendable, Hashable, Codable, CaseIterable {
    case red, orange, yellow, green, cyan, blue, purple, pink

    /// The sRGB value the renderer paints.
    public var rgb: RGB {
        switch self {
        case .red: RGB(220, 40, 40)
        case .orange: RGB(250, 140, 20)
        case .yellow: RGB(245, 215, 30)
        case .green: RGB(40, 170, 60)
        case .cyan: RGB(30, 200, 210)
        case .blue: RGB(40, 80, 220)
        case .purple: RGB(140, 50, 180)
        case .pink: RGB(240, 110, 210)
        }
    }
}

/// The plain background of a scene.
public enum ShapeBackground: String, Sendable, Hashable, Codable, CaseIterable {
    case white, black, gray, beige

    /// The sRGB value the renderer paints.
    public var rgb: RGB {
        switch self {
        case .white: RGB(255, 255, 255)
        case .black: RGB(20, 20, 20)
        case .gray: RGB(128, 128, 128)
        case .beige: RGB(235, 220, 185)
        }
    }
}

/// A cell of the 3x3 grid that objects sit in, row-major from the top left.
public enum GridPosition: String, Sendable, Hashable, Codable, CaseIterable {
    case topLeft = "top left", top = "top", topRight = "top right"
    case left = "left", center = "center", right = "right"
    case bottomLeft = "bottom left", bottom = "bottom", bottomRight = "bottom right"

    /// Row 0 (top) ... 2 (bottom).
    public var row: Int { (GridPosition.allCases.firstIndex(of: self) ?? 0) / 3 }
    /// Column 0 (left) ... 2 (right).
    public var column: Int { (GridPosition.allCases.firstIndex(of: self) ?? 0) % 3 }

    /// The cell at `row`, `column` (each 0...2).
    public init(row: Int, column: Int) {
        precondition((0 ..< 3).contains(row) && (0 ..< 3).contains(column), "GridPosition: cell (\(row), \(column)) outside 3x3")
        self = GridPosition.allCases[row * 3 + column]
    }
}

/// The size class of an object.
public enum ShapeSize: String, Sendable, Hashable, Codable, CaseIterable {
    case small, large

    /// Half the side of the object's box, as a fraction of a grid cell's side (a cell is a third of the image).
    /// Large objects fill 80% of their cell, small ones 52%, so jittered objects never leave their cell.
    public var halfExtent: Float {
        switch self {
        case .small: 0.26
        case .large: 0.40
        }
    }
}

/// One object of a scene.
public struct ShapeObject: Sendable, Hashable, Codable {
    public var shape: ShapeKind
    public var color: ShapeColor
    public var position: GridPosition
    public var size: ShapeSize
    /// Offset of the object's centre from its cell's centre, as a fraction of the cell side (each in
    /// `-ShapeScene.maxJitter ... ShapeScene.maxJitter`), so the data is not pixel-identical per attribute set.
    public var offsetX: Float
    public var offsetY: Float
    /// Scale of the object's box relative to its size class (around 1).
    public var scale: Float

    /// An object; without offsets and scale it sits centred in its cell at its size class's nominal size.
    public init(shape: ShapeKind, color: ShapeColor, position: GridPosition, size: ShapeSize,
                offsetX: Float = 0, offsetY: Float = 0, scale: Float = 1) {
        self.shape = shape
        self.color = color
        self.position = position
        self.size = size
        self.offsetX = offsetX
        self.offsetY = offsetY
        self.scale = scale
    }

    /// The centre of the object in image coordinates for a `side`-pixel image (pixel centres at i + 0.5).
    public func center(side: Int) -> (x: Float, y: Float) {
        let cell = Float(side) / 3
        return ((Float(position.column) + 0.5 + offsetX) * cell, (Float(position.row) + 0.5 + offsetY) * cell)
    }

    /// Half the side of the object's box in pixels for a `side`-pixel image.
    public func halfExtent(side: Int) -> Float { size.halfExtent * scale * Float(side) / 3 }
}

/// A scene: a plain background with one or two objects in different cells and of different colours.
public struct ShapeScene: Sendable, Hashable, Codable {
    public var background: ShapeBackground
    public var objects: [ShapeObject]

    /// Largest centre offset from the cell centre, as a fraction of the cell side. With the largest object
    /// (0.40 * 1.06 of a cell) an object's box stays inside its cell: 0.424 + 0.05 < 0.5.
    public static let maxJitter: Float = 0.05
    /// Range of the per-object scale around its size class.
    public static let scaleRange: ClosedRange<Float> = 0.94 ... 1.06

    /// A scene of `objects` on `background` (see `isValid` for the dataset's rules).
    public init(background: ShapeBackground, objects: [ShapeObject]) {
        self.background = background
        self.objects = objects
    }

    /// Whether the scene follows the dataset's rules: one or two objects, each in its own cell with its own
    /// colour, offsets and scales in range.
    public var isValid: Bool {
        guard (1 ... 2).contains(objects.count) else { return false }
        if objects.count == 2 && (objects[0].position == objects[1].position || objects[0].color == objects[1].color) {
            return false
        }
        return objects.allSatisfy {
            abs($0.offsetX) <= ShapeScene.maxJitter && abs($0.offsetY) <= ShapeScene.maxJitter
                && ShapeScene.scaleRange.contains($0.scale)
        }
    }
}
