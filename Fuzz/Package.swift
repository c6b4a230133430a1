// swift-tools-version:5.4
// Fuzz targets for every parser of Paella that reads outside bytes, built with libFuzzer and the address sanitizer.
// Tools version 5.4 on purpose: from 5.5 on, SwiftPM renames an executable's entry point and links `main` to it,
// which a fuzzer cannot have (libFuzzer brings its own `main`).
// A package of its own (depending on the main one by path) so that `swift build` and `swift test` of Paella never
// build or link libFuzzer. Build and run through scripts/fuzz.sh; see Fuzz/README.md.
import PackageDescription

let package = Package(
    name: "PaellaFuzz",
    dependencies: [
        .package(name: "Paella", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // One binary for all targets (one link on a small machine); PAELLA_FUZZ_TARGET picks the parser.
        .executableTarget(name: "PaellaFuzz", dependencies: [
            .product(name: "Paella", package: "Paella"),
            .product(name: "PaellaServer", package: "Paella"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ]
)
