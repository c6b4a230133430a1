/// Element types a tensor can hold. Compute is float32; float16 and bfloat16 are storage formats for weights;
/// int32 and int64 hold tokens. The others exist so that any checkpoint can be read and reported faithfully.
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32, float16, bfloat16, float64
    case int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64: return true
        default: return false
        }
    }
}

// MARK: - Half-precision conversions (exact, round-to-nearest-even on the way down)

/// bfloat16 is the top half of a float32: widening is a shift, narrowing rounds to nearest even.
@inline(__always) public func bfloat16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

@inline(__always) public func floatToBFloat16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }  // keep it a quiet NaN
    let roundingBias = UInt32(0x7FFF) + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
}

@inline(__always) public func float16ToFloat(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

@inline(__always) public func floatToFloat16(_ value: Float) -> UInt16 {
    Float16(value).bitPattern
}
