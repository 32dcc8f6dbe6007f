import { bundle } from '../bundle/bundle.js'
import { formatBytes } from '../util/format.js'
import { parseArgs, positionals } from './args.js'

export const BUNDLE_HELP = `llamapro bundle <out_dir> [--addon FILE] [--force] [--json]

Writes a self-contained folder for shipping llamapro inside an application (Electron, an installer): the
compiled addon (llamapro.node) and every shared library it loads from its LibTorch, found by the dynamic loader
(ldd), each rewritten by patchelf to look for its dependencies beside itself (RUNPATH $ORIGIN). Left out, and
listed in manifest.json: glibc, libstdc++, libgcc_s and the GPU driver. manifest.json also records the LibTorch
version, CUDA or not, the C++ ABI, and each file's size and sha256. The folder is written under a temporary name
and renamed when complete; before that the addon is loaded from it in a fresh process.

Load it with LLAMAPRO_ADDON_DIR=<out_dir>, setAddonDir(<out_dir>) before the first use, or by putting it at
node_modules/llamapro/prebuilds/linux-x64/ of a package that has no build/ folder.

  --addon FILE   bundle this addon instead of the one llamapro loads now
  --force        replace a non-empty <out_dir>
  --json         print the manifest

Needs ldd, readelf and patchelf (Debian: apt-get install patchelf binutils). Linux only.`

export async function runBundle(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      addon: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  })
  const [out] = positionals(args, ['out_dir'])
  const result = await bundle(out!, {
    addon: values.addon,
    force: values.force,
    onProgress: values.json ? undefined : (message) => process.stderr.write(`llamapro bundle: ${message}\n`),
  })
  const { manifest } = result
  if (values.json) {
    console.log(JSON.stringify(manifest, null, 2))
    return 0
  }
  console.log(
    [
      `Wrote ${result.dir}: ${manifest.files.length} files, ${formatBytes(result.bytes)}`,
      `  LibTorch ${manifest.libtorch.version} (${manifest.libtorch.cuda ? 'CUDA' : 'CPU'}, ` +
        `${manifest.libtorch.cxx11Abi ? 'C++11 ABI' : 'pre-C++11 ABI'}), ${manifest.platform}-${manifest.arch}`,
      `  needs from the system: glibc >= ${manifest.requires.glibc ?? '?'}, libstdc++ GLIBCXX >= ` +
        `${manifest.requires.glibcxx ?? '?'}: ` +
        `${manifest.system.map((s) => (s.path === null ? `${s.name} (not on this machine: the GPU driver provides it)` : s.name)).join(', ')}`,
      `  load it with LLAMAPRO_ADDON_DIR=${result.dir} (or setAddonDir)`,
    ].join('\n'),
  )
  return 0
}
