import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadAddon, type NativeLoadError } from '../lib/native/load.js'

// A package folder whose build/Release holds the given .node file.
function fakePackage(t: Test, make: (file: string, dir: string) => void): string {
  const root = t.testdir({ 'package.json': JSON.stringify({ name: 'fake' }) })
  const release = join(root, 'build', 'Release')
  mkdirSync(release, { recursive: true })
  make(join(release, 'llamapro.node'), release)
  writeFileSync(
    join(root, 'build', 'libtorch.json'),
    JSON.stringify({ source: 'LIBTORCH', cmakeDir: '/opt/libtorch/share/cmake/Torch' }),
  )
  return root
}

t.test('an addon that was never built says how to build it', async (t) => {
  const root = t.testdir({ 'package.json': '{}' })
  const error = t.throws(() => loadAddon(root)) as NativeLoadError
  t.equal(error.code, 'LLAMAPRO_NATIVE_LOAD')
  t.match(error.message, /not built/)
  t.match(error.message, /npm rebuild llamapro/)
})

t.test('a damaged addon file is diagnosed, not dumped', async (t) => {
  const root = fakePackage(t, (file) => writeFileSync(file, 'this is not an ELF file'))
  const error = t.throws(() => loadAddon(root)) as NativeLoadError
  t.match(error.message, /damaged or was built for another platform/)
})

t.test('a missing shared library is named, with the LibTorch the addon was built against', async (t) => {
  const root = fakePackage(t, (file, dir) => {
    writeFileSync(join(dir, 'dep.c'), 'int dep_value(void) { return 1; }\n')
    writeFileSync(join(dir, 'addon.c'), 'int dep_value(void);\nint use(void) { return dep_value(); }\n')
    execFileSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'libtorch_gone.so'), join(dir, 'dep.c')])
    execFileSync('cc', ['-shared', '-fPIC', '-o', file, join(dir, 'addon.c'), `-L${dir}`, '-ltorch_gone'])
    // the library the addon links against disappears (LibTorch moved or uninstalled)
    execFileSync('rm', [join(dir, 'libtorch_gone.so')])
  })
  const error = t.throws(() => loadAddon(root)) as NativeLoadError
  t.match(error.message, /libtorch_gone\.so/)
  t.match(error.message, /\/opt\/libtorch\/share\/cmake\/Torch/)
  t.match(error.message, /LIBTORCH/)
})

t.test('a symbol missing from the loaded LibTorch reads as a build/run mismatch', async (t) => {
  const root = fakePackage(t, (file, dir) => {
    writeFileSync(
      join(dir, 'addon.c'),
      'extern int missing_torch_symbol;\nint use(void) { return missing_torch_symbol; }\n',
    )
    execFileSync('cc', ['-shared', '-fPIC', '-o', file, join(dir, 'addon.c')])
  })
  const error = t.throws(() => loadAddon(root)) as NativeLoadError
  t.match(error.message, /do not match \(missing symbol missing_torch_symbol\)/)
  t.match(error.message, /rebuild/i)
})

t.test('the real addon loads', async (t) => {
  const addon = loadAddon()
  t.type(addon.runtimeInfo, 'function')
  t.type(addon.NativeModel, 'function')
})
