// Seeded sampling of shape scenes with a held-out split of attribute combinations for evaluation.
import PaellaCore

/// Which part of the dataset a scene belongs to.
public enum ShapeSplit: String, Sendable, Hashable, Codable, CaseIterable {
    /// Scenes with no held-out combination anywhere: what models are trained on.
    case train
    /// Scenes whose first object is a held-out combination: what evaluation prompts are drawn from.
    case heldout
}

/// An attribute combination that never appears in the training split. A `nil` attribute matches any value.
public struct HeldOutCombination: Sendable, Hashable, Codable, CustomStringConvertible {
    public var shape: ShapeKind?
    public var color: ShapeColor?
    public var position: GridPosition?

    /// The combination of the given attributes (at least one should be given).
    public init(shape: ShapeKind? = nil, color: ShapeColor? = nil, position: GridPosition? = nil) {
        self.shape = shape
        self.color = color
        self.position = position
    }

    /// Whether `object` has this combination.
    public func matches(_ object: ShapeObject) -> Bool {
        (shape.map { $0 == object.shape } ?? true) && (color.map { $0 == object.color } ?? true)
            && (position.map { $0 == object.position } ?? true)
    }

    public var description: String {
        [color?.rawValue, shape.map { $0.rawValue + "s" } ?? (color == nil ? nil : "objects"),
         position.map { "at the " + $0.rawValue }].compactMap { $0 }.joined(separator: " ")
    }

    /// The held-out combinations: every purple triangle (a colour x shape pair the model must compose from
    /// other purple things and other triangles), plus three colour x position and one shape x position pairs.
    /// Each single combination covers 1/48 or 1/72 of objects, so the training split keeps every colour,
    /// shape and position in plenty.
    public static let all: [HeldOutCombination] = [
        HeldOutCombination(shape: .triangle, color: .purple),
        HeldOutCombination(color: .green, position: .bottomRight),
        HeldOutCombination(color: .orange, position: .center),
        HeldOutCombination(color: .blue, position: .topLeft),
        HeldOutCombination(shape: .star, position: .left),
    ]

    /// Whether any object of `scene` has a held-out combination.
    public static func isHeldOut(_ scene: ShapeScene) -> Bool {
        scene.objects.contains { object in all.contains { $0.matches(object) } }
    }

    /// Whether `object` has a held-out combination.
    public static func isHeldOut(_ object: ShapeObject) -> Bool { all.contains { $0.matches(object) } }
}

/// Draws scenes from a seed. Scene `index` depends only on (seed, index, split), so any subset of a dataset
/// can be regenerated or produced in parallel, and the same arguments always give the same scenes and captions.
public struct ShapeSampler: Sendable {
    /// The dataset's seed.
    public var seed: UInt64
    /// Which split the scenes come from.
    public var split: ShapeSplit
    /// Probability that a scene has two objects instead of one.
    public var twoObjectProbability: Float
    /// How much objects move and grow around their nominal place and size: 1 draws offsets up to
    /// `ShapeScene.maxJitter` and scales in `ShapeScene.scaleRange`, 0 puts every object exactly at its nominal
    /// place and size. Every value draws the same random numbers, so the scenes differ in nothing else.
    public var placementVariation: Float

    /// A sampler of `split` scenes from `seed`; 40% of scenes have two objects by default.
    public init(seed: UInt64, split: ShapeSplit = .train, twoObjectProbability: Float = 0.4, placementVariation: Float = 1) {
        precondition((0 ... 1).contains(twoObjectProbability), "ShapeSampler: probability \(twoObjectProbability) outside [0, 1]")
        precondition((0 ... 1).contains(placementVariation), "ShapeSampler: placement variation \(placementVariation) outside [0, 1]")
        self.seed = seed
        self.split = split
        self.twoObjectProbability = twoObjectProbability
        self.placementVariation = placementVariation
    }

    /// The generator for scene `index`: the seed and the index mixed through SplitMix64's finaliser, with the
    /// split folded in so the two splits are independent streams.
    public func random(index: Int) -> SplitMix64 {
        var mixer = SplitMix64(seed: seed ^ (split == .train ? 0 : 0x6A09_E667_F3BC_C908))
        let base = mixer.next()
        var indexMixer = SplitMix64(seed: base &+ UInt64(truncatingIfNeeded: index) &* 0xD1B5_4A32_D192_ED03)
        return SplitMix64(seed: indexMixer.next())
    }

    /// Scene `index` and its caption.
    public func sample(index: Int) -> (scene: ShapeScene, caption: String) {
        var random = random(index: index)
        let scene = drawScene(&random)
        let caption = ShapeCaptions.caption(scene, random: &random)
        return (scene, caption)
    }

    /// `count` evaluation prompts: scenes of `split` (held-out by default) with their canonical captions
    /// ("a large purple triangle at the top left on a white background"). With the default
    /// `twoObjectProbability` of 0 every scene has one object, so each prompt tests one combination.
    public static func prompts(count: Int, seed: UInt64, split: ShapeSplit = .heldout,
                               twoObjectProbability: Float = 0) -> [(scene: ShapeScene, prompt: String)] {
        let sampler = ShapeSampler(seed: seed, split: split, twoObjectProbability: twoObjectProbability)
        return (0 ..< max(count, 0)).map { index in
            let scene = sampler.scene(index: index)
            return (scene, ShapeCaptions.canonical(scene))
        }
    }

    /// Scene `index` (the same scene `sample(index:)` returns).
    public func scene(index: Int) -> ShapeScene { sample(index: index).scene }

    /// Draws a scene of this sampler's split. Training scenes are redrawn until no object is held out (about
    /// 1 draw in 9 is rejected); held-out scenes start with an object drawn from a held-out combination and may
    /// add a second object of any kind.
    func drawScene(_ random: inout SplitMix64) -> ShapeScene {
        while true {
            let background = pick(ShapeBackground.allCases, &random)
            let count = random.unitFloat() < twoObjectProbability ? 2 : 1
            var objects: [ShapeObject] = []
            if split == .heldout {
                let combination = pick(HeldOutCombination.all, &random)
                var first = drawObject(&random)
                if let shape = combination.shape { first.shape = shape }
                if let color = combination.color { first.color = color }
                if let position = combination.position { first.position = position }
                objects.append(first)
            }
            while objects.count < count {
                let object = drawObject(&random)
                if objects.contains(where: { $0.position == object.position || $0.color == object.color }) { continue }
                objects.append(object)
            }
            let scene = ShapeScene(background: background, objects: objects)
            if split == .train && HeldOutCombination.isHeldOut(scene) { continue }
            return scene
        }
    }

    private func drawObject(_ random: inout SplitMix64) -> ShapeObject {
        let j = ShapeScene.maxJitter
        var object = ShapeObject(shape: pick(ShapeKind.allCases, &random), color: pick(ShapeColor.allCases, &random),
                                 position: pick(GridPosition.allCases, &random), size: pick(ShapeSize.allCases, &random),
                                 offsetX: random.float(-j, j), offsetY: random.float(-j, j),
                                 scale: random.float(ShapeScene.scaleRange.lowerBound, ShapeScene.scaleRange.upperBound))
        if placementVariation != 1 {
            object.offsetX = object.offsetX * placementVariation + 0  // + 0 turns -0 into 0 (metadata shows 0, not -0)
            object.offsetY = object.offsetY * placementVariation + 0
            object.scale = 1 + (object.scale - 1) * placementVariation
        }
        return object
    }

    private func pick<T>(_ options: [T], _ random: inout SplitMix64) -> T {
        options[Int(random.next() % UInt64(options.count))]
    }
}
