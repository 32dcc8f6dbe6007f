/**
 * A non-finite loss on ONE rank of a data-parallel job: every rank must take the same decision on the same step
 * and none may hang. The loss is made non-finite by real data, no hook: a token whose (frozen) embedding row is NaN
 * poisons the forward pass of exactly the batch that contains it, and the data order decides which rank gets it.
 * - bf16/fp32 (through the trainer): every rank stops with the same error naming the step and the rank.
 * - fp16 loss scaling (the native step, as the trainer drives it on CUDA; here on a float32 CPU model with the
 *   scaler on): every rank skips the update and halves the loss scale; the weights stay equal on both ranks.
 * Both with plain all-reduce and with ZeRO-1, whose step folds the flags into a different collective.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { shuffledIndices } from '../lib/data/batches.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { ProcessGroup } from '../lib/distributed/process-group.js'
import { freePort } from '../lib/distributed/launcher.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { LlamaModel } from '../lib/index.js'
import type { NativeTrainStepOptions, NativeTrainStepResult } from '../lib/native/binding.js'
import { resolveStepResult, train } from '../lib/train/trainer.js'
import { REPO_ROOT } from './helpers/python.js'
import { writeTrainableModel } from './helpers/trainable-model.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

/** Sets every element of the embedding rows of `ids` to NaN, in the checkpoint's float32 file. */
async function poisonEmbeddings(dir: string, ids: number[]) {
  const checkpoint = await openCheckpoint(dir)
  const embed = checkpoint.tensors.find((x) => x.name === 'model.embed_tokens.weight')!
  const bytes = readFileSync(embed.file)
  const hidden = embed.shape[1]!
  for (const id of ids) for (let k = 0; k < hidden; k++) bytes.writeFloatLE(NaN, embed.offset + (id * hidden + k) * 4)
  writeFileSync(embed.file, bytes)
}

async function poisonedModel(t: Test) {
  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'base'), { seed: 3 })
  await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
  const tokenizer = await loadTokenizer(join(dir, 'pro'))
  const poisoned = tokenizer.encode('ζ')
  await poisonEmbeddings(join(dir, 'pro'), poisoned)
  return { dir, pro: join(dir, 'pro'), poisoned }
}

