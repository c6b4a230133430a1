// What a scene holds, as a fixed vector of yes/no labels, for auxiliary supervision of models trained on the
// shapes dataset (CLIP's label head, `paella train clip --label-weight`). Contrastive training alone left the
// bundled CLIP nearly blind to shape (a caption with the shape changed embedded at cosine 0.96 to the original),
// because two images of different shapes in a batch almost always differ in colour or position too; labels name
// each attribute directly, and the per-cell labels bind a shape and a colour to where they are.

/// The yes/no labels of a scene, in a fixed order (`names`).
public enum ShapeLabels {
    /// One name per label, in order: which shapes, colours, cells and sizes occur anywhere, the background,
    /// whether there are two objects, then for each cell which shape and which colour sits there.
    public static let names: [String] = {
        var names = ShapeKind.allCases.map { "shape \($0.rawValue)" }
            + ShapeColor.allCases.map { "color \($0.rawValue)" }
            + GridPosition.allCases.map { "position \($0.rawValue)" }
            + ShapeSize.allCases.map { "size \($0.rawValue)" }
            + ShapeBackground.allCases.map { "background \($0.rawValue)" }
            + ["two objects"]
        for cell in GridPosition.allCases {
            names += ShapeKind.allCases.map { "\(cell.rawValue): \($0.rawValue)" }
            names += ShapeColor.allCases.map { "\(cell.rawValue): \($0.rawValue)" }
        }
        return names
    }()

    public static var count: Int { names.count }

    /// The labels of `scene`: 1 where the label's statement is true, 0 elsewhere (`count` values).
    public static func labels(of scene: ShapeScene) -> [Float] {
        var labels = [Float](repeating: 0, count: count)
        let shapes = ShapeKind.allCases.count, colors = ShapeColor.allCases.count, cells = GridPosition.allCases.count
        let sizes = ShapeSize.allCases.count, backgrounds = ShapeBackground.allCases.count
        let perCell = shapes + colors
        let cellBase = shapes + colors + cells + sizes + backgrounds + 1
        func index<T: CaseIterable & Equatable>(_ value: T) -> Int { T.allCases.firstIndex(of: value).map { T.allCases.distance(from: T.allCases.startIndex, to: $0) } ?? 0 }
        for object in scene.objects {
            let cell = index(object.position)
            labels[index(object.shape)] = 1
            labels[shapes + index(object.color)] = 1
            labels[shapes + colors + cell] = 1
            labels[shapes + colors + cells + index(object.size)] = 1
            labels[cellBase + cell * perCell + index(object.shape)] = 1
            labels[cellBase + cell * perCell + shapes + index(object.color)] = 1
        }
        labels[shapes + colors + cells + sizes + index(scene.background)] = 1
        labels[cellBase - 1] = scene.objects.count == 2 ? 1 : 0
        return labels
    }
}
