import PaellaCore
import PaellaModels
import PaellaTestSupport
@testable import PaellaTraining
import Testing

/// `--exact-sums`: per-sample values added in one fixed tree over the batch, so that every split of the batch into
/// power-of-two shares gives the same bits.
@Suite struct SampleTreeTests {
    /// The tree's shape: children `[lo, mid)` and `[mid, hi)` with `mid = lo + count / 2`, leaves in order.
    @Test func treeShape() {
        func shape(_ range: Range<Int>) -> String {
            SampleTree.sum(range, leaf: { "\($0)" }) { left, right in left = "(\(left)+\(right))" }
        }
        #expect(shape(0..<1) == "0")
        #expect(shape(0..<4) == "((0+1)+(2+3))")
        #expect(shape(0..<5) == "((0+1)+(2+(3+4)))")
        #expect(shape(4..<8) == "((4+5)+(6+7))")
        #expect(shape(0..<6) == "((0+(1+2))+(3+(4+5)))")
    }

    @Test func sharesAreSubtreesOnlyForPowerOfTwoRanksDividingTheBatch() {
        #expect(SampleTree.sharesAreSubtrees(total: 4, ranks: 1))
        #expect(SampleTree.sharesAreSubtrees(total: 4, ranks: 2))
        #expect(SampleTree.sharesAreSubtrees(total: 4, ranks: 4))
        #expect(SampleTree.sharesAreSubtrees(total: 12, ranks: 4))  // shares of 3 are nodes too
        #expect(!SampleTree.sharesAreSubtrees(total: 6, ranks: 3))
        #expect(!SampleTree.sharesAreSubtrees(total: 6, ranks: 4))
        #expect(!SampleTree.sharesAreSubtrees(total: 5, ranks: 2))
        #expect(!SampleTree.sharesAreSubtrees(total: 4, ranks: 0))
    }

    /// Adversarial floats: 1e8 first and -1e8 last, where a float's spacing is 8, with values from 2 to 3.9
    /// between them. A left fold drops every small value into 1e8's rounding and ends at 0; the tree adds them up
    /// in subtrees first. Every split into 1, 2, 4, ... shares whose sums are then added over the ranks' tree gives
    /// the bits of the whole batch's tree, while a split whose shares are not nodes (three of six) gives others.
    @Test func splitsIntoSubtreesGiveTheSameBits() {
        var rng = TestRandom(seed: 11)
        for total in [8, 12, 16, 48] {
            let values = (0..<total).map { i -> Float in
                i == 0 ? 1e8 : i == total - 1 ? -1e8 : rng.float(2, 3.9)
            }
            let whole = SampleTree.sum(0..<total, leaf: { values[$0] }, add: +=)
            #expect(values.reduce(0, +) == 0 && whole != 0, "\(total) values: the left fold gives \(values.reduce(0, +)), the tree \(whole)")
        var ranks = 1
            while total % ranks == 0 {
                let share = total / ranks
                let partials = (0..<ranks).map { r in SampleTree.sum((r * share)..<((r + 1) * share), leaf: { values[$0] }, add: +=) }
                let combined = SampleTree.sum(0..<ranks, leaf: { partials[$0] }, add: +=)
                #expect(combined.bitPattern == whole.bitPattern, "\(ranks) shares of \(share): \(combined) instead of \(whole)")
                ranks *= 2
            }
        }
        // Three shares of 2 out of 6: [0, 2) is a node but [2, 4) is not, and the sum differs.
        let values: [Float] = [1e8, 1, -1e8, 1, 0.5, 0.25]
        let whole = SampleTree.sum(0..<6, leaf: { values[$0] }, add: +=)
        let thirds = (0..<3).map { r in values[2 * r] + values[2 * r + 1] }
        #expect(SampleTree.sum(0..<3, leaf: { thirds[$0] }, add: +=) != whole)
    }

