/**
 * LLaMA-Factory 0.9.5's named chat templates (llamafactory/data/template.py), as data: one entry per name, slot
 * for slot. A slot is a list of elements: strings (where `{{content}}` is replaced by the message, once) and the
 * EOS / BOS markers. What is left out of an entry takes LLaMA-Factory's default:
 * - user: `{{content}}`; system: `{{content}}` (not the user slot); prefix: nothing;
 * - assistant: `{{content}}` then EOS, or `{{content}}` alone when efficientEos (EOS is then added once, at the
 *   end of the sequence, and learned at the start of each later prompt; see preprocess.ts);
 * - systemInUser (LLaMA-Factory's Llama2Template): the first element of the system slot is put in front of the
 *   first user message's content instead of before the user slot;
 * - reasoning (ReasoningTemplate): a response without thought words gets an empty thought, learned when
 *   enable_thinking (the default), else put at the end of the prompt;
 * - replaceEos: the first stop word becomes the tokenizer's EOS (so EOS slots, the pt end-of-text and
 *   generation's stop token are that token); the other stop words are special tokens.
 * Tools, observations and multimodal plugins are not part of llamapro's data, so their slots are not kept.
 */
import { BOS, EOS, type SegmentPart } from './parts.js'

export type Slot = readonly SegmentPart[]

export interface TemplateSpec {
  user?: Slot
  assistant?: Slot
  system?: Slot
  prefix?: Slot
  defaultSystem?: string
  stopWords?: readonly string[]
  efficientEos?: boolean
  replaceEos?: boolean
  systemInUser?: boolean
  reasoning?: boolean
  /** ReasoningTemplate's thought_words; LLaMA-Factory's default is ["<think>\n", "\n</think>\n\n"]. */
  thoughtWords?: readonly [string, string]
}

const CHATML_USER = ['<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n']
const CHATML_ASSISTANT = ['{{content}}<|im_end|>\n']
const CHATML_SYSTEM = ['<|im_start|>system\n{{content}}<|im_end|>\n']
const CHATML = { user: CHATML_USER, assistant: CHATML_ASSISTANT, system: CHATML_SYSTEM }