t.test('bf16/fp32: a NaN loss on one rank stops both ranks at the same step with the same error', async (t) => {
  const { dir, pro } = await poisonedModel(t)
  // Six examples, the fifth one poisoned. 2 ranks × batch 1: step s takes positions 2(s-1) (rank 0) and
  // 2(s-1)+1 (rank 1) of the epoch's shuffled order, so one rank alone meets it. A seed that puts it past step 1.
  const examples = Array.from({ length: 6 }, (_, i) => ({
    instruction: 'Add.',
    input: `f(${i})`,
    output: `return x + ${i}${i === 4 ? ' ζ' : ''}`,
  }))
  writeFileSync(join(dir, 'poisoned.jsonl'), examples.map((e) => JSON.stringify(e)).join('\n'))
  const seed = [1, 2, 3, 4, 5, 6, 7, 8].find((s) => shuffledIndices(6, s).indexOf(4) >= 2)!
  const position = shuffledIndices(6, seed).indexOf(4)
  const badStep = Math.floor(position / 2) + 1
  const badRank = position % 2
  for (const zeroStage of [0, 1]) {
    const out = join(dir, `out-zero${zeroStage}`)
    const yaml = join(dir, `zero${zeroStage}.yaml`)
    writeFileSync(
      yaml,
      JSON.stringify({
        model_name_or_path: pro,
        finetuning_type: 'freeze',
        use_llama_pro: true,
        freeze_trainable_layers: 2,
        stage: 'sft',
        dataset: join(dir, 'poisoned.jsonl'),
        cutoff_len: 64,
        per_device_train_batch_size: 1,
        seed,
        output_dir: out,
        max_steps: 3,
        save_steps: 1,
        logging_steps: 1,
        threads: 1,
        zero_stage: zeroStage,
        // A rank that waited for a peer which had already thrown would fail after this with another error.
        ddp_timeout: 30,
      }),
    )
    const port = await freePort()
    const outcomes = await Promise.allSettled(
      [0, 1].map((rank) =>
        train(yaml, {
          distributed: {
            rank,
            worldSize: 2,
            localRank: rank,
            localWorldSize: 2,
            masterAddr: '127.0.0.1',
            masterPort: port,
          },
        }),
      ),
    )
    const errors = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error & { code?: string }) : null))
    t.ok(
      errors.every((e) => e !== null),
      `zero_stage ${zeroStage}: both ranks fail (${outcomes.map((o) => o.status).join(', ')})`,
    )
    if (errors.some((e) => e === null)) continue
    t.same(
      errors.map((e) => e!.code),
      ['LLAMAPRO_NONFINITE', 'LLAMAPRO_NONFINITE'],
      `zero_stage ${zeroStage}: both with the non-finite error, neither with a timeout: ` +
        `${errors.map((e) => e!.message).join(' | ')}`,
    )
    t.equal(errors[0]!.message, errors[1]!.message, `zero_stage ${zeroStage}: the same message on both ranks`)
    t.match(
      errors[0]!.message,
      new RegExp(
        `^the loss is not finite \\(NaN\\) at step ${badStep} \\(on rank ${badRank} of 2\\); training stopped on ` +
          `every rank without saving this state\\. The last good checkpoint is .*checkpoint-${badStep - 1}\\.`,
      ),
      `zero_stage ${zeroStage}: it names step ${badStep} and rank ${badRank}`,
    )
    t.ok(existsSync(join(out, `checkpoint-${badStep - 1}`, 'model.safetensors')), 'the last good checkpoint is kept')
    t.notOk(existsSync(join(out, `checkpoint-${badStep}`)), 'nothing is saved from the bad step')
    t.notOk(existsSync(join(out, 'model.safetensors')), 'and no final model is written')
  }

  // The same job as separate processes under the CLI's launcher: both ranks exit by themselves with the error.
  const launched = join(dir, 'launched.yaml')
  writeFileSync(
    launched,
    JSON.stringify({
      ...JSON.parse(readFileSync(join(dir, 'zero0.yaml'), 'utf8')),
      output_dir: join(dir, 'out-launched'),
    }),
  )
  const result = await new Promise<{ code: number | null; err: string }>((resolve) => {
    execFile(
      process.execPath,
      [CLI, 'train', launched, '--nproc-per-node', '2'],
      { timeout: 120_000 },
      (error, _out, err) => resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, err }),
    )
  })
  t.equal(result.code, 1, 'the launcher exits 1')
  const lines = result.err.split('\n').filter((l) => l.includes('is not finite'))
  t.equal(lines.length, 2, `each rank reports the error once:\n${result.err}`)
  t.ok(
    lines.every((l) =>
      l.includes(
        `the loss is not finite (NaN) at step ${badStep} (on rank ${badRank} of 2); training stopped on every rank`,
      ),
    ),
    'the same error',
  )
  t.notMatch(
    result.err,
    /was killed|timed out|LLAMAPRO_DISTRIBUTED|heartbeat/,
    'no rank was killed, none waited for the other',
  )
})

