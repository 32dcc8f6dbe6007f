/**
 * ggml tensor types (ggml.h): id, block size in values, bytes per block. Only the ones llamapro converts are listed.
 */

export interface GgmlType {
  id: number
  name: string
  blockSize: number
  blockBytes: number
}

const TYPES: GgmlType[] = [
  { id: 0, name: 'F32', blockSize: 1, blockBytes: 4 },
  { id: 1, name: 'F16', blockSize: 1, blockBytes: 2 },
  { id: 2, name: 'Q4_0', blockSize: 32, blockBytes: 18 },
  { id: 3, name: 'Q4_1', blockSize: 32, blockBytes: 20 },
  { id: 6, name: 'Q5_0', blockSize: 32, blockBytes: 22 },
  { id: 7, name: 'Q5_1', blockSize: 32, blockBytes: 24 },
  { id: 8, name: 'Q8_0', blockSize: 32, blockBytes: 34 },
  { id: 12, name: 'Q4_K', blockSize: 256, blockBytes: 144 },
  { id: 13, name: 'Q5_K', blockSize: 256, blockBytes: 176 },
  { id: 14, name: 'Q6_K', blockSize: 256, blockBytes: 210 },
  { id: 30, name: 'BF16', blockSize: 1, blockBytes: 2 },
]

/** Names of ggml types llamapro does not convert, so an error can say what the file holds. */
const OTHER_NAMES: Record<number, string> = {
  4: 'Q4_2 (removed from ggml)',
  5: 'Q4_3 (removed from ggml)',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  34: 'TQ1_0',
  35: 'TQ2_0',
  39: 'MXFP4',
}

export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(TYPES.map((t) => [t.id, t]))
export const GGML_TYPE_BY_NAME: ReadonlyMap<string, GgmlType> = new Map(TYPES.map((t) => [t.name, t]))
export const SUPPORTED_GGML_TYPE_NAMES = TYPES.map((t) => t.name)

export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? OTHER_NAMES[id] ?? `unknown type ${id}`
}

/** safetensors dtype <-> the ggml type with the same bytes. */
export const GGML_FROM_SAFETENSORS: Readonly<Record<string, number>> = { F32: 0, F16: 1, BF16: 30 }
