import Foundation
import PaellaCore
import PaellaTestSupport
import PaellaTraining
import Testing

/// The pieces of the recipe against values PyTorch 2.13 printed for the same calls (CPU, float32 tensors).
@Suite struct RecipeTests {
    static let compute = Compute(pool: ThreadPool(threads: 2), gemm: BuiltinGEMM())

    /// `OneCycleLR(AdamW(...), max_lr=0.01, total_steps=10, pct_start=0.3)` (cos annealing, cycling beta1):
    /// `param_groups[0]['lr']` and `['betas'][0]` before each of the 10 optimizer steps.
    /// The trainer's generator serves wherever a `RandomSource` is asked for (the sampler's interface), with the
    /// same draws as when called directly, and in range.
    @Test func trainingRandomIsARandomSource() {
        func draw(_ source: inout some RandomSource) -> (Tensor, Tensor) { (source.uniform([3, 4]), source.randint(7, [5])) }
        var generic = TrainingRandom(seed: 12), direct = TrainingRandom(seed: 12)
        let (u, k) = draw(&generic)
        #expect(u.floats == direct.uniform([3, 4]).floats && k.integers() == direct.randint(7, [5]).integers())
        #expect(u.floats.allSatisfy { (0..<1).contains($0) } && k.integers().allSatisfy { (0..<7).contains($0) })
    }

    @Test func oneCycleMatchesPyTorch() {
        let s = OneCycleLR(maxLR: 0.01, totalSteps: 10, pctStart: 0.3)
        let expected: [(Double, Double)] = [
            (0.0003999999999999993, 0.95), (0.0052, 0.8999999999999999), (0.01, 0.85),
            (0.009504846320134737, 0.854951556604879), (0.008117456539497631, 0.8688255099070633),
            (0.0061126202193628925, 0.8888739533021842), (0.003887419780637108, 0.9111260466978157),
            (0.00188258346050237, 0.9311744900929366), (0.0004951936798652628, 0.945048443395121), (4e-08, 0.95)]
        for (step, (lr, beta1)) in expected.enumerated() {
            #expect(abs(s.learningRate(at: step) - lr) <= 1e-15, "lr at \(step)")
            #expect(abs((s.beta1(at: step) ?? 0) - beta1) <= 1e-15, "beta1 at \(step)")
        }
        // paella.py's schedule: linear, final_div_factor 1/25, so it anneals from max_lr back up to... max_lr.
        let p = OneCycleLR.paella(maxLR: 1e-3, totalSteps: 40)
        #expect(abs(p.learningRate(at: 0) - 4e-5) < 1e-18 && abs(p.learningRate(at: 3) - 1e-3) < 1e-18 && abs(p.learningRate(at: 39) - 1e-3) < 1e-18)
        // An annealing final fraction: the same warm-up, then a straight line from the peak (step 3) to 2% of it
        // (step 39), e.g. halfway (step 21) at 0.51e-3.
        let annealed = OneCycleLR.paella(maxLR: 1e-3, totalSteps: 40, finalFraction: 0.02)
        #expect(abs(annealed.learningRate(at: 0) - 4e-5) < 1e-18 && abs(annealed.learningRate(at: 3) - 1e-3) < 1e-18)
        #expect(abs(annealed.learningRate(at: 21) - 0.51e-3) < 1e-15 && abs(annealed.learningRate(at: 39) - 2e-5) < 1e-15)
        // Fine-tuning has no warm-up; PyTorch's phase arithmetic (the first phase ends at step -1) puts step 0 one
        // eleventh of the way down already.
        let fineTuning = OneCycleLR.paella(maxLR: 1e-3, totalSteps: 11, finetune: true, finalFraction: 0.5)
        #expect(abs(fineTuning.learningRate(at: 0) - (1e-3 - 0.5e-3 / 11)) < 1e-15 && abs(fineTuning.learningRate(at: 10) - 0.5e-3) < 1e-15)
        #expect(OneCycleLR(maxLR: 1, totalSteps: 5, cycleMomentum: false).beta1(at: 2) == nil)
    }

    /// `AdamW([p], lr=0.1, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1)`, three steps with fixed gradients.
    @Test func adamWMatchesPyTorch() {
        var p = TrainableParameters([(name: "p", tensor: Tensor([0.5, -1, 2, 0], shape: [4]))])
        var adam = AdamW(parameters: p, beta1: 0.8, beta2: 0.99, eps: 1e-3, weightDecay: 0.1)
        for g: [Float] in [[0.1, -0.2, 0.3, 0], [1, 0.5, -0.5, 1e-4], [0, 2, 0.1, -1]] {
            adam.update(&p, gradients: TrainableParameters([(name: "p", tensor: Tensor(g, shape: [4]))]), lr: 0.1)
        }
        let expected: [Float] = [0.24391819536685944, -0.9991106986999512, 1.8904073238372803, 0.06536798179149628]
        #expect(maxAbsDifference(p.tensors[0].floats, expected) <= 2e-7)
        #expect(adam.step == 3)
    }

