// open_clip/tokenizer.py `basic_clean` + `whitespace_clean` + lower (the "lower" clean), without the ftfy package:
// the repairs ftfy.fix_text makes to ordinary text are reproduced, its mojibake detection is not (see below).
import Foundation

/// OpenCLIP's text cleaning before tokenization: a subset of `ftfy.fix_text`, HTML unescaping, whitespace
/// collapsed to single spaces, leading/trailing whitespace removed, lower case.
///
/// From `ftfy.fix_text` (ftfy 6, default configuration) this reproduces: Unicode NFC normalization, curly
/// quotes made straight (`uncurl_quotes`), Latin ligatures split (`fix_latin_ligatures`), full-width ASCII and
/// the ideographic space made half-width and half-width katakana full-width (`fix_character_width`), control
/// characters removed (`remove_control_chars`), and ftfy's extra HTML unescape when the text has no `<`
/// (`unescape_html="auto"`); line-break repair is subsumed by the whitespace collapse. **Not reproduced**:
/// mojibake detection and repair (`fix_encoding`, `fix_c1_controls`, `decode_inconsistent_utf8`,
/// `replace_lossy_sequences`, `restore_byte_a0`; e.g. ftfy reads "İ½" as mis-decoded UTF-8 and makes it "ݽ"),
/// `remove_terminal_escapes`, and named HTML entities beyond the table in `htmlUnescape` (Python knows all 2231
/// HTML5 names; unknown names are left as written).
public enum CLIPTextCleaning {
    /// The cleaned, lower-cased text that OpenCLIP's `SimpleTokenizer.encode` splits into words.
    public static func clean(_ text: String) -> String {
        String(String.UnicodeScalarView(cleanScalars(text)))
    }

    /// `clean` as an array of Unicode scalars (what the tokenizer scans; no string is built on the way).
    public static func cleanScalars(_ text: String) -> [Unicode.Scalar] {
        var s = ftfyRepairs(text)
        // ftfy unescapes once (only when the text has no '<'), then basic_clean calls html.unescape twice.
        if s.contains("&") {
            if !s.contains("<") { s = htmlUnescape(s) }
            s = htmlUnescape(htmlUnescape(s))
        }
        return lowercased(collapseWhitespace(s))
    }

    /// `" ".join(text.split())`: runs of Python whitespace become one space, none at either end.
    public static func collapseWhitespace(_ text: String) -> String {
        String(String.UnicodeScalarView(collapseWhitespace(Array(text.unicodeScalars))))
    }

