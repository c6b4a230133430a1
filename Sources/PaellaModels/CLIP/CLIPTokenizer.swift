// open_clip/tokenizer.py `SimpleTokenizer` (byte-level BPE); changed on purpose: symbols are vocabulary ids rather
// than strings, the pre-tokenization regex is a hand-written scanner, and Hugging Face vocab.json/merges.txt load too.
import Foundation
import PaellaCore
import PaellaIO

/// Vocabulary files that could not be read as a CLIP BPE vocabulary.
public struct CLIPTokenizerError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}

/// CLIP's byte-level BPE tokenizer, as OpenCLIP's `SimpleTokenizer` with the "lower" clean.
///
/// `encode` gives the BPE ids of a text; `contextTokens` the fixed-length model input: start-of-text, the ids,
/// end-of-text, zero padding, truncated so that end-of-text is always the last token kept. Thread-safe; words
/// seen before come from a cache.
public final class CLIPTokenizer: @unchecked Sendable {  // mutable state: only `cache`, behind `cacheLock`
    /// Id of the start-of-text token (49406 in CLIP's vocabulary).
    public let startOfText: Int32
    /// Id of the end-of-text token (49407); the text tower pools at its position (the largest id).
    public let endOfText: Int32
    /// Number of entries in the vocabulary (49408).
    public let vocabularySize: Int
    /// The special-token strings, matched literally in the cleaned text (before the other word patterns).
    public let specialTokens: [(text: [Unicode.Scalar], id: Int32)]

    /// Vocabulary id of each byte as a word-inner symbol, and as a word-final symbol (with `</w>`).
    private let byteIDs: [Int32]
    private let byteEndIDs: [Int32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id), for every merge rule.
    private let merges: [UInt64: UInt64]
    private var cache: [[UInt8]: [Int32]] = [:]  // UTF-8 of a word -> its ids
    private let cacheLock = NSLock()
    /// Words kept in the cache before it starts over (a long-running server sees unbounded vocabulary).
    static let cacheLimit = 200_000

    /// CLIP's printable stand-in for each byte (`bytes_to_unicode`): printable Latin-1 bytes stand for
    /// themselves, the others for U+0100 onwards in byte order. The vocabulary lists byte symbols in this order.
    public static let byteSymbols: [(byte: UInt8, symbol: Unicode.Scalar)] = {
        let printable = Array(0x21 ... 0x7E) + Array(0xA1 ... 0xAC) + Array(0xAE ... 0xFF)
        var table = printable.map { (UInt8($0), Unicode.Scalar(UInt32($0))!) }
        var next: UInt32 = 256
        for b in 0 ... 255 where !printable.contains(b) {
            table.append((UInt8(b), Unicode.Scalar(next)!))
            next += 1
        }
        return table
    }()

