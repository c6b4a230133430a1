import Testing
@testable import PaellaIO

@Suite struct SHA256Tests {
    // Expected digests: the FIPS 180-4 / NIST CAVS example vectors ("abc", the 448-bit two-block message) and the
    // well-known digest of the empty string.
    @Test func knownVectors() {
        #expect(SHA256.hex(of: [UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // One million 'a' (FIPS 180-2 appendix B.3).
        #expect(SHA256.hex(of: [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func streamingInUnevenPiecesGivesTheSameDigest() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var h = SHA256()
        var start = 0
        for size in [1, 63, 64, 65, 127, 500, 3] + [Int](repeating: 1000, count: 10) {
            let end = min(data.count, start + size)
            data[start..<end].withUnsafeBytes { h.update($0) }
            start = end
        }
        data[start...].withUnsafeBytes { h.update($0) }
        #expect(h.finalizeHex() == SHA256.hex(of: data))
    }
}
