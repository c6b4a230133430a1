import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Paella
import PaellaIO
@testable import PaellaServer
import PaellaTestSupport
import Testing

/// The native jobs API. Tests that watch a job hold the queue's only slot first, so that the job is still
/// queued when they look at it, then let it run.
@Suite("Server: jobs API")
struct JobsAPITests {
    let server: PaellaServer
    var side: Int { server.pipeline.defaults.imageSize }

    init() throws { server = try Serve.server(ServerConfiguration(maxConcurrentJobs: 1, maxQueuedJobs: 4)) }

    /// Occupies the queue's only slot until the returned task is cancelled.
    static func hold(_ queue: JobQueue) async throws -> Task<Void, any Error> {
        let holder = Task { try await queue.run { try await Task.sleep(for: .seconds(120)) } }
        while await queue.running == 0 { try await Task.sleep(for: .milliseconds(2)) }
        return holder
    }

    static func create(_ client: some TestClientProtocol, _ fields: [String: any Sendable]) async throws -> TestResponse {
        try await client.execute(uri: "/api/jobs", method: .post, headers: Serve.jsonHeaders, body: try Serve.json(fields))
    }

    /// Polls the job until it has ended; its final state. The deadline only stops a stuck test: under
    /// ThreadSanitizer every mode of the tiny model takes minutes.
    static func ended(_ client: some TestClientProtocol, _ id: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(900)
        while ContinuousClock.now < deadline {
            let state = try Serve.object(try await client.execute(uri: "/api/jobs/\(id)", method: .get))
            if ["succeeded", "failed", "cancelled"].contains(state["state"] as? String ?? "") { return state }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw CancellationError()
    }

    @Test func aJobStreamsItsStepsThenItsImages() async throws {
        let server = server
        let side = side
        let holder = try await Self.hold(server.queue)
        try await Serve.test(server) { client in
            let created = try await Self.create(client, ["mode": "generate", "prompt": "a red circle", "n": 2, "seed": 5, "steps": 3])
            #expect(created.status == .accepted)
            let snapshot = try Serve.object(created)
            let id = try #require(snapshot["id"] as? String)
            #expect(created.headers[.location] == "/api/jobs/\(id)")
            #expect(snapshot["state"] as? String == "queued" && snapshot["mode"] as? String == "generate")

            let job = try #require(await server.jobs.job(id))
            let stream = Task { try await client.execute(uri: "/api/jobs/\(id)/events", method: .get) }
            while job.listenerCount == 0 { try await Task.sleep(for: .milliseconds(2)) }
            holder.cancel()
            let events = try await stream.value
            #expect(events.status == .ok && events.headers[.contentType] == "text/event-stream")
            let messages = String(buffer: events.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            let names = messages.map { $0.split(separator: "\n")[0] }
            #expect(names.first == "event: state" && names.last == "event: succeeded")
            let steps = messages.filter { $0.hasPrefix("event: progress") && $0.contains("\"stage\":\"sampling\"") }
            #expect(steps.count == 3, "\(messages)")
            #expect(steps.last?.contains("\"step\":3,\"total_steps\":3") == true)
            // Each step carries a preview of the first image, decoded from the tokens so far.
            let data = try #require(steps.last?.split(separator: "\n").last?.dropFirst("data: ".count))
            let event = try #require(try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
            let preview = try #require((event["preview"] as? String)?.split(separator: ",").last)
            let image = try PixelImage.decode(Array(try #require(Data(base64Encoded: String(preview)))), source: "preview").image
            #expect(image.width == side && image.height == side)

            let final = try Serve.object(try await client.execute(uri: "/api/jobs/\(id)", method: .get))
            #expect(final["state"] as? String == "succeeded")
            let links = try #require(final["images"] as? [String])
            #expect(links.count == 2 && (final["parameters"] as? [String: Any])?["seed"] as? Int == 5)
            let served = try await client.execute(uri: links[1], method: .get)
            #expect(served.status == .ok && served.headers[.contentType] == "image/png")
        }
    }

    @Test func deleteCancelsAQueuedJob() async throws {
        let server = server
        let holder = try await Self.hold(server.queue)
        try await Serve.test(server) { client in
            let id = try #require(try Serve.object(try await Self.create(client, ["prompt": "a cat"]))["id"] as? String)
            let deleted = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
            #expect(deleted.status == .ok)
            #expect(try Serve.object(deleted)["state"] as? String == "cancelled")
            let again = try await client.execute(uri: "/api/jobs/\(id)", method: .delete)
            #expect(again.status == .conflict)
            #expect(try Serve.error(again)["code"] as? String == "job_ended")
            #expect(await server.queue.waiting == 0)
        }
        holder.cancel()
    }

    /// A job whose only event stream goes away is cancelled: nobody would see its result.
    @Test func aJobWithoutListenersIsCancelled() async throws {
        let server = server
        let holder = try await Self.hold(server.queue)
        try await Serve.test(server) { client in
            let id = try #require(try Serve.object(try await Self.create(client, ["prompt": "a cat"]))["id"] as? String)
            let job = try #require(await server.jobs.job(id))
            for await message in job.events() {
                #expect(message.hasPrefix("event: state"))
                break
            }
            await job.waitUntilFinished()
            #expect(job.snapshot.state == .cancelled)
        }
        holder.cancel()
    }

    @Test func everyModeRunsAsAJob() async throws {
        let side = side
        let picture = Data(try Serve.png(TinyPipeline.picture(width: side, height: side))).base64EncodedString()
        let bodies: [[String: any Sendable]] = [
            ["mode": "interpolate", "from": "a red circle", "to": "a blue square", "frames": 2, "method": "slerp"],
            ["mode": "compose", "blend": ["from": "a red circle", "to": "a blue square", "axis": "rows"] as [String: any Sendable]],
            ["mode": "compose", "regions": [["prompt": "a red circle", "axis": "columns", "start": 0, "end": side / 2] as [String: any Sendable]]],
            ["mode": "inpaint", "image": "data:image/png;base64," + picture, "prompt": "a star", "rect": [0, 0, side / 2, side / 2]],
            ["mode": "outpaint", "image": picture, "prompt": "a star", "extend": ["right": side / 2] as [String: any Sendable]],
            ["mode": "edit", "image": picture, "prompt": "a star", "strength": 0.5, "temperature": [0.9, 0.2]],
            ["mode": "vary", "image": picture, "n": 2],
        ]
        try await Serve.test(server) { client in
            for body in bodies {
                let created = try await Self.create(client, body)
                #expect(created.status == .accepted, "\(String(buffer: created.body))")
                let id = try #require(try Serve.object(created)["id"] as? String)
                let final = try await Self.ended(client, id)
                #expect(final["state"] as? String == "succeeded", "\(body["mode"] ?? ""): \(final)")
                #expect((final["parameters"] as? [String: Any])?["mode"] as? String == body["mode"] as? String)
                #expect((final["images"] as? [String])?.isEmpty == false)
            }
        }
    }

    static let badJobs: [([String: any Sendable], String)] = [
        (["mode": "paint", "prompt": "a cat"], "mode"),
        (["mode": "inpaint", "prompt": "a cat", "image": "bm90IGFuIGltYWdl"], "image"),
        (["mode": "inpaint", "prompt": "a cat"], "image"),
        (["mode": "interpolate", "from": "a", "to": "b", "frames": 1], "frames"),
        (["mode": "interpolate", "from": "a", "to": "b", "method": "cubic"], "method"),
        (["mode": "interpolate", "from": "a"], "to"),
        (["mode": "compose"], "regions"),
        (["mode": "generate", "prompt": "a cat", "temperature": [1, 2, 3]], "temperature"),
        // Values the pipeline itself would refuse are refused here too, so that no job id is handed out for them.
        (["mode": "generate", "prompt": "a cat", "temperature": [0, 0]], "temperature"),
        (["mode": "generate", "prompt": "a cat", "temperature": [1, -0.5]], "temperature"),
        (["mode": "edit", "prompt": "a cat", "image": "bm90IGFuIGltYWdl", "strength": 0], "strength"),
        (["mode": "edit", "prompt": "a cat", "image": "bm90IGFuIGltYWdl", "strength": 1.5], "strength"),
        (["mode": "outpaint", "prompt": "a cat", "image": "bm90IGFuIGltYWdl", "extend": ["left": 0]], "extend"),
        (["mode": "generate", "prompt": "a cat", "width": 4096], "size"),
    ]

    @Test(arguments: badJobs)
    func badJobsAreRefusedBeforeTheyAreQueued(fields: [String: any Sendable], param: String) async throws {
        try await Serve.test(server) { client in
            let response = try await Self.create(client, fields)
            #expect(response.status == .badRequest)
            #expect(try Serve.error(response)["param"] as? String == param)
        }
    }

    @Test func inpaintingWithoutAMaskOrRectIsRefused() async throws {
        let picture = Data(try Serve.png(TinyPipeline.picture(width: side, height: side))).base64EncodedString()
        try await Serve.test(server) { client in
            let response = try await Self.create(client, ["mode": "inpaint", "prompt": "a cat", "image": picture])
            #expect(response.status == .badRequest)
            #expect(try Serve.error(response)["param"] as? String == "mask")
        }
    }

    /// A mask with alpha repaints its fully transparent pixels, whatever their colour (the page's canvas sends such
    /// masks): the alpha must survive decoding. Opaque white here means keep.
    @Test func aMaskWithAlphaRepaintsItsTransparentPixels() throws {
        let side = side
        var mask = PixelImage(width: side, height: side, layout: .rgba, repeating: 255)
        for y in 0..<side { for x in 0..<side / 2 { mask.pixels[(y * side + x) * 4 + 3] = 0 } }
        let body = try JSONDecoder().decode(JobBody.self, from: JSONSerialization.data(withJSONObject: [
            "mode": "inpaint", "prompt": "a star", "image": Data(try Serve.png(TinyPipeline.picture(width: side, height: side))).base64EncodedString(),
            "mask": "data:image/png;base64," + Data(try mask.encodePNG()).base64EncodedString(),
        ]))
        guard case let (_, .inpaint(request)) = try server.pipelineRequest(body), case let .image(repaint) = request.mask else {
            Issue.record("not an inpainting with an image mask")
            return
        }
        #expect(repaint.layout == .gray)
        #expect(repaint.pixels[0] == 255 && repaint.pixels[side - 1] == 0, "left half repainted, right half kept")
        #expect(request.image.layout == .rgb)
    }

    @Test func unknownJobsAre404() async throws {
        try await Serve.test(server) { client in
            for (uri, method) in [("/api/jobs/nope", HTTPRequest.Method.get), ("/api/jobs/nope/events", .get), ("/api/jobs/nope", .delete)] {
                let response = try await client.execute(uri: uri, method: method)
                #expect(response.status == .notFound)
                #expect(try Serve.error(response)["code"] as? String == "not_found")
            }
        }
    }

    @Test func aFullQueueRefusesJobsWith429() async throws {
        let server = try Serve.server(ServerConfiguration(maxConcurrentJobs: 1, maxQueuedJobs: 0))
        let holder = try await Self.hold(server.queue)
        try await Serve.test(server) { client in
            let response = try await Self.create(client, ["prompt": "a cat"])
            #expect(response.status == .tooManyRequests && response.headers[.retryAfter] != nil)
        }
        holder.cancel()
    }
}
