"""Compares the loss each tool logged at every step (trainer_log.jsonl) and the token ids and labels each tool made
from the data, and writes <out>.json and <out>.md.

usage: compare.py <work dir> <out prefix> <case>...
Run by run.sh with the LLaMA-Factory venv's python; <work>/tokens/<case>.<tool>.json hold the token dumps.
"""
import datetime
import json
import subprocess
import os
import platform
import sys


def read_log(path):
    if not os.path.exists(path):
        return None
    steps = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                if "loss" in record and record["loss"] is not None:
                    steps[record["current_steps"]] = float(record["loss"])
    return steps


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def tail(path, lines=6):
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        text = [l.rstrip() for l in f.read().replace("\r", "\n").split("\n") if l.strip()]
    return "\n".join(text[-lines:])


def first_error(path):
    """The line of a log that says why a run failed (an error, a traceback's last line)."""
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        lines = [l.strip() for l in f.read().replace("\r", "\n").split("\n") if l.strip()]
    for line in lines:
        if line.startswith("llamapro train:") or "Error:" in line:
            return line[:400]
    return lines[-1][:400] if lines else ""


def warnings(path):
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return [l.strip() for l in f if l.startswith("warning:")]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def token_comparison(work, case):
    lf = read_json(os.path.join(work, "tokens", f"{case}.llamafactory.json"))
    lp = read_json(os.path.join(work, "tokens", f"{case}.llamapro.json"))
    if lf is None or lp is None:
        return {"available": False}
    same_ids = sum(1 for a, b in zip(lf, lp) if a["ids"] == b["ids"])
    same_labels = sum(1 for a, b in zip(lf, lp) if a["labels"] == b["labels"])
    first_diff = None
    for i, (a, b) in enumerate(zip(lf, lp)):
        if a != b:
            j = next((k for k, (x, y) in enumerate(zip(a["ids"], b["ids"])) if x != y), min(len(a["ids"]), len(b["ids"])))
            first_diff = {"sequence": i, "position": j, "llamafactory_ids": a["ids"][max(0, j - 3): j + 6], "llamapro_ids": b["ids"][max(0, j - 3): j + 6],
                          "llamafactory_len": len(a["ids"]), "llamapro_len": len(b["ids"])}
            break
    return {"available": True, "sequences": [len(lf), len(lp)], "identical_ids": same_ids, "identical_labels": same_labels,
            "all_identical": lf == lp, "first_difference": first_diff}


