/**
 * The manual's links hold: every relative link of README.md and docs/ (markdown links and images, outside code)
 * names a file or folder that exists, a `#fragment` names a heading of the target page by GitHub's anchor rule, and
 * every page of docs/ can be reached by following links from README.md or docs/README.md.
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { REPO_ROOT } from './helpers/python.js'

/** GitHub's heading anchor: lowercase, punctuation dropped (but `-` and `_`), spaces to `-`; repeats get -1, -2. */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of withoutFences(markdown).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!heading) continue
    const text = heading[1]!.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '')
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/ /g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    anchors.add(count === 0 ? base : `${base}-${count}`)
  }
  return anchors
}

/** The text without fenced blocks, lines kept in place. */
function withoutFences(markdown: string): string {
  let fence = false
  return markdown
    .split('\n')
    .map((line) => {
      if (/^\s*```/.test(line)) {
        fence = !fence
        return ''
      }
      return fence ? '' : line
    })
    .join('\n')
}

/** The text without fenced blocks and inline code (links inside code are not links). */
function withoutCode(markdown: string): string {
  return withoutFences(markdown).replace(/(`+)[^`\n]*?\1/g, '')
}

export interface Link {
  line: number
  target: string
}

/** The relative links of a page (not http:, mailto: and the like). */
export function relativeLinks(markdown: string): Link[] {
  const links: Link[] = []
  withoutCode(markdown)
    .split('\n')
    .forEach((text, i) => {
      for (const match of text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const target = match[1]!
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue
        links.push({ line: i + 1, target })
      }
    })
  return links
}

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return markdownFiles(path)
    return entry.name.endsWith('.md') ? [path] : []
  })
}

/** Where a link leads: the file or folder, and the fragment. */
function resolveLink(from: string, target: string): { path: string; fragment: string | null } {
  const [pathPart, fragment] = target.split('#', 2) as [string, string | undefined]
  const path = pathPart === '' ? from : resolve(dirname(from), decodeURIComponent(pathPart))
  return { path, fragment: fragment ?? null }
}

t.test('the anchor rule', async (t) => {
  const md = [
    '# `llamapro train`',
    '## Data at scale: the token store',
    '## LoRA: `finetuning_type: lora`, with or without `use_llama_pro`',
    "## With pip's torch (CUDA)",
    '## Examples',
    '## Examples',
    '```',
    '# not a heading',
    '```',
  ].join('\n')
  t.same(
    [...headingAnchors(md)],
    [
      'llamapro-train',
      'data-at-scale-the-token-store',
      'lora-finetuning_type-lora-with-or-without-use_llama_pro',
      'with-pips-torch-cuda',
      'examples',
      'examples-1',
    ],
  )
  t.same(relativeLinks('[a](b.md#c) `[x](not.md)` ![img](i.png "t") [web](https://x.org)\n```\n[y](no.md)\n```'), [
    { line: 1, target: 'b.md#c' },
    { line: 1, target: 'i.png' },
  ])
})

const pages = [join(REPO_ROOT, 'README.md'), ...markdownFiles(join(REPO_ROOT, 'docs'))]

t.test('every relative link of README.md and docs/ resolves, fragments included', async (t) => {
  let checked = 0
  for (const page of pages) {
    const name = relative(REPO_ROOT, page)
    for (const { line, target } of relativeLinks(readFileSync(page, 'utf8'))) {
      const { path, fragment } = resolveLink(page, target)
      checked++
      if (!existsSync(path)) {
        t.fail(`${name}:${line}: ${target} does not exist (${relative(REPO_ROOT, path)})`)
        continue
      }
      if (fragment === null) continue
      if (!path.endsWith('.md') || statSync(path).isDirectory()) {
        t.fail(`${name}:${line}: ${target} has a #fragment but is not a markdown page`)
        continue
      }
      const anchors = headingAnchors(readFileSync(path, 'utf8'))
      t.ok(anchors.has(fragment), `${name}:${line}: ${target} names a heading`, { found: [...anchors] })
    }
  }
  t.ok(checked > 100, `${checked} links checked`)
})

t.test('every docs page is reachable from README.md or docs/README.md', async (t) => {
  const reached = new Set<string>()
  const queue = [join(REPO_ROOT, 'README.md'), join(REPO_ROOT, 'docs', 'README.md')]
  while (queue.length > 0) {
    const page = queue.pop()!
    if (reached.has(page) || !existsSync(page)) continue
    reached.add(page)
    for (const { target } of relativeLinks(readFileSync(page, 'utf8'))) {
      const { path } = resolveLink(page, target)
      if (path.endsWith('.md') && path.startsWith(join(REPO_ROOT, 'docs'))) queue.push(path)
    }
  }
  for (const page of markdownFiles(join(REPO_ROOT, 'docs')))
    t.ok(reached.has(page), `${relative(REPO_ROOT, page)} is linked`)
})
