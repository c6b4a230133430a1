import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress display on stderr: redrawn in place on a terminal, silent when stderr is not a terminal
/// or when the user asked for quiet output, so logs and pipes stay clean.
final class ProgressBar: @unchecked Sendable {
    private let enabled: Bool
    private let lock = NSLock()
    private var lastDraw = Date.distantPast
    private let start = Date()

    init(quiet: Bool) {
        enabled = !quiet && isatty(STDERR_FILENO) != 0
    }

    /// Draws `label` with `done` of `total` units (bytes when `bytes` is true), at most ten times a second.
    func update(_ label: String, done: Int, total: Int?, bytes: Bool = false, force: Bool = false) {
        guard enabled else { return }
        lock.withLock {
            let now = Date()
            guard force || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
            lastDraw = now
            let elapsed = max(now.timeIntervalSince(start), 1e-3)
            let rate = Double(done) / elapsed
            var line = label
            if let total, total > 0 {
                let fraction = min(1, Double(done) / Double(total))
                let width = 24
                let filled = Int(fraction * Double(width))
                line += "  [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
                line += String(format: " %3.0f%%", fraction * 100)
                line += "  " + (bytes ? "\(Self.bytes(done))/\(Self.bytes(total))" : "\(done)/\(total)")
                if rate > 0, done < total { line += "  ETA " + Self.duration(Double(total - done) / rate) }
            } else {
                line += "  " + (bytes ? Self.bytes(done) : "\(done)")
            }
            if bytes { line += "  \(Self.bytes(Int(rate)))/s" }
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        }
    }

    /// Ends the line so that later output starts on a fresh one.
    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
