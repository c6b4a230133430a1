// swift-tools-version:6.0
// Paella for Swift: a dependency-light implementation of Paella (Rampas et al., 2022).
// Targets and what each depends on (each only on targets above it in this list):
//   CPaellaKernels                  C hot loops with run-time ISA dispatch; no model knowledge
//   CPNG, CJPEG, CZlib              system libpng, libjpeg, zlib
//   CImageCodecs       <- CPNG, CJPEG
//   PaellaCore         <- CPaellaKernels                          tensors, thread pool, GEMM, ops
//   PaellaIO           <- PaellaCore, CImageCodecs, CZlib         files: safetensors, PyTorch, images, tar
//   PaellaModels       <- PaellaCore, PaellaIO                    denoiser, VQGAN, CLIP
//   Paella             <- PaellaCore, PaellaIO, PaellaModels      model folders, sampler, pipeline
//   PaellaTraining     <- PaellaCore, PaellaIO, PaellaModels      trainers, optimizers, training data
//   PaellaShapes       <- PaellaCore, PaellaIO, PaellaModels, Paella         a tool, not the library: the synthetic shapes
//                                                                  dataset, its analyser and the shapes evaluation
//   PaellaServer       <- PaellaCore, PaellaIO, PaellaModels, Paella, Hummingbird, MultipartKit, MCP   `paella serve`: HTTP API;
//                                                                  `paella mcp`: Model Context Protocol
//   paella             <- the seven above, ArgumentParser         the command-line tool
//   PaellaTestSupport  <- PaellaCore, PaellaIO, PaellaModels, Paella; then one test target per library.
import PackageDescription

let package = Package(
    name: "Paella",
    products: [
        // The layers under Paella are part of its API (a Pipeline takes a PaellaCore Compute, returns PaellaIO images).
        .library(name: "Paella", targets: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTraining"]),
        .executable(name: "paella", targets: ["paella"]),
        // The HTTP server on its own, for the fuzz package (Fuzz/) to reach its request parsing; kept out of `Paella`.
        .library(name: "PaellaServer", targets: ["PaellaServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `paella serve` only (the PaellaServer target): the HTTP server, its logs, graceful shutdown, uploads, metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already under Hummingbird; named because the server's files use their types directly.
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // `paella mcp` and the server's /mcp: the Model Context Protocol (tools, progress, cancellation, transports).
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
    ],
    targets: [
        // Hot loops in C with run-time ISA dispatch (AVX-512 / AVX2 / NEON / portable). No model knowledge.
        .target(name: "CPaellaKernels", linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("m")]),
        // System libraries for image I/O; headers come from libpng-dev / libjpeg62-turbo-dev.
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(name: "CJPEG", providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]),
        // libpng/libjpeg error handling needs setjmp/longjmp, which Swift cannot call: a thin C layer does it.
        .target(name: "CImageCodecs", dependencies: ["CPNG", "CJPEG"],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg"), .linkedLibrary("z")]),
        // zlib for deflated zip entries in PyTorch checkpoints.
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        // Tensor, thread pool, run-time BLAS binding, ops.
        .target(name: "PaellaCore", dependencies: ["CPaellaKernels"]),
        // safetensors, PyTorch checkpoints, images.
        .target(name: "PaellaIO", dependencies: ["PaellaCore", "CImageCodecs", "CZlib"],
                linkerSettings: [.linkedLibrary("z")]),
        .target(name: "PaellaModels", dependencies: ["PaellaCore", "PaellaIO"]),
        .target(name: "Paella", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels"]),
        // Training: gradients of whole models, the Paella recipe (AdamW, OneCycleLR, label smoothing), checkpoints.
        .target(name: "PaellaTraining", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels"]),
        // The synthetic shapes dataset (scenes, renderer, captions, WebDataset shards), the shape analyser and
        // scorer, and the evaluation of a shapes model: what the bundled model is trained and judged with.
        .target(name: "PaellaShapes", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella"]),
        // `paella serve`: OpenAI-compatible images API over one loaded Pipeline. Not part of the `Paella` library
        // product, so that programs using the library do not build an HTTP server.
        .target(name: "PaellaServer", dependencies: [
            "PaellaCore", "PaellaIO", "PaellaModels", "Paella",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "MCP", package: "swift-sdk"),
        ]),
        .executableTarget(name: "paella", dependencies: [
            "PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTraining", "PaellaShapes", "PaellaServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Shared by the test targets: fixture lookup (PAELLA_FIXTURES), seeded random data, comparisons.
        .target(name: "PaellaTestSupport", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella"],
                path: "Tests/PaellaTestSupport"),
        .testTarget(name: "PaellaCoreTests", dependencies: ["PaellaCore", "CPaellaKernels", "PaellaTestSupport"]),
        .testTarget(name: "PaellaIOTests", dependencies: ["PaellaCore", "PaellaIO", "CImageCodecs", "PaellaTestSupport"]),
        .testTarget(name: "PaellaTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTestSupport"]),
        .testTarget(name: "PaellaShapesTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaShapes", "PaellaTestSupport"]),
        .testTarget(name: "PaellaServerTests", dependencies: [
            "PaellaCore", "PaellaIO", "Paella", "PaellaServer", "PaellaTestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "MCP", package: "swift-sdk"),
        ]),
        .testTarget(name: "PaellaTrainingTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "PaellaTraining",
                                                          "PaellaTestSupport"]),
    ]
)

// Imports show the architecture (DESIGN.md, style rule 13): with MemberImportVisibility a file must import every
// module whose names it uses, members included; nothing leaks in through another import.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [.enableUpcomingFeature("MemberImportVisibility")]
}