    static func collapseWhitespace(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var pendingSpace = false
        for s in text {
            if isPythonWhitespace(s) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" "); pendingSpace = false }
                out.append(s)
            }
        }
        return out
    }

    /// Python's `str.lower()`: full lower-case mappings (U+0130 becomes "i" + U+0307) and capital sigma as final
    /// sigma at the end of a word (after a cased letter, not before one, case-ignorable characters skipped).
    static func lowercased(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        func casedNeighbour(from start: Int, step: Int) -> Bool {
            var j = start
            while j >= 0 && j < text.count && text[j].properties.isCaseIgnorable { j += step }
            return j >= 0 && j < text.count && text[j].properties.isCased
        }
        for (i, s) in text.enumerated() {
            if s == "\u{3A3}" && casedNeighbour(from: i - 1, step: -1) && !casedNeighbour(from: i + 1, step: 1) {
                out.append("\u{3C2}")
            } else if s.isASCII {
                out.append(s.value >= 0x41 && s.value <= 0x5A ? Unicode.Scalar(UInt8(s.value) + 0x20) : s)
            } else if s.properties.changesWhenLowercased {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(s)
            }
        }
        return out
    }

    /// Python's `str.isspace`: Unicode White_Space plus the ASCII separators U+001C...U+001F.
    static func isPythonWhitespace(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s == " " || (s.value >= 0x09 && s.value <= 0x0D) || (s.value >= 0x1C && s.value <= 0x1F) }
        return s.properties.isWhitespace
    }

    /// The ftfy repairs listed on the type, then NFC.
    static func ftfyRepairs(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.utf8.count)
        var stable = true
        for s in text.unicodeScalars {
            switch s.value {
            case 0x20 ..< 0x7F, 0x09, 0x0A, 0x0C, 0x0D: out.append(s)
            case 0x02BC, 0x2018 ... 0x201B: out.append("'")
            case 0x201C ... 0x201F: out.append("\"")
            case 0xFB00: out += "ff".unicodeScalars
            case 0xFB01: out += "fi".unicodeScalars
            case 0xFB02: out += "fl".unicodeScalars
            case 0xFB03: out += "ffi".unicodeScalars
            case 0xFB04: out += "ffl".unicodeScalars
            case 0xFB05: out += "\u{17F}t".unicodeScalars
            case 0xFB06: out += "st".unicodeScalars
            case 0x0132: out += "IJ".unicodeScalars
            case 0x0133: out += "ij".unicodeScalars
            case 0xFF01 ... 0xFF5E: out.append(Unicode.Scalar(s.value - 0xFEE0)!)
            case 0xFF5F ... 0xFFEF:  // other half-/full-width forms, e.g. half-width katakana (NFKC per character)
                out += String(Character(s)).precomposedStringWithCompatibilityMapping.unicodeScalars
                stable = false  // a half-width voiced mark becomes a combining mark that NFC joins to its kana
            case 0x3000: out.append(" ")
            // remove_control_chars (tab, line feed, form feed and carriage return are kept)
            case 0x00 ... 0x08, 0x0B, 0x0E ... 0x1F, 0x7F, 0x206A ... 0x206F, 0xFEFF, 0xFFF9 ... 0xFFFC,
                 0x1D173 ... 0x1D17A, 0xE0000 ... 0xE007F:
                continue
            default:
                out.append(s)
                stable = stable && isStableUnderNFC(s)
            }
        }
        // Normalization is the slow part: skip it for scripts that NFC leaves alone.
        if stable { return out }
        return Array(String(String.UnicodeScalarView(out)).precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    /// Whether NFC keeps `s` and never composes it with a neighbour (a conservative subset: Latin-1 and Latin
    /// Extended, kana, CJK ideographs, Hangul syllables, emoji; combining marks and the rest say no).
    static func isStableUnderNFC(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0 ..< 0x300, 0x3040 ... 0x3096, 0x30A0 ... 0x30FF, 0x4E00 ... 0x9FFF, 0xAC00 ... 0xD7A3, 0x1F300 ... 0x1FAFF:
            return true
        default:
            return false
        }
    }

    /// Python's `html.unescape`: numeric references (`&#38;`, `&#x26;`, semicolon optional, with its
    /// replacements for invalid code points) and the named references in `namedEntities`.
    public static func htmlUnescape(_ text: String) -> String {
        String(String.UnicodeScalarView(htmlUnescape(Array(text.unicodeScalars))))
    }

    static func htmlUnescape(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard s.contains("&") else { return s }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            guard s[i] == "&", i + 1 < s.count else { out.append(s[i]); i += 1; continue }
            if let (replacement, length) = characterReference(s, at: i) {
                out += replacement.unicodeScalars
                i += length
            } else {
                out.append(s[i]); i += 1
            }
        }
        return out
    }

    /// The replacement and length of the character reference starting with '&' at `start`, if any.
    private static func characterReference(_ s: [Unicode.Scalar], at start: Int) -> (String, Int)? {
        var i = start + 1
        if s[i] == "#" {
            i += 1
            let hex = i < s.count && (s[i] == "x" || s[i] == "X")
            if hex { i += 1 }
            let digitsStart = i
            var value: UInt64 = 0
            while i < s.count, let d = hexDigit(s[i]), hex || d < 10 {
                value = min(value * (hex ? 16 : 10) + UInt64(d), 0x11_0000)
                i += 1
            }
            guard i > digitsStart else { return nil }
            if i < s.count && s[i] == ";" { i += 1 }
            return (numericReplacement(value), i - start)
        }
        // Named: up to 32 characters other than tab, newline, form feed, space, '<', '&', '#', ';'.
        var end = i
        while end < s.count, end - i < 32, !"\t\n\u{0C} <&#;".unicodeScalars.contains(s[end]) { end += 1 }
        let name = String(String.UnicodeScalarView(s[i ..< end]))
        if end < s.count, s[end] == ";", let r = namedEntities[name] { return (r.text, end + 1 - start) }
        // Without ';', the longest prefix that is a legacy name (one HTML allows without semicolon).
        var length = name.unicodeScalars.count
        while length > 1 {
            let prefix = String(String.UnicodeScalarView(s[i ..< i + length]))
            if let r = namedEntities[prefix], r.legacy { return (r.text, length + 1) }
            length -= 1
        }
        return nil
    }

    private static func hexDigit(_ c: Unicode.Scalar) -> Int? {
        switch c.value {
        case 0x30 ... 0x39: return Int(c.value - 0x30)
        case 0x41 ... 0x46: return Int(c.value - 0x41 + 10)
        case 0x61 ... 0x66: return Int(c.value - 0x61 + 10)
        default: return nil
        }
    }

    /// Python's `html._replace_charref` for a numeric reference.
    private static func numericReplacement(_ value: UInt64) -> String {
        if let windows1252 = invalidCharacterReferences[value] { return windows1252 }
        if (0xD800 ... 0xDFFF).contains(value) || value > 0x10FFFF { return "\u{FFFD}" }
        if (0x01 ... 0x08).contains(value) || (0x0E ... 0x1F).contains(value) || (0x7F ... 0x9F).contains(value)
            || (0xFDD0 ... 0xFDEF).contains(value) || value == 0x0B || (value & 0xFFFE) == 0xFFFE {
            return ""
        }
        return String(Unicode.Scalar(UInt32(value)).map(Character.init) ?? "\u{FFFD}")
    }

    /// Python's `html._invalid_charrefs`: NUL, CR and the C1 range read as Windows-1252.
    private static let invalidCharacterReferences: [UInt64: String] = [
        0x00: "\u{FFFD}", 0x0D: "\r", 0x80: "\u{20AC}", 0x81: "\u{81}", 0x82: "\u{201A}", 0x83: "\u{0192}",
        0x84: "\u{201E}", 0x85: "\u{2026}", 0x86: "\u{2020}", 0x87: "\u{2021}", 0x88: "\u{02C6}", 0x89: "\u{2030}",
        0x8A: "\u{0160}", 0x8B: "\u{2039}", 0x8C: "\u{0152}", 0x8D: "\u{8D}", 0x8E: "\u{017D}", 0x8F: "\u{8F}",
        0x90: "\u{90}", 0x91: "\u{2018}", 0x92: "\u{2019}", 0x93: "\u{201C}", 0x94: "\u{201D}", 0x95: "\u{2022}",
        0x96: "\u{2013}", 0x97: "\u{2014}", 0x98: "\u{02DC}", 0x99: "\u{2122}", 0x9A: "\u{0161}", 0x9B: "\u{203A}",
        0x9C: "\u{0153}", 0x9D: "\u{9D}", 0x9E: "\u{017E}", 0x9F: "\u{0178}",
    ]

    /// The named references most common in captions (a subset of HTML5's list); `legacy` ones also match
    /// without the semicolon, as in browsers and Python.
    private static let namedEntities: [String: (text: String, legacy: Bool)] = [
        "amp": ("&", true), "lt": ("<", true), "gt": (">", true), "quot": ("\"", true), "apos": ("'", false),
        "nbsp": ("\u{A0}", true), "copy": ("\u{A9}", true), "reg": ("\u{AE}", true), "deg": ("\u{B0}", true),
        "trade": ("\u{2122}", false), "hellip": ("\u{2026}", false), "mdash": ("\u{2014}", false),
        "ndash": ("\u{2013}", false), "lsquo": ("\u{2018}", false), "rsquo": ("\u{2019}", false),
        "ldquo": ("\u{201C}", false), "rdquo": ("\u{201D}", false), "laquo": ("\u{AB}", true),
        "raquo": ("\u{BB}", true), "middot": ("\u{B7}", true), "times": ("\u{D7}", true), "euro": ("\u{20AC}", false),
        "pound": ("\u{A3}", true), "eacute": ("\u{E9}", true), "egrave": ("\u{E8}", true),
        "aacute": ("\u{E1}", true), "agrave": ("\u{E0}", true), "iacute": ("\u{ED}", true),
        "oacute": ("\u{F3}", true), "uacute": ("\u{FA}", true), "ntilde": ("\u{F1}", true),
        "ccedil": ("\u{E7}", true), "uuml": ("\u{FC}", true), "ouml": ("\u{F6}", true), "auml": ("\u{E4}", true),
        "szlig": ("\u{DF}", true),
    ]
}