def llamaboard(work, case):
    """LlamaBoard's monitor (LLaMA-Factory's own get_trainer_info and loss plot, test/reference/llamaboard_reader.py)
    over each tool's output folder: its progress label and loss plot, and the trainer_log.jsonl keys LLaMA-Factory
    wrote that llamapro's lines lack."""
    reader = os.path.join(os.path.dirname(__file__), "..", "..", "test", "reference", "llamaboard_reader.py")
    shown = {}
    for tool in ("llamafactory", "llamapro"):
        folder = os.path.join(work, "saves", tool, case)
        done = subprocess.run([sys.executable, reader, folder], capture_output=True, text=True)
        if done.returncode != 0:
            shown[tool] = {"error": done.stderr.strip().splitlines()[-1:] }
            continue
        board = json.loads(done.stdout)
        plot = board["loss_plot"]
        shown[tool] = {"progress": board["progress"].get("label"), "loss_points": len(plot["lines"][0]) if plot else 0,
                       "running_log_chars": len(board["running_log"])}
    keys = {tool: set() for tool in ("llamafactory", "llamapro")}
    for tool in keys:
        path = os.path.join(work, "saves", tool, case, "trainer_log.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        keys[tool].update(json.loads(line).keys())
    shown["llamafactory_keys_missing_in_llamapro"] = sorted(keys["llamafactory"] - keys["llamapro"])
    return shown


def compare(work, case, cutoff):
    lf = read_log(os.path.join(work, "saves", "llamafactory", case, "trainer_log.jsonl"))
    lp = read_log(os.path.join(work, "saves", "llamapro", case, "trainer_log.jsonl"))
    result = {"case": case, "tokens": token_comparison(work, case)}
    if not lf or not lp:
        result["status"] = "failed"
        result["failed"] = [tool for tool, log in (("llamafactory", lf), ("llamapro", lp)) if not log]
        result["errors"] = {tool: first_error(os.path.join(work, "logs", f"{case}.{tool}.log")) for tool in result["failed"]}
        return result
    steps = sorted(set(lf) & set(lp))
    rows = [{"step": s, "llamafactory": lf[s], "llamapro": lp[s], "abs_diff": abs(lf[s] - lp[s]), "rel_diff": abs(lf[s] - lp[s]) / abs(lf[s]),
             "ratio": lf[s] / lp[s]} for s in steps]
    result["steps"] = rows
    result["max_rel_diff"] = max(r["rel_diff"] for r in rows)
    result["ratio_min"] = min(r["ratio"] for r in rows)
    result["ratio_max"] = max(r["ratio"] for r in rows)
    # llamapro logs 6 decimals; 1e-5 relative is far below any difference a different token or label would make.
    if result["max_rel_diff"] < 1e-5:
        result["status"] = "same loss at every step"
    elif cutoff and abs(result["ratio_min"] - (cutoff - 1) / cutoff) < 2e-5 and abs(result["ratio_max"] - (cutoff - 1) / cutoff) < 2e-5:
        result["status"] = f"LLaMA-Factory = (L-1)/L x llamapro at every step (L = cutoff_len = {cutoff}: {(cutoff - 1) / cutoff:.6f})"
    else:
        result["status"] = "differs"
    return result


def main():
    work, out, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
    import yaml  # in the LLaMA-Factory venv

    results = []
    for case in cases:
        with open(os.path.join(work, f"{case}.yaml")) as f:
            cfg = yaml.safe_load(f)
        cutoff = cfg.get("cutoff_len") if cfg.get("stage") == "pt" else None
        r = compare(work, case, cutoff)
        r["llamaboard"] = llamaboard(work, case)
        r["yaml"] = f"bench/llamafactory-parity/cases/{case}.yaml"
        r["description"] = open(os.path.join(work, f"{case}.yaml")).readline().lstrip("# ").strip()
        results.append(r)
    versions = read_json(os.path.join(work, "versions.json")) or {}
    report = {"machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count()},
              "versions": versions, "command": "bench/llamafactory-parity/run.sh", "results": results}
    with open(f"{out}.json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    md = ["# LLaMA-Factory 0.9.5 and llamapro on the same YAMLs", "",
          "`bench/llamafactory-parity/run.sh` trains each YAML of `bench/llamafactory-parity/cases/` with `llamafactory-cli train` and with "
          "`llamapro train`, from one working folder (`models/base`: a tiny random LLaMA, 4 layers, width 64, float32, with a ChatML "
          "byte-level BPE tokenizer; `models/base-pro`: its `llamapro expand --num-expand 2`; `data/dataset_info.json` with 16 alpaca "
          "examples (some with an empty input, some with an unmapped `system` field) and 48 code texts). Every step is one batch that holds "
          "all the data, so neither tool's shuffling changes what a step sees. It compares the token ids and labels each tool made and "
          "the loss each logged at every step (`trainer_log.jsonl`).", "",
          f"Date: {datetime.date.today().isoformat()}. Command: `bench/llamafactory-parity/run.sh`. "
          f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}. Machine: {report['machine']['processor']}, "
          f"{report['machine']['cpus']} CPUs, no GPU.", "",
          "| case | tokens and labels | loss, every step | max relative difference | LLaMA-Factory / llamapro |", "|---|---|---|---|---|"]
    for r in results:
        tok = r["tokens"]
        tokens = ("identical" if tok.get("all_identical") else f"{tok['identical_ids']}/{tok['sequences'][0]} sequences identical ids, "
                  f"{tok['identical_labels']} labels (llamapro: {tok['sequences'][1]})") if tok.get("available") else "n/a"
        if r["status"] == "failed":
            md.append(f"| `{r['case']}` | {tokens} | failed in {', '.join(r['failed'])} | | |")
        else:
            md.append(f"| `{r['case']}` | {tokens} | {r['status']} | {r['max_rel_diff']:.1e} | {r['ratio_min']:.6f} – {r['ratio_max']:.6f} |")
    md += ["", "## LlamaBoard over both outputs", "",
           "LLaMA-Factory's own monitor code (`webui/control.py` `get_trainer_info`, `extras/ploting.py` `gen_loss_plot`, run by "
           "`test/reference/llamaboard_reader.py`) over each tool's output folder: the progress label it shows, the points of its loss plot, "
           "and the `trainer_log.jsonl` keys LLaMA-Factory wrote that llamapro did not.", "",
           "| case | LLaMA-Factory: progress, loss points | llamapro: progress, loss points | keys missing in llamapro |", "|---|---|---|---|"]
    for r in results:
        b = r["llamaboard"]
        cell = lambda x: f"`{x['progress']}`, {x['loss_points']}" if "progress" in x else f"failed: {x.get('error')}"
        md.append(f"| `{r['case']}` | {cell(b['llamafactory'])} | {cell(b['llamapro'])} | {', '.join(b['llamafactory_keys_missing_in_llamapro']) or 'none'} |")
    md += ["", "## Per step", ""]
    for r in results:
        md += [f"### `{r['case']}`: {r['description']}", ""]
        if r["status"] == "failed":
            for tool, error in r["errors"].items():
                md.append(f"- {tool} failed: `{error}`")
            md.append("")
            continue
        said = warnings(os.path.join(work, "logs", f"{r['case']}.tokens-llamapro.log"))
        if said:
            md += ["llamapro said: " + "; ".join(f"`{w}`" for w in said), ""]
        if r["tokens"].get("first_difference"):
            d = r["tokens"]["first_difference"]
            md += [f"First token difference: sequence {d['sequence']}, position {d['position']}: LLaMA-Factory {d['llamafactory_ids']} "
                   f"(length {d['llamafactory_len']}), llamapro {d['llamapro_ids']} (length {d['llamapro_len']}).", ""]
        md += ["| step | LLaMA-Factory | llamapro | relative difference |", "|---|---|---|---|"]
        for row in r["steps"]:
            md.append(f"| {row['step']} | {row['llamafactory']:.7f} | {row['llamapro']:.6f} | {row['rel_diff']:.1e} |")
        md.append("")
    md += ["llamapro logs losses with 6 decimals, so a relative difference near 1e-7 is the rounding of its log.", ""]
    with open(f"{out}.md", "w") as f:
        f.write("\n".join(md))
    for r in results:
        print(f"{r['case']}: {r['status']}" + (f" (max relative difference {r['max_rel_diff']:.1e})" if "max_rel_diff" in r else f" {r.get('errors')}"))


if __name__ == "__main__":
    main()