const LLAMA3 = {
  user: [
    '<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  ],
  assistant: ['{{content}}<|eot_id|>'],
  system: ['<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>'],
  prefix: [BOS],
  stopWords: ['<|eot_id|>', '<|eom_id|>'],
  replaceEos: true,
}

const GEMMA = {
  user: ['<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  assistant: ['{{content}}<end_of_turn>\n'],
  system: ['{{content}}\n\n'],
  prefix: [BOS],
  systemInUser: true,
}

const VICUNA_SYSTEM =
  'A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, ' +
  "and polite answers to the user's questions."

export const TEMPLATES: Readonly<Record<string, TemplateSpec>> = {
  default: {
    user: ['Human: {{content}}', EOS, '\nAssistant:'],
    assistant: ['{{content}}', EOS, '\n'],
    system: ['System: {{content}}', EOS, '\n'],
  },
  empty: { assistant: ['{{content}}'] },
  alpaca: {
    user: ['### Instruction:\n{{content}}\n\n### Response:\n'],
    assistant: ['{{content}}', EOS, '\n\n'],
    defaultSystem:
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n',
  },
  chatml: { ...CHATML, stopWords: ['<|im_end|>', '<|im_start|>'], replaceEos: true },
  chatml_de: {
    ...CHATML,
    defaultSystem: 'Du bist ein freundlicher und hilfsbereiter KI-Assistent.',
    stopWords: ['<|im_end|>', '<|im_start|>'],
    replaceEos: true,
  },
  cpm4: { ...CHATML, prefix: [BOS], stopWords: ['<|im_end|>'] },
  deepseek: { user: ['User: {{content}}\n\nAssistant:'], system: ['{{content}}\n\n'], prefix: [BOS] },
  deepseek3: { user: ['<｜User｜>{{content}}<｜Assistant｜>'], prefix: [BOS] },
  deepseekcoder: {
    user: ['### Instruction:\n{{content}}\n### Response:'],
    assistant: ['\n{{content}}\n<|EOT|>\n'],
    prefix: [BOS],
    defaultSystem:
      'You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, and you ' +
      'only answer questions related to computer science. For politically sensitive questions, security and privacy ' +
      'issues, and other non-computer science questions, you will refuse to answer.\n',
  },
  falcon: { user: ['User: {{content}}\nFalcon:'], assistant: ['{{content}}\n'], efficientEos: true },
  gemma: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  gemma2: { ...GEMMA, stopWords: ['<eos>', '<end_of_turn>'], efficientEos: true },
  gemma3: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  llama2: {
    user: [BOS, '[INST] {{content}} [/INST]'],
    system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
    systemInUser: true,
  },
  llama2_zh: {
    user: [BOS, '[INST] {{content}} [/INST]'],
    system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
    defaultSystem: 'You are a helpful assistant. 你是一个乐于助人的助手。',
    systemInUser: true,
  },
  llama3: LLAMA3,
  llama4: {
    user: ['<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n'],
    assistant: ['{{content}}<|eot|>'],
    system: ['<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>'],
    prefix: [BOS],
    stopWords: ['<|eot|>', '<|eom|>'],
    replaceEos: true,
  },
  mistral: {
    user: ['[INST] {{content}}[/INST]'],
    assistant: [' {{content}}', EOS],
    system: ['{{content}}\n\n'],
    prefix: [BOS],
    systemInUser: true,
  },
  ministral: { user: ['[INST]{{content}}[/INST]'], system: ['{{content}}\n\n'], prefix: [BOS], systemInUser: true },
  olmo: { user: ['<|user|>\n{{content}}<|assistant|>\n'], prefix: [EOS] },
  openchat: { user: ['GPT4 Correct User: {{content}}', EOS, 'GPT4 Correct Assistant:'], prefix: [BOS] },
  phi: {
    user: ['<|user|>\n{{content}}<|end|>\n<|assistant|>\n'],
    assistant: ['{{content}}<|end|>\n'],
    system: ['<|system|>\n{{content}}<|end|>\n'],
    stopWords: ['<|end|>'],
    replaceEos: true,
  },
  phi4: {
    user: ['<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>'],
    assistant: ['{{content}}<|im_end|>'],
    system: ['<|im_start|>system<|im_sep|>{{content}}<|im_end|>'],
    stopWords: ['<|im_end|>'],
    replaceEos: true,
  },
  qwen: {
    ...CHATML,
    defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.',
    stopWords: ['<|im_end|>'],
    replaceEos: true,
  },
  qwen3: { ...CHATML, stopWords: ['<|im_end|>'], replaceEos: true, reasoning: true },
  qwen3_nothink: { ...CHATML, stopWords: ['<|im_end|>'], replaceEos: true },
  smollm: { ...CHATML, stopWords: ['<|im_end|>'] },
  smollm2: {
    ...CHATML,
    stopWords: ['<|im_end|>'],
    defaultSystem: 'You are a helpful AI assistant named SmolLM, trained by Hugging Face.',
  },
  solar: {
    user: ['### User:\n{{content}}\n\n### Assistant:\n'],
    system: ['### System:\n{{content}}\n\n'],
    efficientEos: true,
  },
  starchat: {
    user: ['<|user|>\n{{content}}<|end|>\n<|assistant|>'],
    assistant: ['{{content}}<|end|>\n'],
    system: ['<|system|>\n{{content}}<|end|>\n'],
    stopWords: ['<|end|>'],
  },
  vicuna: { user: ['USER: {{content}} ASSISTANT:'], defaultSystem: VICUNA_SYSTEM },
  yi: { ...CHATML, stopWords: ['<|im_end|>'] },
  zephyr: {
    user: ['<|user|>\n{{content}}', EOS, '<|assistant|>\n'],
    system: ['<|system|>\n{{content}}', EOS],
    defaultSystem: 'You are Zephyr, a helpful assistant.',
  },
}
