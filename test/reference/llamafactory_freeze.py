#!/usr/bin/env python3
"""Reference transcription of LLaMA-Factory's freeze / full trainability rules.

This file is an independent re-statement (not a copy) of the logic in
hiyouga/LLaMA-Factory:

  * src/llamafactory/hparams/finetuning_args.py
      - FreezeArguments defaults (freeze_trainable_layers=2,
        freeze_trainable_modules="all", freeze_extra_modules=None)
      - FinetuningArguments.__post_init__: `split_arg` (comma split + strip of
        string values, non-strings passed through), the
        `finetuning_type in ["lora", "oft", "freeze", "full"]` assertion
        ("Invalid fine-tuning method.") and
        "`use_llama_pro` is only valid for Freeze or LoRA training."
  * src/llamafactory/model/adapter.py
      - _setup_freeze_tuning  (layer ids, hidden / non-hidden module discovery,
        validation messages, substring matching of patterns against names)
      - _setup_full_tuning    (everything trainable except forbidden modules)
      - init_adapter          (dispatch on finetuning_type)

Read at commits 01d87b8267b92bc0caacc746fa4f875e390b64e2 (adapter.py, f-string
messages, "Copyright 2025") and 99e0c3e4af07c4fa1799a8c83ef49e277114f3ec
(adapter.py, older .format messages; identical semantics and identical message
text), and 00577a85775a2a78b14641ff8f68c58c6f46b027 (finetuning_args.py).

It is deliberately faithful, quirks included; nothing is "fixed" here.
No torch / transformers: a "model" is just its list of parameter names (in
named_parameters() order) plus the config's layer count.

CLI:  python3 llamafactory_freeze.py < cases.json > results.json
  stdin : {"cases": [case, ...]}
  stdout: {"results": [result, ...]}

case keys (missing keys take LLaMA-Factory's dataclass defaults):
  num_layers               int   config.num_hidden_layers (0/None -> error)
  param_names              [str] named_parameters() names, in order
  finetuning_type          str   default "lora" (LLaMA-Factory's default)
  freeze_trainable_layers  int   default 2
  freeze_trainable_modules str|[str]  default "all"
  freeze_extra_modules     str|[str]|null  default null
  use_llama_pro            bool  default false
  forbidden_modules        [str] optional, default [] -- what
                           get_forbidden_modules() returns; it is empty for
                           text-only models such as LLaMA.

result:
  ok=true : {"ok": true,
             "trainable_layer_ids": [int, ...] (freeze) | null (full: LF
                                    computes no layer ids for full tuning),
             "patterns": [str, ...]  the `trainable_layers` list LF logs
                                     ("Set trainable layers: ...") (freeze) |
                                     null (full),
             "trainable": [names in input order],
             "frozen":    [names in input order]}
  ok=false: {"ok": false,
             "error": str(exception)  (LF's message text),
             "error_type": "ValueError" | "AssertionError" |
                           "ZeroDivisionError" | "IndexError" | "Unsupported",
             "choices": [str, ...]  only for "Module X is not found" errors:
                                    the set LF lists, in first-seen order}

Note on "Module X is not found, please choose from A, B": LF joins a Python
*set* of str, whose iteration order depends on PYTHONHASHSEED, so the order in
LF's real message is not stable between processes.  Here the message lists
the choices in first-seen (parameter) order; compare `choices` as a set.
"""

import json
import re
import sys

FREEZE_DEFAULTS = {
    "finetuning_type": "lora",
    "freeze_trainable_layers": 2,
    "freeze_trainable_modules": "all",
    "freeze_extra_modules": None,
    "use_llama_pro": False,
}

_LAYER_INDEX_RE = re.compile(r"\.\d+\.")


class _ModuleNotFound(ValueError):
    """ValueError carrying the list of valid choices (for test convenience)."""

    def __init__(self, module_name, choices):
        # Same wording as LF: "Module {} is not found, please choose from {}"
        super().__init__(
            "Module {} is not found, please choose from {}".format(module_name, ", ".join(choices))
        )
        self.choices = list(choices)


class _Unsupported(Exception):
    pass


def _split_comma_arg(value):
    # Mirrors split_arg in FinetuningArguments.__post_init__: only strings are
    # split (on ",", each piece stripped); None and lists pass through as-is.
    # So "" -> [""] and "mlp," -> ["mlp", ""] (empty names, later "not found").
    if isinstance(value, str):
        return [piece.strip() for piece in value.split(",")]
    return value


class _OrderedSet:
    """Set semantics with first-seen order, so messages are deterministic."""

    def __init__(self):
        self._d = {}

    def add(self, item):
        self._d.setdefault(item, None)

    def __contains__(self, item):
        return item in self._d

    def __iter__(self):
        return iter(self._d)


def _validate_args(args):
    # FinetuningArguments.__post_init__ (only the checks relevant here, in
    # source order).
    args["freeze_trainable_modules"] = _split_comma_arg(args["freeze_trainable_modules"])
    args["freeze_extra_modules"] = _split_comma_arg(args["freeze_extra_modules"])
    if args["finetuning_type"] not in ("lora", "oft", "freeze", "full"):
        raise AssertionError("Invalid fine-tuning method.")
    if args["use_llama_pro"] and args["finetuning_type"] == "full":
        raise ValueError("`use_llama_pro` is only valid for Freeze or LoRA training.")


