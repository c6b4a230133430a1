// Hard negatives for contrastive training on the shapes dataset: a scene's twin differs in exactly one attribute
// (colour, shape or position) of one object. In a batch of random scenes, colour, shape and background almost
// always identify a caption's image, so CLIP learns little about position or shape; a twin in the same batch
// leaves only that attribute to tell the pair apart.
import PaellaCore

public enum ShapeTwins {
    /// The attributes a twin can change.
    public static let attributes: [ShapeAttribute] = [.color, .shape, .position]

    /// A scene like `scene` with `change` (one of `attributes`) applied to one of its objects (picked by
    /// `random`), still a valid training scene: the objects keep different colours and cells, and no held-out
    /// combination appears. Nil when no such change exists for that object, or `change` is not in `attributes`.
    public static func twin(of scene: ShapeScene, changing change: ShapeAttribute,
                            random: inout SplitMix64) -> ShapeScene? {
        guard !scene.objects.isEmpty else { return nil }
        let which = Int(random.next() % UInt64(scene.objects.count))
        let others = scene.objects.enumerated().filter { $0.offset != which }.map(\.element)
        var candidates: [ShapeObject] = []
        let object = scene.objects[which]
        switch change {
        case .color:
            candidates = ShapeColor.allCases.filter { c in c != object.color && !others.contains { $0.color == c } }
                .map { var o = object; o.color = $0; return o }
        case .shape:
            candidates = ShapeKind.allCases.filter { $0 != object.shape }.map { var o = object; o.shape = $0; return o }
        case .position:
            candidates = GridPosition.allCases.filter { p in p != object.position && !others.contains { $0.position == p } }
                .map { var o = object; o.position = $0; return o }
        case .size, .count, .background:
            return nil
        }
        candidates.removeAll { HeldOutCombination.isHeldOut($0) }
        guard !candidates.isEmpty else { return nil }
        var twin = scene
        twin.objects[which] = candidates[Int(random.next() % UInt64(candidates.count))]
        return twin
    }

    /// Captions of `scene` and `twin` drawn with the same template and words (one generator state for both), so
    /// the two differ only where the scenes do.
    public static func captions(_ scene: ShapeScene, _ twin: ShapeScene, seed: UInt64) -> (String, String) {
        var a = SplitMix64(seed: seed), b = SplitMix64(seed: seed)
        return (ShapeCaptions.caption(scene, random: &a), ShapeCaptions.caption(twin, random: &b))
    }
}
