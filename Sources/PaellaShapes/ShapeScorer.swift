import Foundation

// Scores an analysed image against the scene that was asked for, per attribute, and tallies many scores.

/// The attributes the scorer checks.
public enum ShapeAttribute: String, Sendable, Hashable, CaseIterable {
    case color, shape, position, size, count, background
}

/// How well one image matches its scene.
public struct ShapeScore: Sendable, Hashable {
    /// For each object of the scene, in order: the attributes the matched detection got right (empty when no
    /// detection was matched to it).
    public var objects: [Set<ShapeAttribute>]
    /// Whether as many objects were found as the scene has.
    public var countCorrect: Bool
    /// Whether the background was recognised as the scene's (false when it matched no palette background).
    public var backgroundCorrect: Bool
    /// Attributes not scored (e.g. those a prompt did not name); a tally leaves them out.
    public var ignored: Set<ShapeAttribute>

    /// Scores `analysis` against `scene`. Scene objects are matched one-to-one to detections so that the
    /// number of agreeing attributes is largest (colour counts double, as colours are unique in a scene);
    /// ties go to the larger detection. Attributes in `ignored` are neither matched on nor counted.
    public init(_ analysis: ShapeAnalysis, against scene: ShapeScene, ignoring ignored: Set<ShapeAttribute> = []) {
        let detections = Array(analysis.objects.prefix(8))
        func agreement(_ o: ShapeObject, _ d: DetectedObject) -> Set<ShapeAttribute> {
            var s = Set<ShapeAttribute>()
            if o.color == d.color { s.insert(.color) }
            if o.shape == d.shape { s.insert(.shape) }
            if o.position == d.position { s.insert(.position) }
            if o.size == d.size { s.insert(.size) }
            return s.subtracting(ignored)
        }
        func weight(_ s: Set<ShapeAttribute>) -> Int { s.count + (s.contains(.color) ? 1 : 0) }
        // Exhaustive one-to-one matching (scenes have at most two objects).
        var best: [Set<ShapeAttribute>] = scene.objects.map { _ in [] }
        var bestWeight = -1
        func search(_ i: Int, _ used: Set<Int>, _ current: [Set<ShapeAttribute>], _ total: Int) {
            if i == scene.objects.count {
                if total > bestWeight { (best, bestWeight) = (current, total) }
                return
            }
            search(i + 1, used, current + [[]], total)
            for j in detections.indices where !used.contains(j) {
                let s = agreement(scene.objects[i], detections[j])
                search(i + 1, used.union([j]), current + [s], total + weight(s) + 1)
            }
        }
        search(0, [], [], 0)
        objects = best
        countCorrect = analysis.objects.count == scene.objects.count
        backgroundCorrect = analysis.backgroundName == scene.background
        self.ignored = ignored
    }
}

/// Accuracy per attribute over many scored images: colour, shape, position and size per scene object, count
/// and background per image.
public struct ShapeScoreTally: Sendable, Hashable {
    /// Checks passed, per attribute.
    public private(set) var correct: [ShapeAttribute: Int] = [:]
    /// Checks made, per attribute.
    public private(set) var total: [ShapeAttribute: Int] = [:]
    /// Images added.
    public private(set) var images = 0

    /// An empty tally.
    public init() {}

    /// Adds one image's score.
    public mutating func add(_ score: ShapeScore) {
        images += 1
        for matched in score.objects {
            for a in [ShapeAttribute.color, .shape, .position, .size] where !score.ignored.contains(a) {
                total[a, default: 0] += 1
                if matched.contains(a) { correct[a, default: 0] += 1 }
            }
        }
        if !score.ignored.contains(.count) {
            total[.count, default: 0] += 1
            if score.countCorrect { correct[.count, default: 0] += 1 }
        }
        if !score.ignored.contains(.background) {
            total[.background, default: 0] += 1
            if score.backgroundCorrect { correct[.background, default: 0] += 1 }
        }
    }

    /// Fraction right for `attribute` (0 when nothing was scored).
    public func accuracy(_ attribute: ShapeAttribute) -> Double {
        let n = total[attribute] ?? 0
        return n == 0 ? 0 : Double(correct[attribute] ?? 0) / Double(n)
    }

    /// Accuracy per scored attribute, keyed by its name.
    public var accuracies: [String: Double] {
        Dictionary(uniqueKeysWithValues: ShapeAttribute.allCases.filter { (total[$0] ?? 0) > 0 }.map { ($0.rawValue, accuracy($0)) })
    }

    /// Fraction right over all attribute checks together.
    public var overallAccuracy: Double {
        let n = total.values.reduce(0, +)
        return n == 0 ? 0 : Double(correct.values.reduce(0, +)) / Double(n)
    }

    /// One line per scored attribute: "color       98.5%  (197/200)".
    public var summary: String {
        ShapeAttribute.allCases.filter { (total[$0] ?? 0) > 0 }.map { a in
            let pct = (accuracy(a) * 1000).rounded() / 10
            return a.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                + "\(pct)%  (\(correct[a] ?? 0)/\(total[a] ?? 0))"
        }.joined(separator: "\n")
    }
}
