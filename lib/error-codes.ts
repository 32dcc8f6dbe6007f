/**
 * Every `code` a llamapro error can carry, in lib/ and in the native addon (native/ sets the same strings on its JS
 * errors; test/error-codes.test.ts checks that each one there is listed here). Code that reacts to a failure
 * compares these codes, never the text of a message.
 */
export const ERROR_CODES = {
  LLAMAPRO_USAGE: 'wrong command-line usage (the CLI exits with status 2)',
  LLAMAPRO_INTERRUPTED: 'stopped by Ctrl-C, SIGTERM or an AbortSignal; nothing was left half-written',
  LLAMAPRO_ARG: 'an argument of a library call has the wrong type or value',
  LLAMAPRO_NATIVE: 'LibTorch or the addon failed in a way no other code describes',
  LLAMAPRO_NATIVE_LOAD: 'the native addon could not be found or loaded',
  LLAMAPRO_ADDON_LOADED: 'the addon folder was chosen after the addon had already been loaded',
  LLAMAPRO_OUT_OF_MEMORY: 'an allocation failed (host or GPU memory)',
  LLAMAPRO_NO_CUDA: 'a CUDA device was asked for and cannot be used',
  LLAMAPRO_DISTRIBUTED: 'the process group (rendezvous, a collective, a rank) failed',
  LLAMAPRO_DISPOSED: 'a model or cache was used after dispose()',
  LLAMAPRO_BUSY: 'a model or cache was used while an earlier call on it was still running',
  LLAMAPRO_CONFIG: "a model's config.json or generation_config.json is unreadable or invalid",
  LLAMAPRO_CHECKPOINT: 'a checkpoint folder is incomplete or inconsistent',
  LLAMAPRO_SAFETENSORS: 'a .safetensors file is malformed',
  LLAMAPRO_TOKENIZER: 'a tokenizer could not be read or used',
  LLAMAPRO_TEMPLATE: 'a chat template is unknown, does not parse or does not fit the messages',
  LLAMAPRO_PROMPT_TOO_LONG: "a prompt does not fit the model's context",
  LLAMAPRO_DATASET: 'a dataset, its dataset_info.json entry or one of its records is invalid',
  LLAMAPRO_EXPAND: 'a block expansion plan is invalid',
  LLAMAPRO_VERIFY: 'an expanded model does not reproduce its base',
  LLAMAPRO_POLICY: 'a freeze policy (trainable layers or modules) is invalid',
  LLAMAPRO_TRAIN_CONFIG: 'a training configuration key is unknown, mistyped or out of range',
  LLAMAPRO_RESUME: 'a checkpoint cannot be resumed from',
  LLAMAPRO_NONFINITE: 'the loss or the gradients became NaN or infinite',
  LLAMAPRO_ADAPTER: 'a LoRA adapter is malformed or belongs to another model',
  LLAMAPRO_MERGE: 'a merge of a delta or an adapter cannot be done',
  LLAMAPRO_GGUF: 'a GGUF file is malformed or cannot be converted',
  LLAMAPRO_OUTPUT_EXISTS: 'an output path exists and --force was not given',
  LLAMAPRO_SWEEP: 'a sweep is missing what it needs',
  LLAMAPRO_BENCH: 'a benchmark could not run',
  LLAMAPRO_PYTHON: 'no Python interpreter that can import torch was found (bench --baseline python)',
  LLAMAPRO_BUNDLE: 'an addon bundle could not be made or checked',
  LLAMAPRO_TOOL_MISSING: 'a system tool (patchelf, ldd, ...) is not installed',
  LLAMAPRO_KERNEL_OPTION:
    'a kernel switch (LLAMAPRO_GEMM, LLAMAPRO_ROW_PLAN, ... or setKernelOptions) has an invalid value',
  LLAMAPRO_BOARD_FOLDER: 'a folder given to llamapro board is missing or holds no training run',
  LLAMAPRO_BOARD_PORT: "the board's port is in use or not a valid port",
  LLAMAPRO_BOARD_HOST: "the board's host address cannot be bound",
} as const

/** One of the codes above. */
export type ErrorCode = keyof typeof ERROR_CODES

export const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === 'string' && Object.hasOwn(ERROR_CODES, value)
