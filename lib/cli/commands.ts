/**
 * The subcommands: name and one-line summary here; help text and implementation load only when the command runs,
 * so `llamapro expand` does not pay for the tokenizer, YAML or chart libraries at start-up.
 */

export interface CommandModule {
  help: string
  run(argv: string[]): Promise<number>
}

export interface Command {
  name: string
  summary: string
  load(): Promise<CommandModule>
}

export const COMMANDS: Command[] = [
  {
    name: 'demo',
    summary: 'LLaMA-Pro end to end on a built-in tiny model, 3 seeds per arm (about 2 minutes on 2 idle CPU cores)',
    load: async () => import('./demo.js').then((m) => ({ help: m.DEMO_HELP, run: m.runDemoCommand })),
  },
  {
    name: 'train',
    summary: 'fine-tune with LLaMA-Factory YAML keys (freeze tuning, LLaMA-Pro)',
    load: async () => import('./train.js').then((m) => ({ help: m.TRAIN_HELP, run: m.runTrain })),
  },
  {
    name: 'expand',
    summary: 'grow a checkpoint by block expansion (LLaMA-Pro), streaming, no GPU needed',
    load: async () => import('./expand.js').then((m) => ({ help: m.EXPAND_HELP, run: m.runExpand })),
  },
  {
    name: 'verify',
    summary: 'prove an expanded checkpoint computes what its original did',
    load: async () => import('./verify.js').then((m) => ({ help: m.VERIFY_HELP, run: m.runVerify })),
  },
  {
    name: 'plan',
    summary: 'show which layers a freeze strategy trains and what it costs in memory',
    load: async () => import('./plan.js').then((m) => ({ help: m.PLAN_HELP, run: m.runPlan })),
  },
  {
    name: 'merge',
    summary: 'apply a delta (trained tensors only) or a LoRA adapter (--adapter) to its base model',
    load: async () => import('./merge.js').then((m) => ({ help: m.MERGE_HELP, run: m.runMerge })),
  },
  {
    name: 'import',
    summary: 'convert a GGUF model (llama.cpp, Ollama, LM Studio) into a Hugging Face folder',
    load: async () => import('./gguf.js').then((m) => ({ help: m.IMPORT_HELP, run: m.runImport })),
  },
  {
    name: 'export',
    summary: 'write a Hugging Face folder as a GGUF file for llama.cpp (f16, bf16, q8_0)',
    load: async () => import('./gguf.js').then((m) => ({ help: m.EXPORT_HELP, run: m.runExport })),
  },
  {
    name: 'chat',
    summary: 'chat with a model on the terminal, streaming (/reset, /exit)',
    load: async () => import('./chat.js').then((m) => ({ help: m.CHAT_HELP, run: m.runChat })),
  },
  {
    name: 'generate',
    summary: 'generate a continuation or reply for one prompt (--json for scripts)',
    load: async () => import('./generate.js').then((m) => ({ help: m.GENERATE_HELP, run: m.runGenerate })),
  },
  {
    name: 'eval',
    summary: 'held-out loss and perplexity of one or two models on a dataset; --predict writes answers',
    load: async () => import('./eval.js').then((m) => ({ help: m.EVAL_HELP, run: m.runEval })),
  },
  {
    name: 'bench',
    summary: 'time freeze strategies side by side, against PyTorch eager in the same run',
    load: async () => import('./bench.js').then((m) => ({ help: m.BENCH_HELP, run: m.runBenchCommand })),
  },
  {
    name: 'sweep',
    summary: 'train freeze strategies on your data: what each learns, forgets and costs (mean ± std over seeds)',
    load: async () => import('./sweep.js').then((m) => ({ help: m.SWEEP_HELP, run: m.runSweepCommand })),
  },
  {
    name: 'board',
    summary: 'a live web page over training runs: progress, loss, eval per dataset, layer gradients (read-only)',
    load: async () => import('./board.js').then((m) => ({ help: m.BOARD_HELP, run: m.runBoard })),
  },
  {
    name: 'bundle',
    summary: 'write the addon and its LibTorch into one relocatable folder, for shipping in an app',
    load: async () => import('./bundle.js').then((m) => ({ help: m.BUNDLE_HELP, run: m.runBundle })),
  },
  {
    name: 'info',
    summary: 'show the LibTorch, CUDA devices, threads and BLAS llamapro runs on',
    load: async () => import('./info.js').then((m) => ({ help: m.INFO_HELP, run: m.runInfo })),
  },
]