    /// The denoiser's per-item sums: two halves of a batch added at the root give the whole batch's bits, and the
    /// exact gradient (divided by the batch and the accumulation window) is the batched one up to rounding.
    @Test func denoiserSampleSumsSplitExactlyAndMatchTheBatchedGradient() throws {
        let config = DenoiserGradientTests.config
        var rng = TestRandom(seed: 5)
        let parameters = TrainableParameters(try Denoiser.parameterShapes(config).map { (name: $0.name, tensor: rng.tensor($0.shape, -0.5, 0.5)) })
        var recipe = DenoiserTrainingRecipe.paellaV1(totalSteps: 10)
        recipe.accumulationSteps = 2
        var trainer = try DenoiserTrainer(config: config, parameters: parameters, recipe: recipe,
                                          compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()), seed: 3)
        let tokens = Tensor(int32: (0..<(4 * 4 * 6)).map { _ in Int32(rng.int(0...(config.numLabels - 1))) }, shape: [4, 4, 6])
        let batch = trainer.prepareBatch(tokens: tokens, conditioning: rng.tensor([4, config.cClip]))
        let whole = try trainer.sampleSums(batch)
        func half(_ range: Range<Int>) throws -> SampleSums {
            let share = BatchShare(range: range, total: 4)
            return try trainer.sampleSums(DenoiserTrainingBatch(targets: batch.targets.slice(range), noised: batch.noised.slice(range),
                                                                r: Array(batch.r[range]), conditioning: batch.conditioning.slice(range), share: share))
        }
        var combined = try half(0..<2)
        combined.add(try half(2..<4))
        expectBitwiseEqual(combined, whole)
        let exact = try trainer.exactLossAndGradients(batch)
        let (loss, batched) = try trainer.lossAndGradients(batch, scale: 0.5)
        #expect(abs(exact.statistics[0] - loss.loss) <= 1e-6 * loss.loss)
        #expect(abs(exact.statistics[1] - loss.accuracy) <= 1e-12)
        expectClose(exact.gradients, batched)
        trainer.exactSums = true
        #expect(try trainer.train(batch).updated == false)  // the first batch of a window of two
    }

    /// The VQGAN's per-image sums split the same way, and match the batched loss and gradient up to rounding.
    @Test func vqganSampleSumsSplitExactlyAndMatchTheBatchedGradient() throws {
        let recipe = VQGANTrainingRecipe(totalSteps: 10)
        let trainer = try VQGANTrainer(config: VQGANTrainerTests.config, recipe: recipe,
                                       compute: Compute(pool: ThreadPool(threads: 1), gemm: BuiltinGEMM()), seed: 2)
        let images = VQGANTrainerTests.images(4, seed: 7)
        let whole = try trainer.sampleSums(images: images, uniforms: nil, share: .whole(4))
        var combined = try trainer.sampleSums(images: images.slice(0..<2), uniforms: nil, share: BatchShare(range: 0..<2, total: 4))
        let right = try trainer.sampleSums(images: images.slice(2..<4), uniforms: nil, share: BatchShare(range: 2..<4, total: 4))
        combined.sums.add(right.sums)
        expectBitwiseEqual(combined.sums, whole.sums)
        #expect(combined.codes + right.codes == whole.codes)
        #expect((combined.z + right.z).map(\.bitPattern) == whole.z.map(\.bitPattern))
        let exact = try trainer.exactBatch(images: images, uniforms: nil, share: .whole(4))
        let batched = try trainer.lossAndGradients(images: images)
        #expect(abs(exact.loss - batched.loss) <= 1e-6 * batched.loss)
        #expect(abs(exact.psnr - batched.psnr) <= 1e-6 * batched.psnr)
        #expect(exact.codes.integers() == batched.codes.integers())
        expectClose(exact.gradients, batched.gradients)
    }

    func expectBitwiseEqual(_ a: SampleSums, _ b: SampleSums) {
        #expect(a.statistics.map(\.bitPattern) == b.statistics.map(\.bitPattern))
        for (name, (x, y)) in zip(a.gradients.names, zip(a.gradients.tensors, b.gradients.tensors)) {
            #expect(x.floats.map(\.bitPattern) == y.floats.map(\.bitPattern), "\(name)")
        }
    }

    /// Every tensor within 1e-5 of its largest magnitude (sums of the same terms in another order).
    func expectClose(_ a: TrainableParameters, _ b: TrainableParameters) {
        for (name, (x, y)) in zip(a.names, zip(a.tensors, b.tensors)) {
            let scale = max(y.floats.map(abs).max() ?? 0, 1e-30)
            let worst = zip(x.floats, y.floats).map { abs($0 - $1) / scale }.max() ?? 0
            #expect(worst <= 1e-5, "\(name): \(worst) of its largest value")
        }
    }
}
