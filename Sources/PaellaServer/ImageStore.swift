import Foundation

/// Finished PNGs for `response_format=url`, in memory, the oldest dropped first once `capacity` are kept.
/// Their ids are random UUIDs (after the replica's name, if it has one): the URL itself is the permission to read the image (as OpenAI's signed URLs
/// are), so a browser or a client without the API key can fetch what it was given.
public actor ImageStore {
    public let capacity: Int
    private let makeID: @Sendable () -> String
    private var images: [String: [UInt8]] = [:]
    private var order: [String] = []

    /// `makeID` names each new image (ServerConfiguration.makeID).
    public init(capacity: Int, makeID: @escaping @Sendable () -> String) {
        precondition(capacity >= 1, "ImageStore: capacity must be at least 1")
        self.capacity = capacity
        self.makeID = makeID
    }

    /// Keeps `png` and returns its id.
    public func add(_ png: [UInt8]) -> String {
        let id = makeID()
        images[id] = png
        order.append(id)
        if order.count > capacity { images[order.removeFirst()] = nil }
        return id
    }

    public func png(_ id: String) -> [UInt8]? { images[id] }

    public var count: Int { images.count }
}