t.test(
  'fp16 loss scaling: a non-finite loss or gradient on one rank skips the update on every rank and lowers the scale',
  async (t) => {
    const { pro, poisoned } = await poisonedModel(t)
    const base: NativeTrainStepOptions = {
      lossMultiplier: 1,
      update: true,
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      maxGradNorm: 1,
      reportParamNorms: false,
    }
    const probe = await LlamaModel.load(pro)
    const vocab = probe.config.vocabSize
    probe.dispose()
    // Token ids 3.. that avoid the poisoned ones; `bad` puts one poisoned id in the middle of the batch.
    const clean = (seed: number) =>
      Int32Array.from({ length: 2 * 12 }, (_, i) => 3 + ((i * 7 + seed * 13) % (vocab - 3))).map((id) =>
        poisoned.includes(id) ? 3 : id,
      )
    const bad = (seed: number) => clean(seed).map((id, i) => (i === 7 ? poisoned[0]! : id))

    for (const zeroStage of [0, 1] as const) {
      const port = await freePort()
      const ranks = await Promise.all(
        [0, 1].map(async (rank) => {
          const model = await LlamaModel.load(pro)
          await model.setTrainable(
            model
              .parameters()
              .filter((p) => /^model\.layers\.(2|5)\./.test(p.name))
              .map((p) => p.name),
          )
          model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: true, lossScale: 1024 })
          const env = {
            rank,
            worldSize: 2,
            localRank: rank,
            localWorldSize: 2,
            masterAddr: '127.0.0.1',
            masterPort: port,
          }
          return { model, env }
        }),
      )
      const groups = await Promise.all(
        ranks.map((r) => ProcessGroup.connect(r.env, { timeoutSeconds: 30, device: 'cpu' })),
      )
      ranks.forEach((r, i) => r.model.native.attachProcessGroup(groups[i]!.handle, { zeroStage }))
      const weight = 'model.layers.2.mlp.down_proj.weight' // o_proj/down_proj of a new block get gradients first
      const weights = () =>
        Promise.all(ranks.map((r) => r.model.native.tensorBytes(weight, 'F32').then((b) => Buffer.from(b))))
      // One optimizer step on both ranks: each rank's micro-batches in turn, as the trainer runs them.
      const step = (micro: [Int32Array, Int32Array][], options: Partial<NativeTrainStepOptions>[] = [{}, {}]) =>
        Promise.all(
          ranks.map(async (r, rank) => {
            let result: NativeTrainStepResult | undefined
            for (let j = 0; j < micro.length; j++) {
              const last = j === micro.length - 1
              result = await r.model.native.trainStep(micro[j]![rank]!, micro[j]![rank]!, 2, 12, {
                ...base,
                ...options[rank],
                lossMultiplier: (options[rank]?.lossMultiplier ?? 1) / micro.length,
                update: last,
              })
            }
            return result!
          }),
        )
      try {
        const before = await weights()
        t.ok(before[0]!.equals(before[1]!), 'both ranks start from the same weights')

        // 1. Rank 1's loss is NaN in the first of two micro-batches; its second one and rank 0's are clean.
        const first = await step([
          [clean(1), bad(2)],
          [clean(3), clean(4)],
        ])
        for (const [rank, r] of first.entries()) {
          t.equal(r.skipped, 'nonfinite-loss', `zero_stage ${zeroStage}, rank ${rank}: step 1 skipped for the loss`)
          t.equal(r.updated, false)
          t.same(r.nonfiniteLossRanks, [1], `rank ${rank} knows rank 1's loss was not finite`)
          t.equal(r.lossScale, 512, `rank ${rank}: loss scale halved to 512`)
        }
        // What the trainer makes of it (its fp16 branch needs CUDA to run end to end): the same on both ranks.
        const fp16 = first.map((r) => resolveStepResult(r, { step: 1, fp16: true, worldSize: 2, windowMeanLoss: 4.5 }))
        t.same(fp16[0], fp16[1], 'fp16: both ranks log and warn alike')
        t.same(
          fp16[0],
          {
            loss: 4.5,
            warning:
              'step 1: the float16 loss is not finite on rank 1 of 2; update skipped on every rank, loss scale now 512',
          },
          'the window mean stands in for the NaN',
        )
        const fp32 = first.map((r) => resolveStepResult(r, { step: 1, fp16: false, worldSize: 2, windowMeanLoss: 4.5 }))
        t.same(fp32[0], fp32[1], 'bf16/fp32: both ranks stop alike')
        t.same(fp32[0]!.stop, { what: 'the loss', value: NaN, ranks: [1] })
        const afterSkip = await weights()
        t.ok(afterSkip[0]!.equals(before[0]!) && afterSkip[1]!.equals(before[1]!), 'no rank changed its weights')
        t.same(
          ranks.map((r) => r.model.native.optimizerState().step),
          [0, 0],
          'no AdamW step was counted',
        )

        // 2. Rank 1's gradients overflow (its loss is finite): the summed gradients are not finite on both ranks.
        const second = await step([[clean(5), clean(6)]], [{}, { lossMultiplier: 1e38 }])
        for (const [rank, r] of second.entries()) {
          t.equal(
            r.skipped,
            'nonfinite-grad',
            `zero_stage ${zeroStage}, rank ${rank}: step 2 skipped for the gradients`,
          )
          t.ok(Number.isFinite(r.loss), `rank ${rank}: its own loss is finite (${r.loss})`)
          t.same(r.nonfiniteLossRanks, [])
          t.equal(r.lossScale, 256, `rank ${rank}: loss scale halved again to 256`)
        }
        t.same(
          second.map((r) => resolveStepResult(r, { step: 2, fp16: true, worldSize: 2, windowMeanLoss: 4.5 }).warning),
          Array(2).fill('step 2: float16 gradients overflowed; update skipped, loss scale now 256'),
        )
        const stops = second.map(
          (r) => resolveStepResult(r, { step: 2, fp16: false, worldSize: 2, windowMeanLoss: 4.5 }).stop,
        )
        t.same(stops[0], stops[1], 'bf16/fp32: both ranks stop alike on the gradient norm')
        t.equal(stops[0]!.what, 'the gradient norm')
        const afterOverflow = await weights()
        t.ok(
          afterOverflow[0]!.equals(before[0]!) && afterOverflow[1]!.equals(before[1]!),
          'no rank changed its weights',
        )

        // 3. Clean: both ranks update, to the same weights, and the step loss is the sum over the ranks.
        const third = await step([[clean(7), clean(8)]])
        for (const [rank, r] of third.entries()) {
          t.equal(r.skipped, null, `zero_stage ${zeroStage}, rank ${rank}: step 3 not skipped`)
          t.equal(r.updated, true)
          t.equal(r.lossScale, 256, 'the scale grows only after growth_interval good steps')
        }
        t.equal(third[0]!.stepLoss, third[1]!.stepLoss, 'the same step loss on both ranks')
        t.ok(
          Math.abs(third[0]!.stepLoss! - (third[0]!.loss + third[1]!.loss)) <= 1e-12 * third[0]!.stepLoss!,
          "the step loss is the sum of the ranks' losses",
        )
        const updated = await weights()
        t.ok(updated[0]!.equals(updated[1]!), 'both ranks hold the same updated weights')
        t.notOk(updated[0]!.equals(before[0]!), 'and they changed')
        t.same(
          ranks.map((r) => r.model.native.optimizerState().step),
          [1, 1],
          'one AdamW step on each rank',
        )
      } finally {
        for (const r of ranks) r.model.dispose()
        for (const g of groups) g.destroy()
      }
    }
  },
)

