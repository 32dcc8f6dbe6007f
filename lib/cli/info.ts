import { info } from '../info.js'
import { describeKernelOptions } from '../native/kernel-options.js'
import { formatBytes } from '../util/format.js'
import { parseArgs } from './args.js'

export const INFO_HELP = `llamapro info [--json]

Prints llamapro's version, the LibTorch it runs on (version, library, how it was found), CUDA devices,
thread settings and the BLAS in use.`

export async function runInfo(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true })
  const data = info()
  if (values.json) {
    console.log(JSON.stringify(data, null, 2))
    return 0
  }
  const lines = [
    `llamapro   ${data.llamapro.version} (node ${data.node.version}, Node-API ${data.node.napi})`,
    `libtorch   ${data.libtorch.version}  ${data.libtorch.library}`,
    `           cmake: ${data.libtorch.cmakeDir}${data.libtorch.foundBy ? `  (found by ${data.libtorch.foundBy})` : ''}`,
    `cuda       ${data.cuda.available ? 'available' : data.cuda.compiled ? 'built in, no device' : 'not built in'}`,
    ...data.cuda.devices.map(
      (d) => `           cuda:${d.index} ${d.name} (${formatBytes(d.totalMemory)}, sm ${d.computeCapability})`,
    ),
    `threads    intra-op ${data.threads.intraOp}, inter-op ${data.threads.interOp}` +
      (data.threads.blas !== null ? `, BLAS ${data.threads.blas}` : ''),
    `blas       ${data.blas.name}${data.blas.library ? `  ${data.blas.library}` : ''}`,
    ...(data.blas.config ? [`           ${data.blas.config}`] : []),
    `gemm       ${data.cpuGemm.library === 'onednn' ? `oneDNN sgemm (${data.cpuGemm.threads} threads; LLAMAPRO_GEMM=blas for the BLAS)` : 'the BLAS, through LibTorch'}`,
    `kernels    ${describeKernelOptions(data.kernels)}`,
    ...data.warnings.map((w) => `warning    ${w}`),
  ]
  console.log(lines.join('\n'))
  return 0
}
