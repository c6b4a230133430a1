import Foundation
import PaellaTestSupport
import Testing

/// Whether `unshare -Urm` may mount a tmpfs here.
private let canMountPrivateTmpfs: Bool =
    (try? PaellaCLI.run(program: "/usr/bin/unshare", ["-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]))?.status == 0

/// A full disk (ENOSPC) and a read-only folder, on a real file system: a small tmpfs mounted in a private mount
/// namespace (`unshare -Urm`, which needs no privileges where the kernel allows user namespaces; the suite is
/// skipped where it does not). Writing an image or a training checkpoint then fails with one sentence, a
/// non-zero exit, the previous files intact and no temporary file left behind; the run resumes once there is room.
@Suite("Full disk and read-only folders", .serialized, .enabled(if: canMountPrivateTmpfs, "unshare -Urm cannot mount a tmpfs here"))
struct DiskFaultTests {
    /// Runs `script` with `sh -eu` in a private mount namespace where `$DISK` is a fresh tmpfs of `kilobytes`,
    /// `$PAELLA` the built executable and `$WORK` a folder outside the tmpfs (on the real disk) for results.
    func inPrivateTmpfs(kilobytes: Int, work: String, _ script: String) throws -> PaellaCLI.Output {
        let executable = try #require(PaellaCLI.executable)
        let disk = work + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        return try PaellaCLI.run(program: "/usr/bin/unshare",
                                 ["-Urm", "sh", "-eu", "-c", "mount -t tmpfs -o size=\(kilobytes)k tmpfs \"$DISK\"\n" + script],
                                 in: work, environment: ["DISK": disk, "WORK": work, "PAELLA": executable])
    }

    /// What `run NAME command...` in a script recorded: its exit status and stderr.
    func recorded(_ work: String, _ name: String) throws -> (status: Int32, stderr: String) {
        let status = try String(contentsOfFile: "\(work)/\(name).status", encoding: .utf8)
        return (Int32(status.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1,
                try String(contentsOfFile: "\(work)/\(name).stderr", encoding: .utf8))
    }

    /// Shell functions for the scripts: `run NAME args...` runs paella, keeping its exit status and stderr under
    /// $WORK; `fill KB` fills $DISK until only about KB kilobytes are free (0: completely).
    static let shellFunctions = """
        run() { name=$1; shift; set +e; "$PAELLA" "$@" > "$WORK/$name.stdout" 2> "$WORK/$name.stderr"; echo $? > "$WORK/$name.status"; set -e; }
        fill() { free=$(df -k --output=avail "$DISK" | tail -1); dd if=/dev/zero of="$DISK/filler" bs=1k count=$((free - $1)) 2>/dev/null || true; }

        """

    func expectOneSentence(_ result: (status: Int32, stderr: String), mentioning words: String, _ what: String) {
        let lines = result.stderr.split(separator: "\n")
        #expect(result.status != 0 && result.status < 128, "\(what): status \(result.status)")
        #expect(lines.count == 1 && result.stderr.contains(words), "\(what): \(result.stderr)")
    }

    @Test func imagesOnAFullDiskOrAReadOnlyFolder() throws {
        let work = try PaellaCLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let model = try Fixtures.tinyModelFolder(withVision: false)
        let generate = "--model '\(model)' --steps 2 --seed 1 --threads 2 --quiet"
        let done = try inPrivateTmpfs(kilobytes: 256, work: work, Self.shellFunctions + """
            run first generate "a red circle" \(generate) -o "$DISK/a.png"
            cp "$DISK/a.png" "$WORK/before.png"
            fill 0
            run full generate "a blue square" \(generate) -o "$DISK/a.png"
            cp "$DISK/a.png" "$WORK/after.png"
            rm "$DISK/filler"
            mount -o remount,ro "$DISK"
            run readonly generate "a green star" \(generate) -o "$DISK/b.png"
            ls -A "$DISK" > "$WORK/listing"
            """)
        try #require(done.status == 0, "\(done.stderr)")
        let first = try recorded(work, "first")
        #expect(first.status == 0, "\(first.stderr)")
        expectOneSentence(try recorded(work, "full"), mentioning: "disk is full", "an image onto a full disk")
        let before = FileManager.default.contents(atPath: work + "/before.png")
        #expect(before != nil && before == FileManager.default.contents(atPath: work + "/after.png"),
                "the image that was there before the failed write changed")
        expectOneSentence(try recorded(work, "readonly"), mentioning: "Read-only file system", "an image into a read-only folder")
        #expect(try String(contentsOfFile: work + "/listing", encoding: .utf8) == "a.png\n")  // no b.png, no temporaries
    }

    @Test func trainingCheckpointsOnAFullDiskOrAReadOnlyFolder() throws {
        let work = try PaellaCLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        try Fixtures.writeSquarePictures(to: work + "/data")
        // About 8 MB a checkpoint (weights, optimizer moments, exported model); 32 MB holds one and the next.
        let train = "train vqgan --data \"$WORK/data\" --output \"$DISK/run\" --steps 6 --batch-size 2 --threads 2 "
            + "--checkpoint-every 3 --ch 32 --ch-mult 1,2 --embed-dim 4 --codebook 8 --seed 3"
        let done = try inPrivateTmpfs(kilobytes: 32 * 1024, work: work, Self.shellFunctions + """
            run first \(train) --stop-at 3
            cp "$DISK/run/trainer.json" "$WORK/trainer-before.json"
            fill 64
            run full \(train) --resume
            cp "$DISK/run/trainer.json" "$WORK/trainer-after.json"
            ls -A "$DISK/run" > "$WORK/listing"
            rm "$DISK/filler"
            mount -o remount,ro "$DISK"
            run readonly \(train) --resume
            mount -o remount,rw "$DISK"
            run rest \(train) --resume
            """)
        try #require(done.status == 0, "\(done.stderr)")
        let first = try recorded(work, "first")
        #expect(first.status == 0, "\(first.stderr)")
        expectOneSentence(try recorded(work, "full"), mentioning: "disk is full", "a checkpoint onto a full disk")
        let before = FileManager.default.contents(atPath: work + "/trainer-before.json")
        #expect(before != nil && before == FileManager.default.contents(atPath: work + "/trainer-after.json"),
                "the last complete checkpoint changed when the next one failed")
        let listing = try String(contentsOfFile: work + "/listing", encoding: .utf8).split(separator: "\n")
        #expect(listing.allSatisfy { !$0.contains(".tmp-") }, "temporary files left: \(listing)")
        #expect(listing.contains("weights-000000003.safetensors") && listing.contains("optimizer-000000003.safetensors"))
        expectOneSentence(try recorded(work, "readonly"), mentioning: "Read-only file system", "a run in a read-only folder")
        let rest = try recorded(work, "rest")
        #expect(rest.status == 0, "resuming once there is room failed: \(rest.stderr)")
    }
}
