/**
 * Two small synthetic corpora with different vocabularies and structure, generated from a seed (nothing is
 * downloaded): A is plain English-like prose about animals and places, B is short Python-like code with
 * arithmetic. The demo learns B while trying to keep A, which is the situation LLaMA-Pro was made for:
 * teaching a model a new domain (code, maths) without forgetting the old one.
 */

import { mulberry32 } from '../util/random.js'

const pick = <T>(next: () => number, items: readonly T[]): T => items[Math.floor(next() * items.length)]!

const ANIMALS = [
  'fox',
  'owl',
  'deer',
  'otter',
  'badger',
  'heron',
  'rabbit',
  'wolf',
  'sparrow',
  'beaver',
  'lynx',
  'crow',
]
const ADJECTIVES = ['quiet', 'small', 'grey', 'young', 'old', 'quick', 'patient', 'curious', 'hungry', 'sleepy']
const VERBS = ['watches', 'follows', 'finds', 'hides near', 'waits by', 'runs past', 'rests under', 'looks at']
const PLACES = [
  'the river',
  'the old oak',
  'the hill',
  'the meadow',
  'the pond',
  'the stone wall',
  'the forest edge',
  'the field',
]
const TIMES = ['in the morning', 'at dusk', 'after the rain', 'in winter', 'at night', 'before noon']

export function corpusA(count: number, seed = 1): string[] {
  const next = mulberry32(seed)
  return Array.from({ length: count }, () => {
    const a = pick(next, ANIMALS)
    const b = pick(next, ANIMALS)
    return (
      `The ${pick(next, ADJECTIVES)} ${a} ${pick(next, VERBS)} ${pick(next, PLACES)} ${pick(next, TIMES)}. ` +
      `Later the ${a} ${pick(next, VERBS)} a ${pick(next, ADJECTIVES)} ${b}.`
    )
  })
}

const NAMES = ['total', 'count', 'width', 'size', 'score', 'index', 'value', 'limit']

export function corpusB(count: number, seed = 2): string[] {
  const next = mulberry32(seed)
  return Array.from({ length: count }, () => {
    const x = pick(next, NAMES)
    const y = pick(
      next,
      NAMES.filter((n) => n !== x),
    )
    const a = Math.floor(next() * 50)
    const b = Math.floor(next() * 50)
    const op = pick(next, ['+', '-', '*'] as const)
    const result = op === '+' ? a + b : op === '-' ? a - b : a * b
    return `def f(${x}, ${y}):\n    return ${x} ${op} ${y}\nassert f(${a}, ${b}) == ${result}`
  })
}
