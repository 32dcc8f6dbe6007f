// lib/ is layered (LAYERS below, lowest first): a module imports from its own layer and the ones below, never from
// a higher one. And no module imports a module that imports it back, directly or through others: at run time a
// cycle makes one of the two see the other half-initialised (an undefined class or constant at import time); a
// cycle of type-only imports (`import type`, or every name marked `type`) vanishes from the emitted JavaScript
// but still ties the two files together, so types both need go in a file of their own (generate/generate-types.ts,
// sweep/sweep-types.ts, model/native-backed.ts). Dynamic `import()` calls, which run after every module has
// loaded, are not counted.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import ts from 'typescript'
import { REPO_ROOT } from './helpers/python.js'

const LIB = join(REPO_ROOT, 'lib')

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

/** The lib/ files a module imports at run time (static import/export ... from, not type-only), or with types too. */
function runtimeImports(file: string, text = readFileSync(file, 'utf8'), options: { types?: boolean } = {}): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, false)
  const out: string[] = []
  for (const statement of source.statements) {
    let specifier: ts.Expression | undefined
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause
      const bindings = clause?.namedBindings
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (!clause.name &&
            bindings !== undefined &&
            ts.isNamedImports(bindings) &&
            bindings.elements.length > 0 &&
            bindings.elements.every((e) => e.isTypeOnly)))
      if (!typeOnly || options.types) specifier = statement.moduleSpecifier
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier) {
      if (statement.isTypeOnly && !options.types) continue
      const clause = statement.exportClause
      const typeOnly =
        clause !== undefined &&
        ts.isNamedExports(clause) &&
        clause.elements.length > 0 &&
        clause.elements.every((e) => e.isTypeOnly)
      if (!typeOnly || options.types) specifier = statement.moduleSpecifier
    }
    if (specifier && ts.isStringLiteral(specifier) && specifier.text.startsWith('.')) {
      out.push(resolve(dirname(file), specifier.text.replace(/\.js$/, '.ts')))
    }
  }
  return out
}

/**
 * lib/'s layers, lowest first; an entry is a folder of lib/ or a file at its top. Folders of one layer may import
 * each other (LlamaModel reaches into expand, generate, adapters and policy, which take a model in turn); the
 * cycle test keeps their modules apart.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['error-codes.ts', 'errors.ts', 'version.ts', 'util'],
  ['checkpoint', 'report'],
  ['native', 'bundle', 'data'],
  ['info.ts', 'gguf', 'distributed'],
  ['model', 'expand', 'generate', 'adapters', 'policy'],
  ['train', 'merge'],
  ['bench', 'sweep', 'demo', 'board'],
  ['cli', 'index.ts'],
]

/** The layer of a lib/ module: the index in LAYERS of its top-level folder or file, or -1 when it is in none. */
function layerOf(file: string): number {
  const top = relative(LIB, file).split(sep)[0]!
  return LAYERS.findIndex((layer) => layer.includes(top))
}

/** Imports that go up the layers, as "from -> to" (relative to lib/). */
function upwardImports(graph: Map<string, string[]>): string[] {
  const out: string[] = []
  for (const [file, imports] of graph) {
    for (const target of imports) {
      if (layerOf(target) > layerOf(file)) out.push(`${relative(LIB, file)} -> ${relative(LIB, target)}`)
    }
  }
  return out
}

function cycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const found: string[][] = []
  const visit = (node: string) => {
    state.set(node, 'open')
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next])
      else if (!state.has(next)) visit(next)
    }
    stack.pop()
    state.set(node, 'done')
  }
  for (const node of graph.keys()) if (!state.has(node)) visit(node)
  return found
}

t.test('the checker sees a cycle when there is one, and not through type-only imports', async (t) => {
  const a = join(LIB, 'a.ts')
  const b = join(LIB, 'b.ts')
  t.same(
    runtimeImports(
      a,
      "import { x } from './b.js'\nimport type { Y } from './c.js'\nimport { type Z } from './d.js'\nexport { w } " +
        "from './e.js'\nexport type { V } from './f.js'",
    ),
    [b, join(LIB, 'e.ts')],
  )
  const typeOnly = "import type { Y } from './c.js'\nimport { type Z } from './d.js'\nexport type { V } from './f.js'"
  t.same(
    runtimeImports(a, typeOnly, { types: true }),
    ['c.ts', 'd.ts', 'f.ts'].map((f) => join(LIB, f)),
  )
  t.same(runtimeImports(a, typeOnly), [])
  t.same(
    cycles(
      new Map([
        [a, [b]],
        [b, [a]],
      ]),
    ).length,
    1,
  )
  t.same(
    cycles(
      new Map([
        [a, [b]],
        [b, []],
      ]),
    ).length,
    0,
  )
})

t.test('the layer checker sees an upward import, and none within a layer or downward', async (t) => {
  const [util, model, expand, cli] = ['util/x.ts', 'model/x.ts', 'expand/x.ts', 'cli/x.ts'].map((f) => join(LIB, f))
  t.same(
    upwardImports(
      new Map([
        [model, [util, expand]],
        [expand, [model]],
        [cli, [model]],
      ]),
    ),
    [],
  )
  t.same(upwardImports(new Map([[util, [model]]])), ['util/x.ts -> model/x.ts'])
  t.equal(layerOf(join(LIB, 'nowhere', 'x.ts')), -1)
})

t.test('no run-time import cycle inside lib/', async (t) => {
  const files = sources(LIB)
  t.ok(files.length > 100, `${files.length} modules`)
  const graph = new Map(files.map((f) => [f, runtimeImports(f)]))
  for (const [file, imports] of graph) {
    for (const target of imports)
      t.ok(graph.has(target), `${relative(REPO_ROOT, file)} imports ${relative(REPO_ROOT, target)}, which exists`)
  }
  t.same(
    cycles(graph).map((c) => c.map((f) => relative(LIB, f)).join(' -> ')),
    [],
  )
})

t.test('no import cycle inside lib/, type-only imports included', async (t) => {
  const graph = new Map(sources(LIB).map((f) => [f, runtimeImports(f, undefined, { types: true })]))
  t.same(
    cycles(graph).map((c) => c.map((f) => relative(LIB, f)).join(' -> ')),
    [],
  )
})

t.test('every lib/ module is in a layer, and none imports from a higher one', async (t) => {
  const files = sources(LIB)
  const unplaced = files.filter((f) => layerOf(f) < 0).map((f) => relative(LIB, f))
  t.same(unplaced, [], 'each top-level folder or file is listed in LAYERS')
  const graph = new Map(files.map((f) => [f, runtimeImports(f, undefined, { types: true })]))
  t.same(upwardImports(graph), [])
})
