"""LLaMA-Factory 0.9.5's pre-training data path, for bench/data-prep.ts: HF datasets' json loader, then map with
num_proc = preprocessing_num_workers running LLaMA-Factory's own preprocess_pretrain_dataset logic (text + EOS,
tokenized by transformers' fast tokenizer = Rust tokenizers, concatenated and cut into cutoff_len blocks).
Prints one JSON line: seconds, tokens, peak RSS of this process and its workers."""
import json, resource, sys, time
from itertools import chain

corpus, model, workers, cutoff, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from datasets import load_dataset
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(model)
start = time.time()
ds = load_dataset("json", data_files=corpus, split="train", cache_dir=cache)

def preprocess(examples):
    # llamafactory/data/processor/pretrain.py, packing branch
    texts = [t + tok.eos_token for t in examples["text"]]
    tokenized = tok(texts, add_special_tokens=False)
    concatenated = {k: list(chain(*tokenized[k])) for k in tokenized.keys()}
    total = (len(concatenated["input_ids"]) // cutoff) * cutoff
    return {k: [t[i : i + cutoff] for i in range(0, total, cutoff)] for k, t in concatenated.items()}

out = ds.map(preprocess, batched=True, batch_size=1000, num_proc=workers if workers > 1 else None, remove_columns=["text"], load_from_cache_file=False)
seconds = time.time() - start
tokens = len(out) * cutoff
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
print(json.dumps({"seconds": seconds, "tokens": tokens, "sequences": len(out), "peakRssBytes": rss}))
