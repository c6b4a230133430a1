import Foundation
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// The CLIP tokenizer against `tokenizer_cases.json` (ids from OpenCLIP 3.3.0's `SimpleTokenizer`, see the
/// fixture README): ids must match exactly.
@Suite struct CLIPTokenizerTests {
    struct Case { let text: String; let bpeIDs: [Int]; let context: [Int] }

    static func cases() throws -> (sot: Int, eot: Int, cases: [Case]) {
        let root = try #require(try Fixtures.json("tokenizer_cases.json") as? [String: Any])
        let list = try #require(root["cases"] as? [[String: Any]])
        let cases = try list.map { c in
            Case(text: try #require(c["text"] as? String), bpeIDs: try #require(c["bpe_ids"] as? [Int]),
                 context: try #require(c["context_77"] as? [Int]))
        }
        return (try #require(root["sot"] as? Int), try #require(root["eot"] as? Int), cases)
    }

    static let tokenizer: CLIPTokenizer? = try? CLIPTokenizer(openCLIPVocabulary: CLIPTokenizer.locateVocabulary())

    @Test func fixtureCasesFromOpenCLIPVocabulary() throws {
        let tokenizer = try #require(Self.tokenizer)
        try Self.check(tokenizer)
    }

    /// Hugging Face's vocab.json/merges.txt hold the same vocabulary under other special-token names; built here
    /// from the OpenCLIP file the way they were made (byte symbols, the same with `</w>`, merges, specials).
    @Test func fixtureCasesFromHuggingFaceFiles() throws {
        let lines = String(decoding: try Gzip.decompress(path: try CLIPTokenizer.locateVocabulary()), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        let merges = lines[1 ... 48894].map(String.init)
        var symbols = CLIPTokenizer.byteSymbols.map { String($0.symbol) }
        symbols += symbols.map { $0 + "</w>" }
        symbols += merges.map { $0.replacingOccurrences(of: " ", with: "") }
        symbols += ["<|startoftext|>", "<|endoftext|>"]
        let vocabulary = Dictionary(uniqueKeysWithValues: symbols.enumerated().map { ($0.element, $0.offset) })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("paella-clip-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let vocabPath = dir.appendingPathComponent("vocab.json").path
        let mergesPath = dir.appendingPathComponent("merges.txt").path
        try JSONSerialization.data(withJSONObject: vocabulary).write(to: URL(fileURLWithPath: vocabPath))
        try ("#version: 0.2\n" + merges.joined(separator: "\n") + "\n").write(toFile: mergesPath, atomically: true, encoding: .utf8)
        let tokenizer = try CLIPTokenizer(vocabularyJSON: vocabPath, mergesText: mergesPath)
        // Texts that spell OpenCLIP's special tokens literally tokenize differently by design: for Hugging Face's
        // files the special strings are `<|startoftext|>` and `<|endoftext|>`.
        try Self.check(tokenizer, skipping: { $0.contains("<start_of_text>") || $0.contains("<end_of_text>") })
    }

    static func check(_ tokenizer: CLIPTokenizer, skipping: (String) -> Bool = { _ in false }) throws {
        let (sot, eot, all) = try Self.cases()
        let cases = all.filter { !skipping($0.text) }
        #expect(Int(tokenizer.startOfText) == sot && Int(tokenizer.endOfText) == eot)
        #expect(tokenizer.vocabularySize == 49408)
        for c in cases {
            #expect(tokenizer.encode(c.text).map(Int.init) == c.bpeIDs, "bpe_ids of \(c.text.debugDescription)")
            let context = tokenizer.contextTokens([c.text], contextLength: c.context.count)
            #expect(context.shape == [1, c.context.count])
            #expect(context.integers() == c.context, "context of \(c.text.debugDescription)")
        }
        // Twice: the second pass is served by the word cache and must give the same ids.
        for c in cases { #expect(tokenizer.encode(c.text).map(Int.init) == c.bpeIDs) }
    }

    @Test func cleaningFollowsOpenCLIP() {
        #expect(CLIPTextCleaning.clean("  A\u{2003}b\t\nC  ") == "a b c")
        #expect(CLIPTextCleaning.clean("&amp;amp; &#65;&#x42;&#x1F431; &copy &unknown;") == "& ab🐱 © &unknown;")
        #expect(CLIPTextCleaning.clean("\u{201C}Caf\u{65}\u{301}\u{201D} \u{FB01}ne \u{FF21}") == "\"café\" fine a")
        #expect(CLIPTextCleaning.clean("ΟΔΟΣ Σ ΑΣ.") == "οδος σ ας.")  // Python: final sigma at word ends only
        #expect(CLIPTextCleaning.htmlUnescape("&#128; &#0; &ampx &#xD800;") == "\u{20AC} \u{FFFD} &x \u{FFFD}")
    }

    @Test func specialTokensAndTruncation() throws {
        let tokenizer = try #require(Self.tokenizer)
        let ids = tokenizer.encode("a<end_of_text>")
        #expect(ids.last == tokenizer.endOfText && ids.count == 2)
        // A minimal Hugging Face-style vocabulary: its special strings are the ones matched.
        var vocabulary: [String: Int32] = ["<|startoftext|>": 0, "<|endoftext|>": 1]
        for (i, entry) in CLIPTokenizer.byteSymbols.enumerated() {
            vocabulary[String(entry.symbol)] = Int32(2 + 2 * i)
            vocabulary[String(entry.symbol) + "</w>"] = Int32(3 + 2 * i)
        }
        let hf = try CLIPTokenizer(vocabulary: vocabulary, merges: [], specialTokens: ("<|startoftext|>", "<|endoftext|>"))
        #expect(hf.encode("<|endoftext|>") == [1])
        let long = tokenizer.contextTokens([String(repeating: "cat ", count: 200)], contextLength: 10).integers()
        #expect(long.count == 10 && long.first == Int(tokenizer.startOfText) && long.last == Int(tokenizer.endOfText))
    }

    @Test func missingVocabularyIsOneClearError() {
        #expect(throws: GzipError.self) { try CLIPTokenizer(openCLIPVocabulary: "/nonexistent/vocab.txt.gz") }
    }
}
