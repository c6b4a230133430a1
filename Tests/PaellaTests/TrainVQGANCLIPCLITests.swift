import Foundation
import Paella
import PaellaCore
import PaellaIO
import PaellaModels
import PaellaTestSupport
import Testing

/// `paella train vqgan` and `paella train clip` end to end on eight tiny captioned images: a short run, its
/// files (checkpoint, JSONL log, model file and config that load into the models), and a resumed run.
@Suite("Train VQGAN/CLIP CLI", .serialized)
struct TrainVQGANCLIPCLITests {
    let work: String
    let data: String

    init() throws {
        (work, data) = try Fixtures.squarePicturesWorkspace()
    }

    func records(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test func trainVQGANThenResume() throws {
        let output = work + "/vq"
        let common = ["train", "vqgan", "--data", data, "--output", output, "--batch-size", "2", "--threads", "2", "--log-every", "1"]
        // Stopped after 2 of the schedule's 4 steps, then resumed to the end.
        let first = try PaellaCLI.run(common + ["--steps", "4", "--stop-at", "2", "--ch", "32", "--ch-mult", "1,2", "--embed-dim", "4",
                                                "--codebook", "8", "--restart-window", "2", "--checkpoint-every", "2"], in: work)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("step 2/2") && first.stdout.contains("psnr") && first.stdout.contains("codes"))
        #expect(try records(output + "/train-vqgan.jsonl").map { $0["step"] as? Int } == [0, 1])
        // A resumed run keeps its schedule: another --steps is refused with the option that stops early.
        let reschedule = try PaellaCLI.run(common + ["--resume", "--steps", "3"], in: work)
        #expect(reschedule.status != 0 && reschedule.stderr.contains("--stop-at"), "\(reschedule.stderr)")
        let rest = try PaellaCLI.run(common + ["--resume", "--steps", "4"], in: work)
        #expect(rest.status == 0 && rest.stdout.contains("step 4/4"), "\(rest.stderr)")
        #expect(try records(output + "/train-vqgan.jsonl").map { $0["step"] as? Int } == [0, 1, 2, 3])
        let config = try JSONDecoder().decode(VQGANConfig.self, from: Data(contentsOf: URL(fileURLWithPath: output + "/vqgan.json")))
        #expect(config.ch == 32 && config.chMult == [1, 2] && config.nEmbed == 8 && config.resolution == 16)
        let compute = Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM())
        let model = try VQGAN(contentsOf: output + "/vqgan.safetensors", config: config, compute: compute)
        #expect(try model.encode(try PixelImage.batchTensor([PixelImage(contentsOf: data + "/000000.png")])).shape == [1, 8, 8])
        // Resuming at the end of the schedule trains nothing and keeps the log as it is.
        let again = try PaellaCLI.run(common + ["--resume"], in: work)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try records(output + "/train-vqgan.jsonl").count == 4)
    }

    @Test func trainCLIP() throws {
        let output = work + "/clip"
        let run = try PaellaCLI.run(["train", "clip", "--data", data, "--output", output, "--steps", "3", "--batch-size", "4",
                                     "--embed-dim", "8", "--text-width", "16", "--text-layers", "1", "--text-heads", "2",
                                     "--context", "16", "--vision-width", "16", "--vision-layers", "1", "--head-width", "8",
                                     "--patch", "8", "--threads", "2", "--log-every", "1"], in: work)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("step 3/3") && run.stdout.contains("acc i->t"))
        #expect(try records(output + "/train-clip.jsonl").count == 3)
        let config = try JSONDecoder().decode(CLIPConfig.self, from: Data(contentsOf: URL(fileURLWithPath: output + "/clip.json")))
        #expect(config.vision.imageSize == 16 && config.text.contextLength == 16)
        let model = try CLIPModel(path: output + "/clip.safetensors", config: config)
        #expect(model.text != nil && model.vision != nil)
    }

    /// `dataset shapes --placement-variation 0` puts every object at its nominal place and size; out of range is refused.
    @Test func datasetShapesWithoutPlacementVariation() throws {
        let shapes = work + "/fixed-shapes"
        let made = try PaellaCLI.run(["dataset", "shapes", "--output", shapes, "--count", "6", "--seed", "3",
                                      "--placement-variation", "0"], in: work)
        #expect(made.status == 0, "\(made.stderr)")
        let objects = try records(shapes + "/metadata.jsonl").flatMap { record -> [[String: Any]] in
            let scene = try #require(record["scene"] as? [String: Any])
            return try #require(scene["objects"] as? [[String: Any]])
        }
        #expect(objects.count >= 6)
        for object in objects {
            #expect(object["offsetX"] as? Double == 0 && object["offsetY"] as? Double == 0 && object["scale"] as? Double == 1)
        }
        let refused = try PaellaCLI.run(["dataset", "shapes", "--output", work + "/nope", "--count", "2", "--placement-variation", "1.5"], in: work)
        #expect(refused.status != 0 && refused.stderr.contains("--placement-variation must be between 0 and 1"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work + "/nope"))
    }

    /// `--twins` trains on shapes data with scene twins in each batch; without the dataset's metadata it is refused.
    @Test func trainCLIPWithTwins() throws {
        let shapes = work + "/shapes"
        let made = try PaellaCLI.run(["dataset", "shapes", "--output", shapes, "--count", "12", "--seed", "3"], in: work)
        #expect(made.status == 0, "\(made.stderr)")
        let small = ["--steps", "2", "--batch-size", "6", "--embed-dim", "8", "--text-width", "16", "--text-layers", "1",
                     "--text-heads", "2", "--context", "32", "--vision-width", "16", "--vision-layers", "1", "--head-width", "8",
                     "--patch", "16", "--threads", "2", "--log-every", "1", "--twins", "0.5"]
        let run = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/twins"] + small, in: work)
        #expect(run.status == 0 && run.stdout.contains("step 2/2"), "\(run.stderr)")
        let shapeOnly = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/shape-twins", "--twin-changes", "shape,shape,color"] + small, in: work)
        #expect(shapeOnly.status == 0, "\(shapeOnly.stderr)")
        let badChange = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/size-twins", "--twin-changes", "shape,size"] + small, in: work)
        #expect(badChange.status != 0 && badChange.stderr.contains("--twin-changes takes"), "\(badChange.stderr)")
        let refused = try PaellaCLI.run(["train", "clip", "--data", data, "--output", work + "/nometa"] + small, in: work)
        #expect(refused.status != 0 && refused.stderr.contains("--twins needs the shapes dataset's metadata.jsonl"), "\(refused.stderr)")
        // The label head: its loss is reported, it resumes from the checkpoint, and it needs the scenes too.
        let labelled = small.filter { $0 != "--twins" && $0 != "0.5" }.replacing(["--steps", "2"], with: ["--steps", "4"])
        let head = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/labels", "--label-weight", "0.1",
                                      "--twins", "0.5", "--stop-at", "2"] + labelled, in: work)
        #expect(head.status == 0 && head.stdout.contains("step 2/2") && head.stdout.contains("labels "), "\(head.stdout) \(head.stderr)")
        let more = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/labels", "--resume", "--twins", "0.5"] + labelled, in: work)
        #expect(more.status == 0 && more.stdout.contains("step 4/4") && more.stdout.contains("labels "), "\(more.stdout) \(more.stderr)")
        // On the captions alone: recorded in the checkpoint, and kept on resume.
        let textHead = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/text-labels", "--label-weight", "0.1",
                                          "--label-text-only", "--stop-at", "2"] + labelled, in: work)
        #expect(textHead.status == 0 && textHead.stdout.contains("labels "), "\(textHead.stdout) \(textHead.stderr)")
        #expect(try String(contentsOfFile: work + "/text-labels/trainer.json", encoding: .utf8).contains("\"textOnly\" : true"))
        let textMore = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/text-labels", "--resume"] + labelled, in: work)
        #expect(textMore.status == 0 && textMore.stdout.contains("step 4/4"), "\(textMore.stdout) \(textMore.stderr)")
        #expect(try String(contentsOfFile: work + "/text-labels/trainer.json", encoding: .utf8).contains("\"textOnly\" : true"))
        let noWeight = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/text-only", "--label-text-only"] + labelled, in: work)
        #expect(noWeight.status != 0 && noWeight.stderr.contains("--label-text-only needs --label-weight"), "\(noWeight.stderr)")
        // The vision tower alone, from the run above: recorded in the checkpoint and kept on resume; refused where it
        // has nothing to start from, or where only the label head would train.
        let vision = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/vision", "--from", work + "/labels",
                                        "--freeze-text", "--label-weight", "0.1", "--stop-at", "2"] + labelled, in: work)
        #expect(vision.status == 0 && vision.stdout.contains("text tower frozen"), "\(vision.stdout) \(vision.stderr)")
        let visionMore = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/vision", "--resume", "--freeze-text"] + labelled, in: work)
        #expect(visionMore.status == 0 && visionMore.stdout.contains("step 4/4") && visionMore.stdout.contains("text tower frozen"),
                "\(visionMore.stdout) \(visionMore.stderr)")
        let fromNothing = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/vision2", "--freeze-text"] + labelled, in: work)
        #expect(fromNothing.status != 0 && fromNothing.stderr.contains("--freeze-text needs --from"), "\(fromNothing.stderr)")
        let missing = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/vision3", "--from", work + "/nowhere"] + labelled, in: work)
        #expect(missing.status != 0 && missing.stderr.contains("Cannot read the CLIP config") && missing.stderr.split(separator: "\n").count == 1,
                "\(missing.stderr)")
        let headOnly = try PaellaCLI.run(["train", "clip", "--data", shapes, "--output", work + "/vision4", "--from", work + "/labels",
                                          "--freeze-text", "--label-weight", "0.1", "--label-text-only"] + labelled, in: work)
        #expect(headOnly.status != 0 && headOnly.stderr.contains("would train the label head alone"), "\(headOnly.stderr)")
        let unlabelled = try PaellaCLI.run(["train", "clip", "--data", data, "--output", work + "/nometa-labels", "--label-weight", "0.1"] + labelled, in: work)
        #expect(unlabelled.status != 0 && unlabelled.stderr.contains("--label-weight needs the shapes dataset's metadata.jsonl"), "\(unlabelled.stderr)")
    }

    /// An image larger than these trainers take is refused from its header, by name, before any pixel is decoded.
    @Test func anOversizedImageIsRefusedFromItsHeader() throws {
        try PixelImage(width: 1100, height: 40, layout: .rgb, repeating: 50).write(to: data + "/000002.png")
        for trainer in ["vqgan", "clip"] {
            let run = try PaellaCLI.run(["train", trainer, "--data", data, "--output", work + "/big-" + trainer, "--steps", "1"], in: work)
            #expect(run.status == 1, "\(run.stderr)")
            #expect(run.stderr.contains("000002.png is 1100x40 pixels, more than the limit of 1024 per side"), "\(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: work + "/big-" + trainer))
        }
    }

    @Test func missingCaptionIsOneSentence() throws {
        try FileManager.default.removeItem(atPath: data + "/000003.txt")
        let run = try PaellaCLI.run(["train", "clip", "--data", data, "--output", work + "/bad", "--steps", "1"], in: work)
        #expect(run.status != 0)
        #expect(run.stderr.contains("000003.png has no caption"))
    }
}
