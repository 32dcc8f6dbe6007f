// One rank of a 2-rank Gloo group that joins (from torchrun's environment variables), says so on stdout, and then
// idles until it is killed: the peer test/distributed.test.ts kills or stops to tear a group down with a dead peer.
import { distributedFromEnv } from '../../lib/distributed/environment.js'
import { ProcessGroup } from '../../lib/distributed/process-group.js'

const env = distributedFromEnv()
if (!env) throw new Error('idle-rank: run with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set')
const group = await ProcessGroup.connect(env, { timeoutSeconds: 120, device: 'cpu' })
await group.barrier('both ranks joined')
process.stdout.write('joined\n')
setInterval(() => {}, 1000)
