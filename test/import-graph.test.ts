// lib/ is layered (checkpoint → data/expand/native → model/policy → train/bench → cli): no module may import, at
// run time, a module that imports it back, directly or through others. A cycle makes one of the two see the other
// half-initialised (an undefined class or constant at import time) and hides which layer owns what. Type-only
// imports (`import type`, or every name marked `type`) vanish from the emitted JavaScript and are not counted; nor
// are dynamic `import()` calls, which run after every module has loaded.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { REPO_ROOT } from './helpers/python.js'

const LIB = join(REPO_ROOT, 'lib')

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []))
}

/** The lib/ files a module imports at run time (static import/export ... from, not type-only). */
function runtimeImports(file: string, text = readFileSync(file, 'utf8')): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, false)
  const out: string[] = []
  for (const statement of source.statements) {
    let specifier: ts.Expression | undefined
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause
      const bindings = clause?.namedBindings
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly || (!clause.name && bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly)))
      if (!typeOnly) specifier = statement.moduleSpecifier
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier && !statement.isTypeOnly) {
      const clause = statement.exportClause
      const typeOnly = clause !== undefined && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly)
      if (!typeOnly) specifier = statement.moduleSpecifier
    }
    if (specifier && ts.isStringLiteral(specifier) && specifier.text.startsWith('.')) {
      out.push(resolve(dirname(file), specifier.text.replace(/\.js$/, '.ts')))
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
  t.same(runtimeImports(a, "import { x } from './b.js'\nimport type { Y } from './c.js'\nimport { type Z } from './d.js'\nexport { w } from './e.js'\nexport type { V } from './f.js'"), [b, join(LIB, 'e.ts')])
  t.same(cycles(new Map([[a, [b]], [b, [a]]])).length, 1)
  t.same(cycles(new Map([[a, [b]], [b, []]])).length, 0)
})

t.test('no run-time import cycle inside lib/', async (t) => {
  const files = sources(LIB)
  t.ok(files.length > 100, `${files.length} modules`)
  const graph = new Map(files.map((f) => [f, runtimeImports(f)]))
  for (const [file, imports] of graph) {
    for (const target of imports) t.ok(graph.has(target), `${relative(REPO_ROOT, file)} imports ${relative(REPO_ROOT, target)}, which exists`)
  }
  t.same(cycles(graph).map((c) => c.map((f) => relative(LIB, f)).join(' -> ')), [])
})