    /// Builds a tokenizer from an explicit vocabulary and merge list (both formats end up here).
    ///
    /// - Parameters:
    ///   - vocabulary: symbol string -> id; byte symbols appear alone and with the `</w>` word-end suffix.
    ///   - merges: merge rules in priority order (earlier merges first).
    ///   - specialTokens: start-of-text and end-of-text strings, in that order, as they appear in `vocabulary`.
    public init(vocabulary: [String: Int32], merges mergeList: [(String, String)], specialTokens: (String, String)) throws {
        func id(_ symbol: String) throws -> Int32 {
            guard let id = vocabulary[symbol] else {
                throw CLIPTokenizerError(message: "The CLIP vocabulary has no entry for \"\(symbol)\"; the vocabulary and merges files do not belong together.")
            }
            return id
        }
        var byteIDs = [Int32](repeating: 0, count: 256), byteEndIDs = byteIDs
        for (byte, symbol) in Self.byteSymbols {
            byteIDs[Int(byte)] = try id(String(symbol))
            byteEndIDs[Int(byte)] = try id(String(symbol) + "</w>")
        }
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            let key = UInt64(UInt32(try id(a))) << 32 | UInt64(UInt32(try id(b)))
            // A repeated rule takes its last rank, as Python's dict(zip(merges, range(...))); CLIP's files have none.
            table[key] = UInt64(rank) << 32 | UInt64(UInt32(try id(a + b)))
        }
        self.byteIDs = byteIDs
        self.byteEndIDs = byteEndIDs
        self.merges = table
        startOfText = try id(specialTokens.0)
        endOfText = try id(specialTokens.1)
        vocabularySize = vocabulary.count
        self.specialTokens = [(Array(specialTokens.0.unicodeScalars), startOfText),
                              (Array(specialTokens.1.unicodeScalars), endOfText)]
    }

    /// Loads OpenCLIP's `bpe_simple_vocab_16e6.txt.gz`: a header line, then merge rules; the vocabulary is the
    /// 256 byte symbols, the same with `</w>`, one entry per merge (the first 48894), `<start_of_text>` and
    /// `<end_of_text>` (49408 entries).
    public convenience init(openCLIPVocabulary path: String) throws {
        // The real vocabulary is 1.4 MB inflated; a model folder's file may come from anyone, so a gzip bomb in its
        // place stops at the limit instead of the general 1 GiB.
        let text = String(decoding: try Gzip.decompress(path: path, limit: Self.maxVocabularyFileBytes), as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let mergeCount = 49152 - 256 - 2  // as open_clip: merges[1:49152-256-2+1]
        guard lines.count > mergeCount else {
            throw CLIPTokenizerError(message: "\(path) has \(lines.count) lines, fewer than the \(mergeCount + 1) of CLIP's BPE vocabulary.")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeCount)
        for (n, line) in lines[1 ... mergeCount].enumerated() {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard parts.count == 2 else {
                throw CLIPTokenizerError(message: "Line \(n + 2) of \(path) is not a merge rule of two symbols.")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        var symbols = Self.byteSymbols.map { String($0.symbol) }
        symbols += symbols.map { $0 + "</w>" }
        symbols += merges.map { $0.0 + $0.1 }
        symbols += ["<start_of_text>", "<end_of_text>"]
        var vocabulary: [String: Int32] = [:]
        for (i, s) in symbols.enumerated() { vocabulary[s] = Int32(i) }  // later entries win, as dict(zip(...))
        try self.init(vocabulary: vocabulary, merges: merges, specialTokens: ("<start_of_text>", "<end_of_text>"))
    }

    /// Loads Hugging Face's `vocab.json` (symbol -> id) and `merges.txt` (a `#version` header, then one rule
    /// per line), as in `laion/CLIP-ViT-g-14-laion2B-s12B-b42K`; special tokens `<|startoftext|>`, `<|endoftext|>`.
    public convenience init(vocabularyJSON: String, mergesText: String) throws {
        guard let data = FileManager.default.contents(atPath: vocabularyJSON),
              let object = try? JSONSerialization.jsonObject(with: data), let entries = object as? [String: Any] else {
            throw CLIPTokenizerError(message: "\(vocabularyJSON) is not a readable JSON object of vocabulary entries.")
        }
        var vocabulary: [String: Int32] = [:]
        for (symbol, value) in entries {
            guard let id = (value as? NSNumber)?.int32Value else {
                throw CLIPTokenizerError(message: "\(vocabularyJSON): the entry \"\(symbol)\" is not an integer id.")
            }
            vocabulary[symbol] = id
        }
        guard let mergeData = FileManager.default.contents(atPath: mergesText) else {
            throw CLIPTokenizerError(message: "\(mergesText) does not exist or cannot be read.")
        }
        var merges: [(String, String)] = []
        for (n, line) in String(decoding: mergeData, as: UTF8.self).split(separator: "\n").enumerated() {
            if n == 0 && line.hasPrefix("#version") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\r" })
            if parts.isEmpty { continue }
            guard parts.count == 2 else {
                throw CLIPTokenizerError(message: "Line \(n + 1) of \(mergesText) is not a merge rule of two symbols.")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        try self.init(vocabulary: vocabulary, merges: merges, specialTokens: ("<|startoftext|>", "<|endoftext|>"))
    }

    // MARK: Encoding

    /// BPE ids of `text` after OpenCLIP's cleaning (`SimpleTokenizer.encode`), without start/end tokens.
    public func encode(_ text: String) -> [Int32] {
        encode(text, stoppingAfter: .max).ids
    }

    /// The first ids of `text`: encoding stops once more than `limit` ids are known, so a prompt far longer than
    /// any context costs no more than its cleaning (linear) and the words up to the cut. `cut` says that the text
    /// has more than `limit` ids; `ids` then holds at least `limit + 1` of them.
    public func encode(_ text: String, stoppingAfter limit: Int) -> (ids: [Int32], cut: Bool) {
        let scalars = CLIPTextCleaning.cleanScalars(text)
        var ids: [Int32] = []
        var i = 0
        while i < scalars.count && ids.count <= limit {
            let piece = nextPiece(scalars, from: i)
            switch piece {
            case .special(let id, let end): ids.append(id); i = end
            case .word(let end): ids += bpe(scalars[i ..< end]); i = end
            case .skip: i += 1
            }
        }
        return (ids, ids.count > limit)
    }

    /// The model input for each text: `[start, ids..., end, 0, ...]` of length `contextLength`; a longer text
    /// is cut so that `contextLength` tokens remain, the last of them end-of-text. Shape `[texts, contextLength]`.
    public func contextTokens(_ texts: [String], contextLength: Int = 77) -> Tensor {
        contextTokensReportingCuts(texts, contextLength: contextLength).tokens
    }

    /// `contextTokens`, and for each text whether it held more than the context keeps (so a caller can warn
    /// that the end of a prompt had no effect, as diffusers does).
    public func contextTokensReportingCuts(_ texts: [String], contextLength: Int = 77) -> (tokens: Tensor, cut: [Bool]) {
        precondition(contextLength >= 2, "CLIPTokenizer.contextTokens: context length \(contextLength) leaves no room for start and end")
        var out = [Int32](repeating: 0, count: texts.count * contextLength)
        var cuts: [Bool] = []
        for (row, text) in texts.enumerated() {
            let (ids, cut) = encode(text, stoppingAfter: contextLength - 2)
            var tokens = [startOfText] + ids + [endOfText]
            if tokens.count > contextLength {
                tokens.removeLast(tokens.count - contextLength)
                tokens[contextLength - 1] = endOfText
            }
            for (j, t) in tokens.enumerated() { out[row * contextLength + j] = t }
            cuts.append(cut)
        }
        return (Tensor(int32: out, shape: [texts.count, contextLength]), cuts)
    }

    private enum Piece { case special(Int32, end: Int), word(end: Int), skip }

    /// One match of OpenCLIP's pattern at `i` (text already lower-cased; IGNORECASE only matters for the
    /// contractions): `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
    /// or `.skip` for a whitespace character, which no alternative matches.
    private func nextPiece(_ s: [Unicode.Scalar], from i: Int) -> Piece {
        let c = s[i]
        if c == "<" {
            for (text, id) in specialTokens where s.count - i >= text.count && s[i ..< i + text.count].elementsEqual(text) {
                return .special(id, end: i + text.count)
            }
        }
        if c == "'" && i + 1 < s.count {
            let a = Self.foldedASCII(s[i + 1]), b = i + 2 < s.count ? Self.foldedASCII(s[i + 2]) : 0
            switch (a, b) {
            case (UInt8(ascii: "r"), UInt8(ascii: "e")), (UInt8(ascii: "v"), UInt8(ascii: "e")),
                 (UInt8(ascii: "l"), UInt8(ascii: "l")):
                return .word(end: i + 3)
            case (UInt8(ascii: "s"), _), (UInt8(ascii: "t"), _), (UInt8(ascii: "m"), _), (UInt8(ascii: "d"), _):
                return .word(end: i + 2)
            default: break
            }
        }
        switch Self.category(c) {
        case .letter:
            var j = i + 1
            while j < s.count && Self.category(s[j]) == .letter { j += 1 }
            return .word(end: j)
        case .number:
            return .word(end: i + 1)
        case .space:
            return .skip
        case .other:
            var j = i + 1
            while j < s.count && Self.category(s[j]) == .other { j += 1 }
            return .word(end: j)
        }
    }

    /// Lower-case ASCII code of a letter under case-insensitive matching (ſ matches s, as in Python's regex), else 0.
    private static func foldedASCII(_ c: Unicode.Scalar) -> UInt8 {
        if c.value == 0x17F { return UInt8(ascii: "s") }
        guard c.isASCII else { return 0 }
        let v = UInt8(c.value)
        return (v >= 0x41 && v <= 0x5A) ? v + 0x20 : v
    }

    private enum Category { case letter, number, space, other }

    private static func category(_ c: Unicode.Scalar) -> Category {
        if c.isASCII {
            switch c.value {
            case 0x61 ... 0x7A, 0x41 ... 0x5A: return .letter
            case 0x30 ... 0x39: return .number
            case 0x09 ... 0x0D, 0x20, 0x1C ... 0x1F: return .space
            default: return .other
            }
        }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return c.properties.isWhitespace ? .space : .other
        }
    }

    // MARK: BPE

    /// The ids of one pre-tokenized word: its UTF-8 bytes as symbols (the last one marked word-final), then
    /// repeatedly every occurrence of the best-ranked adjacent pair merged, left to right (`SimpleTokenizer.bpe`).
    ///
    /// Upstream rescans the whole word for each merge, quadratic in its length (a 130,000-letter word took
    /// minutes); here the adjacent pairs wait in a heap ordered by (rank, position), so a word of n bytes takes
    /// O(n log n). Each round takes every occurrence of the best rank before any pair that round creates, exactly
    /// upstream's order: a pair formed by a merge may rank better than the round's pair yet must wait for it.
    private func bpe(_ word: ArraySlice<Unicode.Scalar>) -> [Int32] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(word.count)
        for s in word { UTF8.encode(s) { bytes.append($0) } }
        if let hit = cacheLock.withLock({ cache[bytes] }) { return hit }
        var symbols = bytes.map { byteIDs[Int($0)] }
        symbols[symbols.count - 1] = byteEndIDs[Int(bytes[bytes.count - 1])]
        // A doubly linked list over the byte positions; a merged pair lives on at its left position.
        let n = symbols.count
        var next = Array(1 ... n), previous = Array(-1 ..< n - 1), alive = [Bool](repeating: true, count: n)
        var pairs = MergeHeap()
        func push(_ left: Int) {
            guard left >= 0, next[left] < n else { return }
            let right = next[left]
            if let m = merges[UInt64(UInt32(symbols[left])) << 32 | UInt64(UInt32(symbols[right]))] {
                pairs.push(MergeCandidate(rank: m >> 32, position: left, left: symbols[left], right: symbols[right],
                                          merged: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
        }
        /// The candidate still describes the two symbols at its position (no merge has touched them since).
        func current(_ c: MergeCandidate) -> Bool {
            alive[c.position] && symbols[c.position] == c.left && next[c.position] < n && symbols[next[c.position]] == c.right
        }
        for j in 0 ..< n - 1 { push(j) }
        while let best = pairs.pop() {
            guard current(best) else { continue }
            var round = [best]
            while let top = pairs.peek(), top.rank == best.rank { round.append(pairs.pop()!) }
            var mergedAt: [Int] = []
            for c in round where current(c) {  // left to right: the heap orders a rank's pairs by position
                let right = next[c.position]
                symbols[c.position] = c.merged
                alive[right] = false
                next[c.position] = next[right]
                if next[right] < n { previous[next[right]] = c.position }
                mergedAt.append(c.position)
            }
            for p in mergedAt where alive[p] {
                push(previous[p])
                push(p)
            }
        }
        var result: [Int32] = []
        var p = 0
        while p < n { result.append(symbols[p]); p = next[p] }
        cacheLock.withLock {
            if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }  // bounded memory
            cache[bytes] = result
        }
        return result
    }

    // MARK: Finding the vocabulary

    /// File name of OpenCLIP's vocabulary.
    public static let vocabularyFileName = "bpe_simple_vocab_16e6.txt.gz"
    /// The most bytes a vocabulary file may hold, compressed or inflated (the real one: 1.4 MB inflated).
    public static let maxVocabularyFileBytes = 16 << 20

    /// Where the OpenCLIP vocabulary is found: `PAELLA_CLIP_VOCAB` (a file) when set; else, in order,
    /// `directory` (e.g. a model folder), `vocab/` next to the executable or one level up (an installed layout),
    /// and the `vocab/` folder of this source checkout (development builds). Throws one sentence naming every
    /// place looked at.
    public static func locateVocabulary(in directory: String? = nil) throws -> String {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["PAELLA_CLIP_VOCAB"], !env.isEmpty {
            // Set explicitly: that file or an error, never a silent fallback.
            guard FileManager.default.isReadableFile(atPath: env) else {
                throw CLIPTokenizerError(message: "PAELLA_CLIP_VOCAB names \(env), which does not exist or cannot be read.")
            }
            return env
        }
        if let directory { candidates.append((directory as NSString).appendingPathComponent(vocabularyFileName)) }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        candidates.append(executable.appendingPathComponent("vocab/" + vocabularyFileName).path)
        candidates.append(executable.deletingLastPathComponent().appendingPathComponent("vocab/" + vocabularyFileName).path)
        // This file is Sources/PaellaModels/CLIP/CLIPTokenizer.swift; the vocabulary is in vocab/ at the root.
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(checkout.appendingPathComponent("vocab/" + vocabularyFileName).path)
        if let found = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) { return found }
        throw CLIPTokenizerError(message: "CLIP's vocabulary \(vocabularyFileName) was not found (looked at "
            + candidates.joined(separator: ", ") + "); set PAELLA_CLIP_VOCAB to its path.")
    }
}

/// A possible merge of the symbols at `position` and the one after it.
private struct MergeCandidate {
    var rank: UInt64, position: Int, left: Int32, right: Int32, merged: Int32
    func precedes(_ other: MergeCandidate) -> Bool { (rank, position) < (other.rank, other.position) }
}

/// A binary min-heap of merge candidates by (rank, position).
private struct MergeHeap {
    private var items: [MergeCandidate] = []

    func peek() -> MergeCandidate? { items.first }

    mutating func push(_ item: MergeCandidate) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let (l, r) = (2 * i + 1, 2 * i + 2)
            var smallest = i
            if l < items.count && items[l].precedes(items[smallest]) { smallest = l }
            if r < items.count && items[r].precedes(items[smallest]) { smallest = r }
            guard smallest != i else { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
