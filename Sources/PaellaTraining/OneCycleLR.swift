// PyTorch's torch.optim.lr_scheduler.OneCycleLR (two phases, three_phase=False), as paella.py (dome272/Paella,
// commit 3671515) configures it, including its default cycle_momentum: Adam's beta1 cycles inversely to the
// learning rate between base_momentum and max_momentum.
import Foundation

/// The one-cycle learning-rate (and momentum) schedule: warm up from `maxLR / divFactor` to `maxLR` over the
/// first `pctStart` of the steps, then anneal to `maxLR / divFactor / finalDivFactor`.
public struct OneCycleLR: Codable, Sendable, Equatable {
    public enum Anneal: String, Codable, Sendable { case cos, linear }

    public var maxLR: Double
    public var totalSteps: Int
    public var pctStart: Double
    public var divFactor: Double
    public var finalDivFactor: Double
    public var annealStrategy: Anneal
    /// Whether Adam's beta1 cycles between `maxMomentum` (at the ends) and `baseMomentum` (at the peak LR).
    public var cycleMomentum: Bool
    public var baseMomentum: Double
    public var maxMomentum: Double

    public init(maxLR: Double, totalSteps: Int, pctStart: Double = 0.3, divFactor: Double = 25,
                finalDivFactor: Double = 1e4, annealStrategy: Anneal = .cos, cycleMomentum: Bool = true,
                baseMomentum: Double = 0.85, maxMomentum: Double = 0.95) {
        precondition(totalSteps > 0 && pctStart >= 0 && pctStart <= 1, "OneCycleLR: need totalSteps > 0 and pctStart in [0, 1]")
        self.maxLR = maxLR
        self.totalSteps = totalSteps
        self.pctStart = pctStart
        self.divFactor = divFactor
        self.finalDivFactor = finalDivFactor
        self.annealStrategy = annealStrategy
        self.cycleMomentum = cycleMomentum
        self.baseMomentum = baseMomentum
        self.maxMomentum = maxMomentum
    }

    /// paella.py: `OneCycleLR(total_steps=…, max_lr=3e-4, pct_start=0.1 (0 when fine-tuning), div_factor=25,
    /// final_div_factor=1/25, anneal_strategy='linear')`, the other arguments at PyTorch's defaults.
    /// That `final_div_factor` makes the final rate `maxLR / 25 * 25 = maxLR`: after the warm-up the rate stays at
    /// its peak. `finalFraction` (not upstream; 1 is upstream) instead anneals it linearly to `finalFraction * maxLR`
    /// at the last step, which short runs need to settle into a minimum.
    public static func paella(maxLR: Double = 3e-4, totalSteps: Int, finetune: Bool = false, finalFraction: Double = 1) -> OneCycleLR {
        precondition(finalFraction > 0 && finalFraction <= 1, "OneCycleLR.paella: finalFraction \(finalFraction) outside (0, 1]")
        let divFactor = 25.0
        // minLR = maxLR / divFactor / finalDivFactor = finalFraction * maxLR.
        return OneCycleLR(maxLR: maxLR, totalSteps: totalSteps, pctStart: finetune ? 0 : 0.1, divFactor: divFactor,
                          finalDivFactor: 1 / (divFactor * finalFraction), annealStrategy: .linear)
    }

    public var initialLR: Double { maxLR / divFactor }
    public var minLR: Double { initialLR / finalDivFactor }

    /// The learning rate of optimizer step `step` (0-based; PyTorch's value after `step` scheduler steps).
    public func learningRate(at step: Int) -> Double {
        interpolate(step, start: initialLR, peak: maxLR, end: minLR)
    }

    /// Adam's beta1 at optimizer step `step` (nil when momentum does not cycle).
    public func beta1(at step: Int) -> Double? {
        cycleMomentum ? interpolate(step, start: maxMomentum, peak: baseMomentum, end: maxMomentum) : nil
    }

    /// PyTorch's `get_lr`: phase ends at `pct_start * total_steps - 1` and `total_steps - 1` (as floats).
    private func interpolate(_ step: Int, start: Double, peak: Double, end: Double) -> Double {
        precondition(step >= 0 && step <= totalSteps, "OneCycleLR: step \(step) is past the \(totalSteps) total steps")
        let phases = [(end: pctStart * Double(totalSteps) - 1, from: start, to: peak),
                      (end: Double(totalSteps) - 1, from: peak, to: end)]
        var phaseStart = 0.0
        for (i, phase) in phases.enumerated() {
            if Double(step) <= phase.end || i == phases.count - 1 {
                let pct = (Double(step) - phaseStart) / (phase.end - phaseStart)
                return anneal(phase.from, phase.to, pct)
            }
            phaseStart = phase.end
        }
        return end
    }

    private func anneal(_ start: Double, _ end: Double, _ pct: Double) -> Double {
        switch annealStrategy {
        case .linear: return (end - start) * pct + start
        case .cos: return end + (start - end) / 2 * (cos(Double.pi * pct) + 1)
        }
    }
}
