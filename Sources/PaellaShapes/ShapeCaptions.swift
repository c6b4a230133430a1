// Captions for shape scenes: varied templates and synonyms, so a text encoder learns the attributes rather
// than one sentence, plus one canonical wording for evaluation prompts.
import PaellaCore

extension ShapeColor {
    /// Words for the colour; the first is the canonical one.
    public var synonyms: [String] {
        switch self {
        case .red: ["red", "crimson", "scarlet"]
        case .orange: ["orange", "tangerine", "amber"]
        case .yellow: ["yellow", "golden", "lemon"]
        case .green: ["green", "emerald", "grass-green"]
        case .cyan: ["cyan", "turquoise", "aqua"]
        case .blue: ["blue", "cobalt", "azure"]
        case .purple: ["purple", "violet", "plum"]
        case .pink: ["pink", "magenta", "fuchsia"]
        }
    }
}

extension ShapeKind {
    /// Words for the shape; the first is the canonical one.
    public var synonyms: [String] {
        switch self {
        case .circle: ["circle", "disc", "round dot"]
        case .square: ["square", "box", "block"]
        case .triangle: ["triangle", "triangular shape", "pyramid shape"]
        case .star: ["star", "five-pointed star", "star shape"]
        case .diamond: ["diamond", "rhombus", "lozenge"]
        case .cross: ["cross", "plus sign", "plus shape"]
        }
    }
}

extension ShapeSize {
    /// Words for the size; the first is the canonical one.
    public var synonyms: [String] {
        switch self {
        case .small: ["small", "little", "tiny"]
        case .large: ["large", "big", "huge"]
        }
    }
}

extension ShapeBackground {
    /// Words for the background colour; the first is the canonical one.
    public var synonyms: [String] {
        switch self {
        case .white: ["white", "snow-white", "plain white"]
        case .black: ["black", "dark", "jet-black"]
        case .gray: ["gray", "grey", "slate"]
        case .beige: ["beige", "cream", "sand-coloured"]
        }
    }
}

extension GridPosition {
    /// Phrases that place something in the cell ("at the top left"); the first is the canonical one.
    public var phrases: [String] {
        switch self {
        case .topLeft: ["at the top left", "in the top-left corner", "in the upper left"]
        case .top: ["at the top", "at the top centre", "in the upper middle"]
        case .topRight: ["at the top right", "in the top-right corner", "in the upper right"]
        case .left: ["on the left", "at the middle left", "on the left side"]
        case .center: ["in the centre", "in the middle", "at the center"]
        case .right: ["on the right", "at the middle right", "on the right side"]
        case .bottomLeft: ["at the bottom left", "in the bottom-left corner", "in the lower left"]
        case .bottom: ["at the bottom", "at the bottom centre", "in the lower middle"]
        case .bottomRight: ["at the bottom right", "in the bottom-right corner", "in the lower right"]
        }
    }

    /// Bare names of the cell, used as labels ("upper-left: ..."); the first is the canonical one.
    public var labels: [String] {
        switch self {
        case .topLeft: ["top left", "upper-left", "top-left corner"]
        case .top: ["top centre", "top middle", "upper middle"]
        case .topRight: ["top right", "upper-right", "top-right corner"]
        case .left: ["middle left", "left side", "centre left"]
        case .center: ["centre", "center", "middle"]
        case .right: ["middle right", "right side", "centre right"]
        case .bottomLeft: ["bottom left", "lower-left", "bottom-left corner"]
        case .bottom: ["bottom centre", "bottom middle", "lower middle"]
        case .bottomRight: ["bottom right", "lower-right", "bottom-right corner"]
        }
    }
}

/// Writes captions for scenes. `canonical` gives one fixed wording (for evaluation prompts); `caption` draws
/// a template and synonyms from a seeded generator, so the same seed gives the same caption.
public enum ShapeCaptions {
    /// The canonical caption, e.g. "a large red circle at the top left on a white background", or for two
    /// objects "a large red circle at the top left and a small blue star at the bottom on a white background".
    public static func canonical(_ scene: ShapeScene) -> String {
        let things = scene.objects.map { o in
            withArticle("\(o.size.synonyms[0]) \(o.color.synonyms[0]) \(o.shape.synonyms[0])") + " " + o.position.phrases[0]
        }
        return things.joined(separator: " and ") + " on a \(scene.background.synonyms[0]) background"
    }

    /// A caption drawn from varied templates and synonyms. Every caption names each object's size, colour,
    /// shape and position; the background is named in all but about one caption in eight.
    public static func caption(_ scene: ShapeScene, random: inout SplitMix64) -> String {
        let words = scene.objects.map { o in
            Words(size: pick(o.size.synonyms, &random), color: pick(o.color.synonyms, &random),
                  shape: pick(o.shape.synonyms, &random), phrase: pick(o.position.phrases, &random),
                  label: pick(o.position.labels, &random))
        }
        let bg = pick(scene.background.synonyms, &random)
        let mentionBackground = random.next() % 8 != 0
        let template = Int(random.next() % 5)
        var text: String
        switch template {
        case 0:  // "a large red circle at the top left"
            text = words.map { withArticle("\($0.size) \($0.color) \($0.shape)") + " " + $0.phrase }.joined(separator: " and ")
            if mentionBackground { text += " on a \(bg) background" }
        case 1:  // "upper-left: big crimson disc, white backdrop"
            text = words.map { "\($0.label): \($0.size) \($0.color) \($0.shape)" }.joined(separator: "; ")
            if mentionBackground { text += ", \(bg) backdrop" }
        case 2:  // "white background with a large red circle at the top left"
            let things = words.map { withArticle("\($0.size) \($0.color) \($0.shape)") + " " + $0.phrase }
            text = mentionBackground ? withArticle("\(bg) background") + " with " + things.joined(separator: " and ")
                                     : "a picture of " + things.joined(separator: " and ")
        case 3:  // "at the top left, a red circle, large"
            text = words.map { "\($0.phrase), " + withArticle("\($0.color) \($0.shape)") + ", \($0.size)" }
                .joined(separator: "; ")
            if mentionBackground { text += "; the background is \(bg)" }
        default:  // "red circle (large) at the top left, white background"
            text = words.map { "\($0.color) \($0.shape) (\($0.size)) \($0.phrase)" }.joined(separator: " and ")
            if mentionBackground { text += ", \(bg) background" }
        }
        return text
    }

