/** safetensors dtypes and their byte sizes; the float ones llamapro computes with. */

export const SAFETENSORS_DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_SIZES

/** The floating-point dtypes a model can be loaded in and saved as. */
export type ModelDtype = 'float32' | 'bfloat16' | 'float16'

export const MODEL_DTYPES: readonly ModelDtype[] = ['float32', 'bfloat16', 'float16']

const TO_SAFETENSORS: Record<ModelDtype, SafetensorsDtype> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }
const FROM_SAFETENSORS: Partial<Record<SafetensorsDtype, ModelDtype>> = {
  F32: 'float32',
  BF16: 'bfloat16',
  F16: 'float16',
}

export const isSafetensorsDtype = (value: string): value is SafetensorsDtype =>
  Object.hasOwn(SAFETENSORS_DTYPE_SIZES, value)

export const toSafetensorsDtype = (dtype: ModelDtype): SafetensorsDtype => TO_SAFETENSORS[dtype]
export const fromSafetensorsDtype = (dtype: SafetensorsDtype): ModelDtype | undefined => FROM_SAFETENSORS[dtype]
export const modelDtypeSize = (dtype: ModelDtype): number => SAFETENSORS_DTYPE_SIZES[TO_SAFETENSORS[dtype]]

/** Accepts torch-style names too ('bf16', 'fp16', 'torch.bfloat16', 'half'). */
export function parseModelDtype(value: string): ModelDtype | undefined {
  const name = value
    .trim()
    .toLowerCase()
    .replace(/^torch\./, '')
  const aliases: Record<string, ModelDtype> = {
    float32: 'float32',
    fp32: 'float32',
    f32: 'float32',
    float: 'float32',
    bfloat16: 'bfloat16',
    bf16: 'bfloat16',
    float16: 'float16',
    fp16: 'float16',
    f16: 'float16',
    half: 'float16',
  }
  return aliases[name]
}
