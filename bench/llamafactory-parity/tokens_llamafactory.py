"""Dumps the token ids and labels LLaMA-Factory makes from a YAML's data (its own get_dataset), as JSON.

usage (from the working folder): python tokens_llamafactory.py <case.yaml> <out.json>
"""
import json
import sys
import tempfile

import yaml
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

config = yaml.safe_load(open(sys.argv[1]))
config["output_dir"] = tempfile.mkdtemp(prefix="llamapro-lf-tokens-")
model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
tokenizer_module = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
dataset = get_dataset(template, model_args, data_args, training_args, stage=config["stage"], **tokenizer_module)
# pt rows have no labels: its collator (DataCollatorForLanguageModeling) copies input_ids.
rows = [{"ids": list(r["input_ids"]), "labels": list(r.get("labels", r["input_ids"]))} for r in dataset["train_dataset"]]
with open(sys.argv[2], "w") as f:
    json.dump(rows, f)
