import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Paella
import PaellaCore
import PaellaIO
@testable import PaellaServer
import PaellaTestSupport
import Testing

/// Helpers for A1111's answers: images as plain base64 PNG, `info` as a JSON text, errors in FastAPI's shape.
enum SD {
    static func post(_ client: some TestClientProtocol, _ path: String, _ fields: [String: any Sendable],
                     headers: HTTPFields = Serve.jsonHeaders) async throws -> TestResponse {
        try await client.execute(uri: "/sdapi/v1/\(path)", method: .post, headers: headers, body: try Serve.json(fields))
    }

    static func get(_ client: some TestClientProtocol, _ path: String) async throws -> Any {
        let response = try await client.execute(uri: "/sdapi/v1/\(path)", method: .get)
        #expect(response.status == .ok && response.headers[.contentType] == "application/json")
        return try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView), options: .fragmentsAllowed)
    }

    static func images(_ response: TestResponse) throws -> [PixelImage] {
        let images = try #require(try Serve.object(response)["images"] as? [String], "\(String(buffer: response.body))")
        return try images.map { try PixelImage.decode(Array(try #require(Data(base64Encoded: $0))), source: "answer").image }
    }

    static func info(_ response: TestResponse) throws -> [String: Any] {
        let text = try #require(try Serve.object(response)["info"] as? String)
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func parameters(_ response: TestResponse) throws -> [String: Any] {
        try #require(try Serve.object(response)["parameters"] as? [String: Any])
    }

    /// The `detail` list of a 422, each item as (loc, msg, type).
    static func problems(_ response: TestResponse) throws -> [(loc: [String], msg: String, type: String)] {
        #expect(response.status == .unprocessableContent, "\(String(buffer: response.body))")
        let detail = try #require(try Serve.object(response)["detail"] as? [[String: Any]], "\(String(buffer: response.body))")
        return try detail.map { item in
            #expect(Set(item.keys) == ["loc", "msg", "type"])
            return (try #require(item["loc"] as? [String]), try #require(item["msg"] as? String), try #require(item["type"] as? String))
        }
    }

    /// The sentence of a non-validation error, `{"detail": "..."}`.
    static func detail(_ response: TestResponse) throws -> String {
        try #require(try Serve.object(response)["detail"] as? String, "\(String(buffer: response.body))")
    }

    static func base64PNG(_ image: PixelImage) throws -> String { Data(try image.encodePNG()).base64EncodedString() }

    /// The Paella parameters the first answered PNG carries.
    static func pngParameters(_ response: TestResponse) throws -> [String: Any] {
        let first = try #require(try Serve.object(response)["images"] as? [String]).first ?? ""
        let text = try PixelImage.decode(Array(try #require(Data(base64Encoded: first))), source: "answer").text
        let parameters = try #require(text["parameters"])
        return try #require(try JSONSerialization.jsonObject(with: Data(parameters.utf8)) as? [String: Any])
    }
}

@Suite("Server: A1111 sdapi")
struct SDAPITests {
    let server: PaellaServer
    var side: Int { server.pipeline.defaults.imageSize }

    init() throws { server = try Serve.server() }

    @Test func txt2imgAnswersImagesParametersAndInfoAsA1111Does() async throws {
        let side = side
        let model = server.pipeline.modelName
        try await Serve.test(server) { client in
            // As a front-end sends it: sampler, scheduler and hires fields Paella does not use, a number as a string.
            let fields: [String: any Sendable] = [
                "prompt": "a red circle", "negative_prompt": "blue", "seed": 7, "steps": "2", "cfg_scale": 1.5, "width": 2 * side,
                "height": side, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a", "scheduler": "Karras", "enable_hr": false,
                "denoising_strength": 0.7, "override_settings": ["CLIP_stop_at_last_layers": 1] as [String: any Sendable],
            ]
            let response = try await SD.post(client, "txt2img", fields)
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let images = try SD.images(response)
            #expect(images.count == 4 && images.allSatisfy { $0.width == 2 * side && $0.height == side })

            let info = try SD.info(response)
            #expect(info["seed"] as? Int == 7 && info["all_seeds"] as? [Int] == [7, 7, 8, 8])
            #expect(info["steps"] as? Int == 2 && info["cfg_scale"] as? Double == 1.5 && info["batch_size"] as? Int == 2)
            #expect(info["width"] as? Int == 2 * side && info["height"] as? Int == side)
            #expect(info["prompt"] as? String == "a red circle" && (info["all_prompts"] as? [String])?.count == 4)
            #expect(info["negative_prompt"] as? String == "blue" && info["sd_model_name"] as? String == model)
            #expect(info["denoising_strength"] is NSNull && info["sd_model_hash"] is NSNull)
            let infotexts = try #require(info["infotexts"] as? [String])
            #expect(infotexts.count == 4 && infotexts[2].contains("Seed: 8") && infotexts[0].contains("Negative prompt: blue\nSteps: 2"))

            // The request echoed, with what it ran with; the fields Paella ignored come back as sent.
            let p = try SD.parameters(response)
            #expect(p["seed"] as? Int == 7 && p["steps"] as? Int == 2 && p["n_iter"] as? Int == 2 && p["batch_size"] as? Int == 2)
            #expect(p["sampler_name"] as? String == "Euler a" && p["scheduler"] as? String == "Karras")
            #expect((p["override_settings"] as? [String: Any])?["CLIP_stop_at_last_layers"] as? Int == 1)

            // The second batch is the batch of seed + 1.
            var second = fields
            (second["seed"], second["n_iter"]) = (8, 1)
            let alone = try SD.images(try await SD.post(client, "txt2img", second))
            #expect(alone == Array(images[2...]))
        }
    }

    @Test func txt2imgDefaultsToTheModelsSettingsAndARandomSeed() async throws {
        let side = side
        let defaults = server.pipeline.defaults.generate
        try await Serve.test(server) { client in
            let response = try await SD.post(client, "txt2img", ["prompt": "a cat", "steps": 1])
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let images = try SD.images(response)
            #expect(images.count == 1 && images[0].width == side && images[0].height == side)
            let info = try SD.info(response)
            let seed = try #require(info["seed"] as? Int)
            #expect((0..<(1 << 31)).contains(seed) && info["all_seeds"] as? [Int] == [seed])
            #expect(info["cfg_scale"] as? Double == Double(defaults.guidanceScale) && info["negative_prompt"] as? String == "")
            let p = try SD.parameters(response)
            #expect(p["seed"] as? Int == -1 && p["n_iter"] as? Int == 1 && p["width"] as? Int == side)
            // The PNG carries Paella's parameters, with the seed drawn.
            #expect(try SD.pngParameters(response)["seed"] as? Int == seed)

            let quiet = try await SD.post(client, "txt2img", ["prompt": "a cat", "steps": 1, "send_images": false])
            #expect(try quiet.status == .ok && Serve.object(quiet)["images"] as? [String] == [])
            let full = try await SD.post(client, "txt2img", ["prompt": "a cat"])
            #expect(try SD.info(full)["steps"] as? Int == defaults.steps)
        }
    }

    @Test func wrongTypesAre422ListingEveryField() async throws {
        try await Serve.test(server) { client in
            let response = try await SD.post(client, "txt2img", ["prompt": 5, "steps": "many", "cfg_scale": true, "width": 64.5,
                                                                 "send_images": "perhaps"])
            let problems = try SD.problems(response)
            let byField = Dictionary(problems.map { ($0.loc, $0.type) }, uniquingKeysWith: { a, _ in a })
            #expect(byField == [["body", "prompt"]: "type_error.str", ["body", "steps"]: "type_error.integer",
                                ["body", "cfg_scale"]: "type_error.float", ["body", "width"]: "type_error.integer",
                                ["body", "send_images"]: "type_error.bool"])
            let list = try await SD.post(client, "img2img", ["prompt": "a cat", "init_images": ["a", 3] as [any Sendable]])
            #expect(try SD.problems(list).map(\.loc) == [["body", "init_images", "1"]])
        }
    }

    static let outOfRange: [([String: any Sendable], String, String)] = [
        (["prompt": "a cat", "steps": 0], "steps", "The step count 0 is out of range"),
        (["prompt": "a cat", "batch_size": 9], "batch_size", "The image count 9 is out of range"),
        (["prompt": "a cat", "batch_size": 2, "n_iter": 3], "n_iter", "batch_size x n_iter is 6 images"),
        (["prompt": "a cat", "n_iter": 0], "n_iter", "n_iter at least 1"),
        (["prompt": "a cat", "n_iter": Int.max, "batch_size": 2], "n_iter", "too many images"),
        (["prompt": "a cat", "seed": -5], "seed", "The seed -5 is out of range"),
        (["prompt": "a cat", "width": 30], "width", "does not fit this model"),
        (["prompt": "a cat", "width": 100_000], "width", "out of range"),
        (["prompt": "  "], "prompt", "The prompt is missing or empty"),
        (["negative_prompt": "x"], "prompt", "The prompt is missing or empty"),
        (["prompt": String(repeating: "a", count: 1001)], "prompt", "1001 characters long"),
    ]

    @Test(arguments: outOfRange)
    func outOfRangeValuesAre422WithTheLibrarysSentence(fields: [String: any Sendable], field: String, message: String) async throws {
        try await Serve.test(server) { client in
            let problems = try SD.problems(try await SD.post(client, "txt2img", fields))
            #expect(problems.count == 1)
            #expect(problems.first?.loc == ["body", field])
            #expect(problems.first?.msg.contains(message) == true, "\(problems)")
            #expect(problems.first?.msg.hasSuffix(".") == true)
        }
    }

    @Test func aBodyThatIsNotAJSONObjectIs422() async throws {
        try await Serve.test(server) { client in
            for body in ["[1, 2]", "{\"prompt\": ", "", String(repeating: "[", count: 100_000)] {
                let response = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: Serve.jsonHeaders,
                                                        body: ByteBuffer(string: body))
                #expect(try SD.problems(response).map(\.loc) == [["body"]], "\(body.prefix(20))")
            }
        }
    }

    @Test func img2imgWithoutAMaskEditsTheStructureWithTheDenoisingStrength() async throws {
        let side = side
        let picture = TinyPipeline.picture(width: 2 * side, height: side)
        let encoded = try SD.base64PNG(picture)
        try await Serve.test(server) { client in
            let response = try await SD.post(client, "img2img", ["prompt": "a green star", "init_images": ["data:image/png;base64," + encoded],
                                                                 "denoising_strength": 0.5, "seed": 3, "steps": 4, "resize_mode": 0, "mask": "",
                                                                 "mask_blur": 4, "inpainting_fill": 1])
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let images = try SD.images(response)
            let info = try SD.info(response)
            // The image keeps its proportions at the model's size.
            #expect(images.count == 1 && images[0].height == side && images[0].width == 2 * side && info["width"] as? Int == 2 * side)
            #expect(info["denoising_strength"] as? Double == 0.5 && info["seed"] as? Int == 3 && info["height"] as? Int == side)
            let p = try SD.parameters(response)
            #expect(p["init_images"] is NSNull && p["mask"] is NSNull && p["denoising_strength"] as? Double == 0.5)
            // The PNG says which Paella mode made it.
            let made = try SD.pngParameters(response)
            #expect(made["mode"] as? String == "edit" && made["strength"] as? Double == 0.5)

            let zero = try SD.problems(try await SD.post(client, "img2img", ["prompt": "a star", "init_images": [encoded], "denoising_strength": 0]))
            #expect(zero.map(\.loc) == [["body", "denoising_strength"]] && zero[0].msg.contains("The strength 0.0 is out of range"))
            let none = try SD.problems(try await SD.post(client, "img2img", ["prompt": "a star", "init_images": [String]()]))
            #expect(none.map(\.loc) == [["body", "init_images"]])
            let broken = try SD.problems(try await SD.post(client, "img2img", ["prompt": "a star", "init_images": ["bm90IGFuIGltYWdl"]]))
            #expect(broken.map(\.loc) == [["body", "init_images"]])
        }
    }

    /// A1111's masks: white repaints; with `inpainting_mask_invert` black does; a mask with transparency is its
    /// alpha (opaque repaints). All three of these mark the left half, so all three inpaint the same.
    @Test func img2imgWithAMaskInpaintsTheWhitePart() async throws {
        let side = side
        let picture = try SD.base64PNG(TinyPipeline.picture(width: side, height: side))
        var white = PixelImage(width: side, height: side, layout: .gray, repeating: 0)
        var black = PixelImage(width: side, height: side, layout: .rgb, repeating: 255)
        var alpha = PixelImage(width: side, height: side, layout: .rgba, repeating: 0)
        for y in 0..<side {
            for x in 0..<side / 2 {
                white.pixels[y * side + x] = 255
                for c in 0..<3 { black.pixels[(y * side + x) * 3 + c] = 0 }
                alpha.pixels[(y * side + x) * 4 + 3] = 255
            }
        }
        let masks: [[String: any Sendable]] = [
            ["mask": try SD.base64PNG(white)], ["mask": try SD.base64PNG(black), "inpainting_mask_invert": 1], ["mask": try SD.base64PNG(alpha)],
        ]
        try await Serve.test(server) { client in
            var results: [[PixelImage]] = []
            for mask in masks {
                var fields: [String: any Sendable] = ["prompt": "a star", "init_images": [picture], "seed": 11, "steps": 3]
                fields.merge(mask) { _, new in new }
                let response = try await SD.post(client, "img2img", fields)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                results.append(try SD.images(response))
            }
            #expect(results[0].count == 1 && results[0] == results[1] && results[0] == results[2])

            let blank = try SD.problems(try await SD.post(client, "img2img", ["prompt": "a star", "init_images": [picture],
                                                                              "mask": try SD.base64PNG(PixelImage(width: side, height: side, layout: .gray))]))
            #expect(blank.map(\.loc) == [["body", "mask"]])
            let invert = try SD.problems(try await SD.post(client, "img2img", ["prompt": "a star", "init_images": [picture], "mask": picture,
                                                                               "inpainting_mask_invert": 2]))
            #expect(invert.map(\.loc) == [["body", "inpainting_mask_invert"]])
        }
    }

    @Test func masksAreReadAsA1111ReadsThem() {
        var gray = PixelImage(width: 3, height: 1, layout: .gray, pixels: [0, 128, 129])
        #expect(PaellaServer.a1111RepaintMask(gray, invert: false).pixels == [0, 0, 255])
        #expect(PaellaServer.a1111RepaintMask(gray, invert: true).pixels == [255, 255, 0])
        // Fully opaque alpha says nothing: the colour is the mask.
        let opaque = PixelImage(width: 2, height: 1, layout: .rgba, pixels: [255, 255, 255, 255, 0, 0, 0, 255])
        #expect(PaellaServer.a1111RepaintMask(opaque, invert: false).pixels == [255, 0])
        // Otherwise the alpha is: opaque repaints, whatever the colour.
        let transparent = PixelImage(width: 2, height: 1, layout: .grayAlpha, pixels: [0, 255, 255, 0])
        #expect(PaellaServer.a1111RepaintMask(transparent, invert: false).pixels == [255, 0])
        gray.pixels = [255, 255, 255]
        #expect(PaellaServer.a1111RepaintMask(gray, invert: false).layout == .gray)
    }

    @Test func modelsOptionsAndMenusNameTheLoadedModel() async throws {
        let model = server.pipeline.modelName
        try await Serve.test(server) { client in
            let models = try #require(try await SD.get(client, "sd-models") as? [[String: Any]])
            #expect(models.count == 1 && models[0]["title"] as? String == model && models[0]["model_name"] as? String == model)
            #expect(Set(models[0].keys) == ["title", "model_name", "hash", "sha256", "filename", "config"])
            let options = try #require(try await SD.get(client, "options") as? [String: Any])
            #expect(options["sd_model_checkpoint"] as? String == model)
            // Open WebUI posts the options back with its choice; the loaded model is accepted, another refused.
            let set = try await SD.post(client, "options", ["sd_model_checkpoint": model, "samples_format": "png", "CLIP_stop_at_last_layers": 1])
            #expect(set.status == .ok && String(buffer: set.body) == "null")
            let other = try SD.problems(try await SD.post(client, "options", ["sd_model_checkpoint": "sd_xl_base_1.0.safetensors"]))
            #expect(other.map(\.loc) == [["body", "sd_model_checkpoint"]] && other[0].msg.contains(model))
            for menu in ["samplers", "schedulers", "upscalers"] {
                let items = try #require(try await SD.get(client, menu) as? [[String: Any]])
                #expect(items.first?["name"] is String, "\(menu)")
            }
            for empty in ["latent-upscale-modes", "sd-vae"] { #expect((try await SD.get(client, empty) as? [Any])?.isEmpty == true) }
        }
    }

    @Test func progressWhenIdleSaysNoJob() async throws {
        try await Serve.test(server) { client in
            let progress = try #require(try await SD.get(client, "progress") as? [String: Any])
            #expect(progress["progress"] as? Double == 0 && progress["eta_relative"] as? Double == 0 && progress["current_image"] is NSNull)
            let state = try #require(progress["state"] as? [String: Any])
            #expect(state["job_count"] as? Int == 0 && state["interrupted"] as? Bool == false && state["sampling_steps"] as? Int == 0)
            #expect(Set(state.keys) == ["skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp", "job_no",
                                        "sampling_step", "sampling_steps"])
            let interrupt = try await SD.post(client, "interrupt", [:])
            #expect(interrupt.status == .ok && String(buffer: interrupt.body) == "{}")
            let skipping = try await client.execute(uri: "/sdapi/v1/progress?skip_current_image=true", method: .get)
            #expect(skipping.status == .ok)
            let unclear = try await client.execute(uri: "/sdapi/v1/progress?skip_current_image=maybe", method: .get)
            #expect(try SD.problems(unclear).map(\.loc) == [["query", "skip_current_image"]])
        }
    }

    /// A long run watched through the progress endpoint, then interrupted: the request answers 200 with the
    /// images of the interrupted batch as they were at the last step, as A1111 does.
    @Test func progressFollowsARunAndInterruptStopsIt() async throws {
        // The library's own bound on steps (1000) is the longest run there can be.
        var limits = ServerLimits.default
        limits.maxSteps = 1000
        let server = try Serve.server(ServerConfiguration(limits: limits))
        let side = side
        try await Serve.test(server) { client in
            let run = Task {
                try await SD.post(client, "txt2img", ["prompt": "a red circle", "seed": 5, "steps": 1000, "batch_size": 2, "n_iter": 2])
            }
            var progress: [String: Any] = [:], state: [String: Any] = [:]
            let deadline = ContinuousClock.now + .seconds(300)
            while ContinuousClock.now < deadline {
                progress = try #require(try await SD.get(client, "progress") as? [String: Any])
                state = try #require(progress["state"] as? [String: Any])
                if (state["sampling_step"] as? Int ?? 0) >= 2 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(state["job"] as? String == "txt2img" && state["job_count"] as? Int == 2 && state["job_no"] as? Int == 0)
            #expect(state["sampling_steps"] as? Int == 1000 && (progress["eta_relative"] as? Double ?? 0) > 0)
            let share = try #require(progress["progress"] as? Double)
            // Still in the first of two batches (job_no 0): at most half done, exactly half when the poll came at its
            // last step (a loaded machine can be that slow to poll).
            #expect(share > 0 && share <= 0.5)
            let preview = try #require(progress["current_image"] as? String)
            let image = try PixelImage.decode(Array(try #require(Data(base64Encoded: preview))), source: "preview").image
            #expect(image.width == side && image.height == side)

            let interrupt = try await SD.post(client, "interrupt", [:])
            #expect(interrupt.status == .ok && String(buffer: interrupt.body) == "{}")
            let answer = try await run.value
            #expect(answer.status == .ok, "\(String(buffer: answer.body))")
            #expect(try SD.images(answer).count == 2, "the interrupted first batch; the second never ran")
            #expect(try SD.info(answer)["all_seeds"] as? [Int] == [5, 5, 6, 6])
            let after = try #require(try await SD.get(client, "progress") as? [String: Any])
            #expect((after["state"] as? [String: Any])?["job_count"] as? Int == 0)
        }
    }

    /// The bundled model (models/paella-small) behind sdapi, as a front-end uses it: the model list, txt2img with the
    /// fields SillyTavern sends, img2img with and without a mask.
    @Test func theBundledModelServesA1111sCalls() async throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/paella-small").path
        let pipeline = try Pipeline(folder: ModelFolder(path: folder), compute: Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM()))
        let server = try PaellaServer(pipeline: pipeline, configuration: ServerConfiguration())
        let side = pipeline.defaults.imageSize
        try await Serve.test(server) { client in
            let models = try #require(try await SD.get(client, "sd-models") as? [[String: Any]])
            #expect(models.first?["title"] as? String == "paella-small")
            let generated = try await SD.post(client, "txt2img", [
                "url": "http://127.0.0.1:8080", "auth": "", "prompt": "a large red circle at the top left on a white background",
                "negative_prompt": "lowres", "sampler_name": "Euler a", "steps": 2, "cfg_scale": 7, "width": side, "height": side,
                "restore_faces": false, "enable_hr": false, "hr_scale": 2, "denoising_strength": 0.7, "seed": -1, "save_images": true,
                "send_images": true, "override_settings": ["CLIP_stop_at_last_layers": 1] as [String: any Sendable],
            ])
            let image = try #require(try SD.images(generated).first)
            #expect(image.width == side && image.height == side)
            var mask = PixelImage(width: side, height: side, layout: .gray, repeating: 0)
            for i in 0..<side * side / 2 { mask.pixels[i] = 255 }
            for extra in [[:], ["mask": try SD.base64PNG(mask)]] as [[String: any Sendable]] {
                var fields: [String: any Sendable] = ["prompt": "a blue square", "init_images": [try SD.base64PNG(image)], "steps": 2,
                                                      "denoising_strength": 0.6, "seed": 4]
                fields.merge(extra) { _, new in new }
                let changed = try await SD.post(client, "img2img", fields)
                #expect(try SD.images(changed).map { [$0.width, $0.height] } == [[side, side]])
            }
        }
    }

    @Test func errorsLeaveInFastAPIsShape() async throws {
        let keyed = try Serve.server(ServerConfiguration(apiKey: "s3cret-key"))
        try await Serve.test(keyed) { client in
            let none = try await client.execute(uri: "/sdapi/v1/options", method: .get)
            #expect(try none.status == .unauthorized && SD.detail(none).contains("API key"))
            // A1111's clients send HTTP Basic credentials: the key is the password, any user name goes.
            for (header, status) in [("Basic " + Data("paella:s3cret-key".utf8).base64EncodedString(), HTTPResponse.Status.ok),
                                     ("Basic " + Data("s3cret-key".utf8).base64EncodedString(), .unauthorized),
                                     ("Basic " + Data("paella:s3cret-kez".utf8).base64EncodedString(), .unauthorized),
                                     ("Bearer s3cret-key", .ok)] {
                let response = try await client.execute(uri: "/sdapi/v1/options", method: .get, headers: [.authorization: header])
                #expect(response.status == status, "\(header)")
            }
        }
        try await Serve.test(server) { client in
            let missing = try await client.execute(uri: "/sdapi/v1/extra-single-image", method: .post)
            #expect(try missing.status == .notFound && !SD.detail(missing).isEmpty)
        }
        let busy = try Serve.server(ServerConfiguration(maxConcurrentJobs: 1, maxQueuedJobs: 0, retryAfterSeconds: 7))
        let holder = try await JobsAPITests.hold(busy.queue)
        try await Serve.test(busy) { client in
            let response = try await SD.post(client, "txt2img", ["prompt": "a cat"])
            #expect(response.status == .tooManyRequests && response.headers[.retryAfter] == "7")
            #expect(try SD.detail(response).contains("busy"))
        }
        holder.cancel()
    }
}
