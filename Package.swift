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
//   paella             <- the six above, ArgumentParser           the command-line tool
//   PaellaTestSupport  <- PaellaCore, PaellaIO, PaellaModels, Paella; then one test target per library.
import PackageDescription

let package = Package(
    name: "Paella",
    products: [
        // The layers under Paella are part of its API (a Pipeline takes a PaellaCore Compute, returns PaellaIO images).
        .library(name: "Paella", targets: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTraining"]),
        .executable(name: "paella", targets: ["paella"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
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
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),
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
        .executableTarget(name: "paella", dependencies: [
            "PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTraining", "PaellaShapes",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Shared by the test targets: fixture lookup (PAELLA_FIXTURES), seeded random data, comparisons.
        .target(name: "PaellaTestSupport", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella"],
                path: "Tests/PaellaTestSupport"),
        .testTarget(name: "PaellaCoreTests", dependencies: ["PaellaCore", "CPaellaKernels", "PaellaTestSupport"]),
        .testTarget(name: "PaellaIOTests", dependencies: ["PaellaCore", "PaellaIO", "CImageCodecs", "PaellaTestSupport"]),
        .testTarget(name: "PaellaTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaTestSupport"]),
        .testTarget(name: "PaellaShapesTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "Paella", "PaellaShapes", "PaellaTestSupport"]),
        .testTarget(name: "PaellaTrainingTests", dependencies: ["PaellaCore", "PaellaIO", "PaellaModels", "PaellaTraining",
                                                          "PaellaTestSupport"]),
    ]
)

// Imports show the architecture (DESIGN.md, style rule 13): with MemberImportVisibility a file must import every
// module whose names it uses, members included; nothing leaks in through another import.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [.enableUpcomingFeature("MemberImportVisibility")]
}