t.test('one process: the step result names why a step was skipped', async (t) => {
  const { pro, poisoned } = await poisonedModel(t)
  const model = await LlamaModel.load(pro)
  t.teardown(() => model.dispose())
  await model.setTrainable(
    model
      .parameters()
      .filter((p) => /^model\.layers\.5\./.test(p.name))
      .map((p) => p.name),
  )
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  const ids = Int32Array.from({ length: 12 }, (_, i) => 3 + i)
  const options: NativeTrainStepOptions = {
    lossMultiplier: 0.5,
    update: false,
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    maxGradNorm: 1,
    reportParamNorms: false,
  }
  const micro = await model.native.trainStep(ids, ids, 1, 12, options)
  t.equal(micro.skipped, null, 'a micro-step that does not update decides nothing')
  t.equal(micro.stepLoss, undefined, 'and reports no step loss')
  const last = await model.native.trainStep(ids, ids, 1, 12, { ...options, update: true })
  t.equal(last.skipped, null)
  t.equal(
    last.stepLoss,
    micro.loss * 0.5 + last.loss * 0.5,
    'the step loss: Σ loss × lossMultiplier over the micro-batches',
  )
  t.same(last.nonfiniteLossRanks, [])
  t.equal(last.reducedBytes, undefined, 'no process group, nothing all-reduced')

  const poisonedIds = ids.map((id, i) => (i === 4 ? poisoned[0]! : id))
  const skipped = await model.native.trainStep(poisonedIds, poisonedIds, 1, 12, {
    ...options,
    lossMultiplier: 1,
    update: true,
  })
  t.equal(skipped.skipped, 'nonfinite-loss')
  t.ok(Number.isNaN(skipped.loss) && Number.isNaN(skipped.stepLoss!), 'the loss is NaN')
  t.same(skipped.nonfiniteLossRanks, [0])
  t.equal(skipped.updated, false)
  const next = await model.native.trainStep(ids, ids, 1, 12, { ...options, lossMultiplier: 1, update: true })
  t.equal(next.skipped, null, 'the next step starts clean')
  t.equal(next.stepLoss, next.loss)
})
