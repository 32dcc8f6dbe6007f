"""LLaMA-Factory 0.9.5's own template and supervised-data code, run on a tokenizer.json: the reference for
test/templates.test.ts.

It imports llamafactory/data/template.py, formatter.py, tool_utils.py, data_utils.py and
processor/{processor_utils,supervised,pretrain}.py from the real package (installed with `pip install --no-deps
llamafactory==0.9.5`, or the folder named by LLAMAFACTORY_SRC), without torch or transformers: the package
__init__ files are skipped, and the few modules that only log, name constants or handle images are stubbed.
The Hugging Face tokenizer is a small shim over the PyPI `tokenizers` package with the methods those files call
(encode without special tokens, convert_tokens_to_ids, add_special_tokens, bos/eos/pad).

stdin: {"tokenizer_dir": str, "cases": [{"template", "messages", "cutoff_len", "default_system"?,
"enable_thinking"?, "pt_texts"?}]}; stdout: one result per case (input_ids, labels, prompt_ids, eos_id,
stop_ids, pt_ids) or {"error": str}.
"""
import copy
import importlib.util
import json
import os
import sys
import types

from tokenizers import AddedToken, Tokenizer


def find_llamafactory() -> str:
    src = os.environ.get("LLAMAFACTORY_SRC")
    if src:
        path = os.path.join(src, "llamafactory")
        if not os.path.isdir(path):
            sys.exit(f"LLAMAFACTORY_SRC={src} has no llamafactory/ folder")
        return path
    spec = importlib.util.find_spec("llamafactory")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "llamafactory is not installed in this Python: run `npm run setup`, or "
            "`.venv/bin/pip install --no-deps llamafactory==0.9.5`, or set LLAMAFACTORY_SRC to an unpacked wheel"
        )
    return list(spec.submodule_search_locations)[0]


def package(name: str, path: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stub(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


class _Logger:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


class _Plugin:
    def process_messages(self, messages, images, videos, audios, processor):
        return messages

    def process_token_ids(self, input_ids, labels, images, videos, audios, tokenizer, processor):
        return input_ids, labels


def load_llamafactory():
    root = find_llamafactory()
    version = open(os.path.join(root, "extras", "env.py")).read()
    if 'VERSION = "0.9.5"' not in version:
        sys.exit(f"{root} is not llamafactory 0.9.5")
    package("llamafactory", root)
    package("llamafactory.extras", os.path.join(root, "extras"))
    package("llamafactory.data", os.path.join(root, "data"))
    package("llamafactory.data.processor", os.path.join(root, "data", "processor"))
    stub("llamafactory.extras.logging", get_logger=lambda name=None: _Logger())
    stub("llamafactory.extras.constants", IGNORE_INDEX=-100)
    stub("datasets", DatasetDict=dict, concatenate_datasets=None, interleave_datasets=None)
    for name, attrs in (("fsspec", {}), ("typing_extensions", {"override": lambda f: f})):
        try:
            importlib.import_module(name)
        except ImportError:  # only imported, never used by the code this script runs
            stub(name, **attrs)
    stub("llamafactory.data.mm_plugin", get_mm_plugin=lambda *args, **kwargs: _Plugin())
    load("llamafactory.data.data_utils", os.path.join(root, "data", "data_utils.py"))
    load("llamafactory.data.tool_utils", os.path.join(root, "data", "tool_utils.py"))
    load("llamafactory.data.formatter", os.path.join(root, "data", "formatter.py"))
    template = load("llamafactory.data.template", os.path.join(root, "data", "template.py"))
    load("llamafactory.data.processor.processor_utils", os.path.join(root, "data", "processor", "processor_utils.py"))
    supervised = load("llamafactory.data.processor.supervised", os.path.join(root, "data", "processor", "supervised.py"))
    pretrain = load("llamafactory.data.processor.pretrain", os.path.join(root, "data", "processor", "pretrain.py"))
    return template, supervised, pretrain


def token_text(value):
    return value.get("content") if isinstance(value, dict) else value


class HFTokenizer:
    """The part of transformers' PreTrainedTokenizerFast that LLaMA-Factory's template and processors use."""

    def __init__(self, folder: str):
        self.backend = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "tokenizer_config.json")) as f:
            config = json.load(f)
        self.bos_token = token_text(config.get("bos_token"))
        self.eos_token = token_text(config.get("eos_token"))
        self.pad_token = token_text(config.get("pad_token"))
        self.add_bos_token = config.get("add_bos_token", False)
        self.chat_template = None

    def convert_tokens_to_ids(self, token):
        return None if token is None else self.backend.token_to_id(token)

    bos_token_id = property(lambda self: self.convert_tokens_to_ids(self.bos_token))
    eos_token_id = property(lambda self: self.convert_tokens_to_ids(self.eos_token))
    pad_token_id = property(lambda self: self.convert_tokens_to_ids(self.pad_token))

    def encode(self, text, add_special_tokens=True):
        assert add_special_tokens is False, "LLaMA-Factory encodes slots without special tokens"
        return self.backend.encode(text, add_special_tokens=False).ids

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None):
        ids = [self.encode(text, add_special_tokens=add_special_tokens) for text in texts]
        if truncation:
            ids = [x[:max_length] for x in ids]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}

    def add_special_tokens(self, tokens, replace_additional_special_tokens=True):
        # transformers: string values become AddedToken(special=True, normalized=False); returns the new ids' count
        words = []
        for key, value in tokens.items():
            values = value if isinstance(value, list) else [value]
            words += values
            if key != "additional_special_tokens":
                setattr(self, key, values[0])
        return self.backend.add_special_tokens([AddedToken(w, special=True, normalized=False) for w in words])


def main():
    request = json.load(sys.stdin)
    template_mod, supervised, pretrain = load_llamafactory()
    pristine = copy.deepcopy(template_mod.TEMPLATES)
    results = []
    for case in request["cases"]:
        template_mod.TEMPLATES = copy.deepcopy(pristine)
        tokenizer = HFTokenizer(request["tokenizer_dir"])
        vocab_size = tokenizer.backend.get_vocab_size(with_added_tokens=True)
        data_args = types.SimpleNamespace(
            template=case["template"],
            train_on_prompt=False,
            mask_history=False,
            tool_format=None,
            default_system=case.get("default_system"),
            enable_thinking=case.get("enable_thinking", True),
            preserve_thinking=False,
            cutoff_len=case["cutoff_len"],
            packing=False,
        )
        try:
            template = template_mod.get_template_and_fix_tokenizer(tokenizer, data_args)
        except ValueError as error:
            results.append({"error": str(error)})
            continue
        messages = case["messages"]
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        turns = [m for m in messages if m["role"] != "system"]
        processor = supervised.SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
        input_ids, labels = processor._encode_data_example(turns[:-1], turns[-1:], system, "", [], [], [])
        prompt_ids, _ = template.encode_oneturn(tokenizer, copy.deepcopy(turns[:-1]) + [{"role": "assistant", "content": ""}], system)
        pt = pretrain.PretrainDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=data_args)
        pt_texts = case.get("pt_texts", [])
        pt_ids = pt.preprocess_dataset({"_prompt": [[{"role": "user", "content": t}] for t in pt_texts]})["input_ids"] if pt_texts else []
        results.append(
            {
                "input_ids": input_ids,
                "labels": labels,
                "prompt_ids": prompt_ids,
                "eos_id": tokenizer.eos_token_id,
                "stop_ids": sorted(template.get_stop_token_ids(tokenizer)),
                "pt_ids": pt_ids,
                "new_tokens": tokenizer.backend.get_vocab_size(with_added_tokens=True) - vocab_size,
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