def _choose_layer_ids(num_layers, n_trainable, use_llama_pro):
    # _setup_freeze_tuning: which decoder-layer indices are trainable.
    if use_llama_pro:
        # Python int semantics on purpose: n_trainable == 0 raises
        # ZeroDivisionError here; negatives use floored % and //.
        if num_layers % n_trainable != 0:
            raise ValueError(
                "`num_layers` {} should be divisible by `num_layer_trainable` {}.".format(
                    num_layers, n_trainable
                )
            )
        step = num_layers // n_trainable
        # every step-th layer, ending on the last one: step-1, 2*step-1, ...
        return range(step - 1, num_layers + step - 1, step)
    if n_trainable > 0:
        # last n layers
        return range(max(0, num_layers - n_trainable), num_layers)
    # n <= 0: first -n layers (so 0 selects no layer at all)
    return range(min(-n_trainable, num_layers))


def _discover_modules(param_names):
    # _setup_freeze_tuning: "hidden" module names come from any name containing
    # ".0." (else ".1.", for MoD models whose layer 0 differs): the first
    # dotted component of the last piece of name.split(marker).
    # "Non-hidden" module names come from names with no ".<digits>." at all: the
    # second-to-last dotted component (IndexError for a name without a dot,
    # as in LF).
    hidden = _OrderedSet()
    non_hidden = _OrderedSet()
    for name in param_names:
        for marker in (".0.", ".1."):
            if marker in name:
                # split()[-1], not rsplit: they differ on overlapping markers
                # ("a.0.0.b" -> "0.b" -> "0"), and LF uses split.
                tail = name.split(marker)[-1]
                hidden.add(tail.split(".")[0])
                break
        if _LAYER_INDEX_RE.search(name) is None:
            non_hidden.add(name.split(".")[-2])
    return hidden, non_hidden


def _freeze(args, param_names, forbidden):
    # Mirror of adapter.py::_setup_freeze_tuning (is_trainable=True).
    num_layers = args["num_layers"]
    if not num_layers:
        raise ValueError("Current model does not support freeze tuning.")

    layer_ids = _choose_layer_ids(num_layers, args["freeze_trainable_layers"], args["use_llama_pro"])
    hidden, non_hidden = _discover_modules(param_names)

    patterns = []
    for module in args["freeze_trainable_modules"]:
        if module != "all" and module not in hidden:
            raise _ModuleNotFound(module, hidden)
        suffix = "" if module == "all" else module
        for idx in layer_ids:
            patterns.append(".%d.%s" % (idx, suffix))

    extra = args["freeze_extra_modules"]
    if extra:  # None and [] skip; [""] (from "") does not skip
        for module in extra:
            if module not in non_hidden:
                raise _ModuleNotFound(module, non_hidden)
            patterns.append(module)  # bare name, matched as a substring below

    trainable, frozen = [], []
    for name in param_names:
        hit = any(p in name for p in patterns)
        blocked = any(f in name for f in forbidden)
        (trainable if hit and not blocked else frozen).append(name)
    return {
        "ok": True,
        "trainable_layer_ids": list(layer_ids),
        "patterns": patterns,
        "trainable": trainable,
        "frozen": frozen,
    }


def _full(param_names, forbidden):
    # Mirror of adapter.py::_setup_full_tuning.
    trainable, frozen = [], []
    for name in param_names:
        (frozen if any(f in name for f in forbidden) else trainable).append(name)
    return {
        "ok": True,
        "trainable_layer_ids": None,
        "patterns": None,
        "trainable": trainable,
        "frozen": frozen,
    }


def freeze_policy(case):
    """Return the result dict for one case (see module docstring)."""
    args = dict(FREEZE_DEFAULTS)
    for key in FREEZE_DEFAULTS:
        if key in case:
            args[key] = case[key]
    args["num_layers"] = case.get("num_layers")
    param_names = list(case.get("param_names", []))
    forbidden = list(case.get("forbidden_modules") or [])
    try:
        _validate_args(args)
        kind = args["finetuning_type"]
        if kind == "freeze":
            return _freeze(args, param_names, forbidden)
        if kind == "full":
            return _full(param_names, forbidden)
        # lora / oft: trainability is decided by PEFT, outside this reference.
        raise _Unsupported(
            "finetuning_type {!r} is not modelled by this reference (only freeze and full)".format(kind)
        )
    except _ModuleNotFound as exc:
        return {"ok": False, "error": str(exc), "error_type": "ValueError", "choices": exc.choices}
    except _Unsupported as exc:
        return {"ok": False, "error": str(exc), "error_type": "Unsupported"}
    except (ValueError, AssertionError, ZeroDivisionError, IndexError) as exc:
        return {"ok": False, "error": str(exc), "error_type": type(exc).__name__}


def main():
    payload = json.load(sys.stdin)
    results = [freeze_policy(case) for case in payload.get("cases", [])]
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
