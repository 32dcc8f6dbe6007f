/**
 * Closing a process group never holds the JS thread, and never waits for ddp_timeout, even when the peer is gone:
 * killed (its sockets close) or stopped (SIGSTOP: its sockets stay open and unanswered, so this rank's heartbeat
 * sits in a store call until ddp_timeout). The peer is rank 0, which hosts the store, in a child process
 * (test/helpers/idle-rank.ts); this process is rank 1. Gloo over 127.0.0.1 on a free port.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { rankEnvironment } from '../lib/distributed/environment.js'
import { freePort } from '../lib/distributed/launcher.js'
import { ProcessGroup } from '../lib/distributed/process-group.js'
import { LlamaModel } from '../lib/model/llama-model.js'
import { REPO_ROOT } from './helpers/python.js'
import { tinyRawConfig } from './helpers/tiny-model.js'

/** A 2-rank group (ddp_timeout 120 s) whose rank 0 is a child process this test can kill or stop. */
async function joinWithPeer(t: Test) {
  const port = await freePort()
  const rank0 = { rank: 0, worldSize: 2, localRank: 0, localWorldSize: 2, masterAddr: '127.0.0.1', masterPort: port }
  const peer = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'helpers', 'idle-rank.ts')], {
    env: { ...process.env, ...rankEnvironment(rank0) },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const exited = new Promise<void>((resolve) => peer.on('exit', () => resolve()))
  t.teardown(async () => {
    peer.kill('SIGKILL')
    await exited
  })
  const group = await ProcessGroup.connect({ ...rank0, rank: 1, localRank: 1 }, { timeoutSeconds: 120, device: 'cpu' })
  await group.barrier('both ranks joined')
  return { peer, group }
}

for (const how of ['killed', 'stopped'] as const) {
  t.test(
    `the event loop keeps running while a process group is torn down with a ${how} peer, and destroy() ends well ` +
      `before ddp_timeout`,
    async (t) => {
      const { peer, group } = await joinWithPeer(t)
      // SIGKILL closes the peer's sockets; SIGSTOP leaves them open and unanswered, so the next heartbeat waits
      // inside a store call for ddp_timeout (120 s), which destroy() must not wait for.
      peer.kill(how === 'killed' ? 'SIGKILL' : 'SIGSTOP')
      await new Promise((resolve) => setTimeout(resolve, 1500))
      let ticks = 0
      const timer = setInterval(() => ticks++, 1)
      const started = performance.now()
      await group.destroy()
      const elapsed = performance.now() - started
      clearInterval(timer)
      t.ok(elapsed < 60_000, `destroy() resolved after ${elapsed.toFixed(0)} ms, not after ddp_timeout (120 s)`)
      if (how === 'stopped') {
        // Closed on the JS thread, the 250 ms wait for the heartbeat would let no timer run before destroy() settled.
        t.ok(ticks >= Math.min(5, elapsed / 10), `${ticks} timer ticks during ${elapsed.toFixed(0)} ms of teardown`)
      } else {
        // A killed peer's sockets are closed: teardown takes milliseconds either way, too short for a timer count
        // to say anything on a loaded machine; here it is the prompt end and the closed group that are checked.
        t.comment(`${ticks} timer ticks during ${elapsed.toFixed(0)} ms of teardown`)
      }
      await t.rejects(group.barrier('after destroy'), { message: /not connected/ }, 'the group is closed')
    },
  )
}

t.test(
  'a model that holds the last reference to a group with a stopped peer is disposed without waiting for ddp_timeout',
  async (t) => {
    const { peer, group } = await joinWithPeer(t)
    const model = await LlamaModel.random(tinyRawConfig(), { seed: 1 })
    model.gradientSync.attach(group, { zeroStage: 0 })
    await group.destroy() // the model still holds the c10d objects
    peer.kill('SIGSTOP')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    // dispose() is synchronous and drops the last reference here, on the JS thread: the heartbeat, stuck in a store
    // call to the stopped peer, is waited for 250 ms and then left to finish on its own.
    const started = performance.now()
    model.dispose()
    const elapsed = performance.now() - started
    t.ok(elapsed < 10_000, `dispose() returned after ${elapsed.toFixed(0)} ms, not after ddp_timeout (120 s)`)
  },
)
