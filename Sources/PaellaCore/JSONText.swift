/// Whether a terminal would act on `scalar` instead of showing it: C0 and C1 control characters (ESC starts
/// colour and cursor sequences, CR and BS overwrite what was printed), DEL, and the bidirectional controls that
/// reorder what follows them.
public func isTerminalControl(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
    default: return false
    }
}

/// `text` as a JSON string literal, quoted, with the escapes JSON requires (used by every JSON writer here).
/// Every terminal control (`isTerminalControl`) and the line and paragraph separators U+2028/U+2029 are written
/// as `\uXXXX` too: the same string to a JSON reader, but JSON printed to a terminal cannot move its cursor or
/// reorder its text when a prompt or a file name carries such characters.
public func jsonStringLiteral(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if isTerminalControl(scalar) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