    private struct Words {
        var size, color, shape, phrase, label: String
    }

    private static func pick(_ options: [String], _ random: inout SplitMix64) -> String {
        options[Int(random.next() % UInt64(options.count))]
    }

    /// "a" or "an" before `phrase`, by its first letter (enough for this vocabulary).
    static func withArticle(_ phrase: String) -> String {
        guard let first = phrase.first else { return phrase }
        return ("aeiou".contains(first) ? "an " : "a ") + phrase
    }
}

/// What a caption says: its objects (centred, nominal scale) and its background when it names one.
public struct ParsedCaption: Sendable, Hashable {
    /// The objects in the order the caption names them; a position or size the caption leaves out is
    /// `.center` or `.large` here and listed in `unspecified`.
    public var objects: [ShapeObject]
    /// The background, when the caption names one.
    public var background: ShapeBackground?
    /// Attributes the caption leaves out for at least one object (`.position`, `.size`, `.background`):
    /// pass them to `ShapeScore(_:against:ignoring:)`.
    public var unspecified: Set<ShapeAttribute>

    /// What a caption with these objects and background says.
    public init(objects: [ShapeObject], background: ShapeBackground?, unspecified: Set<ShapeAttribute> = []) {
        self.objects = objects
        self.background = background
        self.unspecified = unspecified.union(background == nil ? [.background] : [])
    }

    /// The scene the caption asks for, with `fallback` as the background when it names none.
    public func scene(fallback: ShapeBackground = .white) -> ShapeScene {
        ShapeScene(background: background ?? fallback, objects: objects)
    }
}

extension ShapeCaptions {
    /// Reads a caption written by `caption` or `canonical` (or a prompt in the same words, such as "a red circle
    /// at the top left") back into the attributes it names, or nil when some object lacks a colour or a shape.
    /// Objects are the parts between " and " or ";"; words are matched whole, longest phrase first, using the
    /// synonym lists.
    public static func parse(_ text: String) -> ParsedCaption? {
        let tokens = tokenize(text)
        var background: ShapeBackground? = nil
        var segments: [[String]] = [[]]
        for token in tokens {
            if token == "and" || token == ";" {
                segments.append([])
            } else {
                segments[segments.count - 1].append(token)
            }
        }
        var objects: [ShapeObject] = []
        var unspecified = Set<ShapeAttribute>()
        for var segment in segments where !segment.isEmpty {
            // The background phrase ("on a white background", "white backdrop", "the background is white").
            if let i = segment.firstIndex(where: { $0 == "background" || $0 == "backdrop" }) {
                let window = max(0, i - 3) ..< min(segment.count, i + 4)
                if let bg = firstMatch(ShapeBackground.allCases.map { ($0, $0.synonyms) }, in: Array(segment[window])) {
                    background = bg.value
                    let words = (bg.range.lowerBound + window.lowerBound) ..< (bg.range.upperBound + window.lowerBound)
                    segment = segment.indices.filter { !words.contains($0) && $0 != i }.map { segment[$0] }
                }
            }
            let position = firstMatch(GridPosition.allCases.map { ($0, $0.phrases + $0.labels) }, in: segment)
            if let position { segment.removeSubrange(position.range) }
            let color = firstMatch(ShapeColor.allCases.map { ($0, $0.synonyms) }, in: segment)
            let shape = firstMatch(ShapeKind.allCases.map { ($0, $0.synonyms) }, in: segment)
            let size = firstMatch(ShapeSize.allCases.map { ($0, $0.synonyms) }, in: segment)
            if position == nil && color == nil && shape == nil && size == nil { continue }  // e.g. "a picture of"
            guard let color, let shape else { return nil }
            if position == nil { unspecified.insert(.position) }
            if size == nil { unspecified.insert(.size) }
            objects.append(ShapeObject(shape: shape.value, color: color.value, position: position?.value ?? .center,
                                       size: size?.value ?? .large))
        }
        return objects.isEmpty ? nil : ParsedCaption(objects: objects, background: background, unspecified: unspecified)
    }

    /// Lower-case words (letters, digits and inner hyphens); ";" is kept as a token, other punctuation dropped.
    static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = []
        var word = ""
        for ch in text.lowercased() {
            if ch.isLetter || ch.isNumber || (ch == "-" && !word.isEmpty) {
                word.append(ch)
            } else {
                if !word.isEmpty { tokens.append(word) }
                word = ""
                if ch == ";" { tokens.append(";") }
            }
        }
        if !word.isEmpty { tokens.append(word) }
        return tokens
    }

    /// The value whose phrase occurs in `tokens`, trying longer phrases first, with where it occurs.
    static func firstMatch<T>(_ options: [(T, [String])], in tokens: [String]) -> (value: T, range: Range<Int>)? {
        let phrases = options.flatMap { option in option.1.map { (option.0, tokenize($0)) } }
            .sorted { $0.1.count > $1.1.count }
        for (value, words) in phrases where words.count <= tokens.count {
            for start in 0 ... tokens.count - words.count where Array(tokens[start ..< start + words.count]) == words {
                return (value, start ..< start + words.count)
            }
        }
        return nil
    }
}