    /// The eight-lane path (long tensors, on a pool) updates every element exactly like the scalar one.
    @Test func adamWLanesMatchScalarUpdates() {
        var rng = TestRandom(seed: 4)
        let n = 70_001
        let start = rng.tensor([n]), grads = (0..<3).map { _ in rng.tensor([n]) }
        var whole = TrainableParameters([(name: "w", tensor: start)])
        var adam = AdamW(parameters: whole)
        for g in grads {
            adam.update(&whole, gradients: TrainableParameters([(name: "w", tensor: g)]), lr: 0.01, beta1: 0.9,
                        pool: ThreadPool(threads: 2))
        }
        for i in [0, 1, 7, 8, 9, 4096, n - 2, n - 1] {
            var one = TrainableParameters([(name: "w", tensor: Tensor([start.floats[i]], shape: [1]))])
            var single = AdamW(parameters: one)
            for g in grads {
                single.update(&one, gradients: TrainableParameters([(name: "w", tensor: Tensor([g.floats[i]], shape: [1]))]), lr: 0.01, beta1: 0.9)
            }
            #expect(one.tensors[0].floats[0] == whole.tensors[0].floats[i], "element \(i)")
        }
    }

    /// The loss against PyTorch's definition computed directly, and its gradient against central differences.
    @Test func labelSmoothedCrossEntropy() throws {
        var rng = TestRandom(seed: 9)
        let (rows, k, eps) = (6, 5, 0.1)
        let logits = rng.tensor([2, 3, k], -3, 3)
        let targets = Tensor(int32: (0..<rows).map { _ in Int32(rng.int(0...(k - 1))) }, shape: [2, 3])
        let result = Self.compute.tokenCrossEntropy(logits: logits, targets: targets, labelSmoothing: eps, scale: 0.5)
        func reference(_ z: [Float]) -> Double {
            var total = 0.0
            for r in 0..<rows {
                let row = z[(r * k)..<((r + 1) * k)].map(Double.init)
                let lse = log(row.map { exp($0) }.reduce(0, +))
                let logp = row.map { $0 - lse }
                total += -(1 - eps) * logp[targets.integers()[r]] - eps * logp.reduce(0, +) / Double(k)
            }
            return total / Double(rows)
        }
        #expect(abs(result.loss - reference(logits.floats)) <= 1e-6)
        let z = logits.floats, g = result.logitsGradient.floats
        for i in z.indices {
            var plus = z, minus = z
            plus[i] += 1e-2
            minus[i] -= 1e-2
            let fd = 0.5 * (reference(plus) - reference(minus)) / 2e-2
            #expect(abs(fd - Double(g[i])) <= 1e-5, "dlogits[\(i)]")
        }
        let argmax = (0..<rows).map { r in (0..<k).max { z[r * k + $0] < z[r * k + $1] } ?? 0 }
        #expect(result.accuracy == Double(zip(argmax, targets.integers()).filter { $0 == $1 }.count) / Double(rows))
    }

    /// `clip_grad_norm_`: total norm over every tensor, coefficient max_norm / (norm + 1e-6) when below 1.
    @Test func gradientClipping() {
        var g = TrainableParameters([(name: "a", tensor: Tensor([3, 0], shape: [2])), (name: "b", tensor: Tensor([4], shape: [1]))])
        #expect(g.clipNorm(10) == 5)
        #expect(g.tensors[0].floats == [3, 0])
        #expect(g.clipNorm(1) == 5)
        let c = Float(1 / (5 + 1e-6))
        #expect(g.tensors[0].floats == [3 * c, 0] && g.tensors[1].floats == [4 * c])
    }

    @Test func trainingRandomRestoresFromItsState() {
        var a = TrainingRandom(seed: 42)
        _ = a.uniform([5])
        var b = TrainingRandom(state: a.state)
        #expect(a.uniform([7]).floats == b.uniform([7]).floats)
        #expect(a.randint(13, [50]).integers() == b.randint(13, [50]).integers())
        #expect(a.randint(13, [1000]).integers().allSatisfy { $0 >= 0 && $0 < 13 })
    }
}
