/// An n-dimensional array with a shape, an element type and contiguous row-major storage.
///
/// Images and feature maps are channels-last: `[B, H, W, C]`. A tensor is a value: copies share storage until
/// one of them is written, which copies it first (mapped weights are never written in place).
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public let dtype: DType
    public private(set) var storage: TensorStorage
    /// Where this tensor's first element sits inside `storage`, in bytes.
    public private(set) var byteOffset: Int

    /// Number of elements (the product of the shape; 1 for a scalar with shape []).
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var byteCount: Int { count * dtype.size }

    // MARK: Creation

    /// A zero-filled tensor.
    public init(zeros shape: [Int], dtype: DType = .float32) {
        Tensor.checkShape(shape)
        self.shape = shape
        self.dtype = dtype
        storage = TensorStorage(byteCount: shape.reduce(1, *) * dtype.size)
        byteOffset = 0
    }

    /// Zeros over read-only storage that costs no memory until written (writing copies it first). Conversions of
    /// such a tensor (`toFloat32`, `permuted`) give read-only zeros again without touching memory, so a model can
    /// be built at full size from `WeightLoader(synthetic: .shapesOnly)` to check its parameter list.
    public init(readOnlyZeros shape: [Int], dtype: DType = .float32) {
        Tensor.checkShape(shape)
        self.shape = shape
        self.dtype = dtype
        storage = TensorStorage.readOnlyZeros(byteCount: shape.reduce(1, *) * dtype.size)
        byteOffset = 0
    }

    /// A tensor whose contents the caller fills completely before reading (skips the zero fill).
    public init(uninitialized shape: [Int], dtype: DType = .float32) {
        Tensor.checkShape(shape)
        self.shape = shape
        self.dtype = dtype
        storage = TensorStorage(uninitializedByteCount: shape.reduce(1, *) * dtype.size)
        byteOffset = 0
    }

    /// A view of existing storage (e.g. a region of a memory-mapped checkpoint); no copy.
    public init(shape: [Int], dtype: DType, storage: TensorStorage, byteOffset: Int = 0) {
        Tensor.checkShape(shape)
        let bytes = shape.reduce(1, *) * dtype.size
        precondition(byteOffset >= 0 && byteOffset + bytes <= storage.byteCount,
                     "Tensor: \(bytes) bytes at offset \(byteOffset) do not fit in a \(storage.byteCount)-byte storage")
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
        self.byteOffset = byteOffset
    }

    /// A float32 tensor holding `values` (row-major).
    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        self.init(uninitialized: shape, dtype: .float32)
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// An int32 tensor holding `values` (row-major).
    public init(int32 values: [Int32], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        self.init(uninitialized: shape, dtype: .int32)
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// A float32 tensor filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape, dtype: .float32)
        storage.pointer.bindMemory(to: Float.self, capacity: count).initialize(repeating: value, count: count)
    }

    private static func checkShape(_ shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
    }

    // MARK: Raw access

    /// Read-only access to the bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.pointer + byteOffset, count: byteCount))
    }

    /// Read-only access to the elements as `T`, whose size must match the dtype's.
    public func withUnsafeBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.size, "Tensor: cannot view \(dtype) elements as \(T.self)")
        let p = (storage.pointer + byteOffset).bindMemory(to: T.self, capacity: count)
        return try body(UnsafeBufferPointer(start: p, count: count))
    }

    /// Read-only float32 elements (the common case in compute code).
    public func withFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "Tensor: expected float32, have \(dtype)")
        return try withUnsafeBufferPointer(as: Float.self, body)
    }

    /// Write access to the elements; copies the storage first when it is shared or mapped.
    public mutating func withUnsafeMutableBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.size, "Tensor: cannot view \(dtype) elements as \(T.self)")
        makeUniqueAndWritable()
        let p = (storage.pointer + byteOffset).bindMemory(to: T.self, capacity: count)
        return try body(UnsafeMutableBufferPointer(start: p, count: count))
    }

    /// Writable float32 elements.
    public mutating func withMutableFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "Tensor: expected float32, have \(dtype)")
        return try withUnsafeMutableBufferPointer(as: Float.self, body)
    }

    private mutating func makeUniqueAndWritable() {
        if isKnownUniquelyReferenced(&storage) && storage.isWritable { return }
        let fresh = TensorStorage(uninitializedByteCount: byteCount)
        fresh.pointer.copyMemory(from: storage.pointer + byteOffset, byteCount: byteCount)
        storage = fresh
        byteOffset = 0
    }

    // MARK: Shape

    /// The same elements under another shape with the same count; `-1` in one place is inferred. No copy.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "Tensor.reshaped: cannot infer -1 in \(newShape) for \(count) elements")
            resolved[inferred] = count / known
        }
        precondition(resolved.reduce(1, *) == count, "Tensor.reshaped: \(shape) (\(count) elements) cannot become \(newShape)")
        var t = self
        t.shape = resolved
        return t
    }

    /// Rows `range` of the first dimension. No copy.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "Tensor.slice: \(range) outside the first dimension of \(shape)")
        let rowBytes = shape.dropFirst().reduce(1, *) * dtype.size
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, dtype: dtype, storage: storage, byteOffset: byteOffset + range.lowerBound * rowBytes)
    }

    // MARK: Conversion

    /// The elements converted to float32 (a copy, also when already float32, so the result is writable).
    public func toFloat32() -> Tensor {
        if storage.isReadOnlyZeros { return Tensor(readOnlyZeros: shape) }
        var out = Tensor(uninitialized: shape, dtype: .float32)
        let n = count
        let src = storage.pointer + byteOffset
        out.withMutableFloats { dst in
            switch dtype {
            case .float32: dst.baseAddress!.update(from: src.assumingMemoryBound(to: Float.self), count: n)
            case .float64: let s = src.assumingMemoryBound(to: Double.self); for i in 0..<n { dst[i] = Float(s[i]) }
            case .float16: let s = src.assumingMemoryBound(to: UInt16.self); for i in 0..<n { dst[i] = float16ToFloat(s[i]) }
            case .bfloat16: let s = src.assumingMemoryBound(to: UInt16.self); for i in 0..<n { dst[i] = bfloat16ToFloat(s[i]) }
            case .int64: let s = src.assumingMemoryBound(to: Int64.self); for i in 0..<n { dst[i] = Float(s[i]) }
            case .int32: let s = src.assumingMemoryBound(to: Int32.self); for i in 0..<n { dst[i] = Float(s[i]) }
            case .int16: let s = src.assumingMemoryBound(to: Int16.self); for i in 0..<n { dst[i] = Float(s[i]) }
            case .int8: let s = src.assumingMemoryBound(to: Int8.self); for i in 0..<n { dst[i] = Float(s[i]) }
            case .uint8, .bool: let s = src.assumingMemoryBound(to: UInt8.self); for i in 0..<n { dst[i] = Float(s[i]) }
            }
        }
        return out
    }

    /// The elements converted from float32 to a storage dtype (float32, float16 or bfloat16).
    public func converted(to target: DType) -> Tensor {
        precondition(dtype == .float32, "Tensor.converted(to:): source must be float32, have \(dtype)")
        switch target {
        case .float32:
            return toFloat32()
        case .float16, .bfloat16:
            var out = Tensor(uninitialized: shape, dtype: target)
            withFloats { src in
                out.withUnsafeMutableBufferPointer(as: UInt16.self) { dst in
                    if target == .float16 { for i in 0..<src.count { dst[i] = floatToFloat16(src[i]) } }
                    else { for i in 0..<src.count { dst[i] = floatToBFloat16(src[i]) } }
                }
            }
            return out
        default:
            preconditionFailure("Tensor.converted(to:): \(target) is not a floating-point storage type")
        }
    }

    /// The elements converted to Int (for token tensors of any integer dtype).
    public func integers() -> [Int] {
        let src = storage.pointer + byteOffset
        let n = count
        switch dtype {
        case .int64: return (0..<n).map { Int(src.assumingMemoryBound(to: Int64.self)[$0]) }
        case .int32: return (0..<n).map { Int(src.assumingMemoryBound(to: Int32.self)[$0]) }
        case .int16: return (0..<n).map { Int(src.assumingMemoryBound(to: Int16.self)[$0]) }
        case .int8: return (0..<n).map { Int(src.assumingMemoryBound(to: Int8.self)[$0]) }
        case .uint8, .bool: return (0..<n).map { Int(src.assumingMemoryBound(to: UInt8.self)[$0]) }
        default: preconditionFailure("Tensor.integers(): \(dtype) is not an integer type")
        }
    }

    /// How many elements are NaN or infinite (0 for integer dtypes). Half-precision elements are tested on their
    /// bits (every exponent bit set), without converting them.
    public var nonFiniteCount: Int {
        if storage.isReadOnlyZeros { return 0 }
        let src = storage.pointer + byteOffset
        let n = count
        func halves(_ exponent: UInt16) -> Int {
            let s = src.assumingMemoryBound(to: UInt16.self)
            var found = 0
            for i in 0..<n where s[i] & exponent == exponent { found += 1 }
            return found
        }
        switch dtype {
        case .float32:
            let s = src.assumingMemoryBound(to: Float.self)
            var found = 0
            for i in 0..<n where !s[i].isFinite { found += 1 }
            return found
        case .float64:
            let s = src.assumingMemoryBound(to: Double.self)
            var found = 0
            for i in 0..<n where !s[i].isFinite { found += 1 }
            return found
        case .float16: return halves(0x7C00)
        case .bfloat16: return halves(0x7F80)
        case .int64, .int32, .int16, .int8, .uint8, .bool: return 0
        }
    }

    /// The elements as [Float] (converted from any dtype).
    public var floats: [Float] {
        let f = dtype == .float32 ? self : toFloat32()
        return f.withFloats { Array($0) }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor(\(dtype.rawValue), \(shape))" }
}
