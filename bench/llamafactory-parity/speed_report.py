"""Reads the train_runtime both tools wrote (all_results.json) in each round of speed.sh, and llamapro's
`bench <yaml>` report, and writes <out>.json and <out>.md: per round and setting llamapro / LLaMA-Factory, and
the median over rounds.

usage: speed_report.py <work dir> <out prefix> <rounds> <command>
"""
import json
import os
import platform
import statistics
import sys


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_text(path):
    return open(path).read().strip() if os.path.exists(path) else ""


def main():
    work, out, rounds, command = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    runs = {}
    for setting in ("on", "off"):
        runs[setting] = []
        for r in range(1, rounds + 1):
            row = {"round": r, "first": "llamafactory" if r % 2 == 1 else "llamapro"}
            for tool in ("llamafactory", "llamapro"):
                results = read_json(os.path.join(work, "saves", f"{tool}-{setting}-{r}", "all_results.json"))
                row[tool] = results["train_runtime"] if results else None
                row[f"{tool}_loss"] = results.get("train_loss") if results else None
            row["ratio"] = row["llamapro"] / row["llamafactory"] if row["llamapro"] and row["llamafactory"] else None
            runs[setting].append(row)
    medians = {s: (statistics.median([r["ratio"] for r in rows if r["ratio"]]) if any(r["ratio"] for r in rows) else None) for s, rows in runs.items()}
    versions = read_json(os.path.join(work, "versions.json")) or {}
    bench = read_json(os.path.join(work, "bench.json"))
    report = {
        "command": command,
        "machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count(),
                    "load_before": read_text(os.path.join(work, "load-before.txt")), "load_after": read_text(os.path.join(work, "load-after.txt"))},
        "versions": versions,
        "case": "bench/llamafactory-parity/speed/smollm2-llama-pro.yaml",
        "max_steps": int(os.environ.get("LLAMAPRO_LF_SPEED_STEPS", "12")),
        "rounds": runs,
        "median_ratio": medians,
        "targets": {"on": 0.8, "off": 0.9},
        "llamapro_bench": bench,
    }
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    lines = [
        "# Training loop speed: llamapro against LLaMA-Factory 0.9.5 on one LLaMA-Pro YAML", "",
        f"Command: `{command}`. Case: `{report['case']}` (SmolLM2-135M-Instruct from its Q4_1 GGUF, imported as float32 and "
        "expanded to 36 layers with `--num-expand 6`; the 6 new blocks train; sft, template smollm2, cutoff_len 256, batch 4, "
        f"max_steps {os.environ.get('LLAMAPRO_LF_SPEED_STEPS', '12')}, "
        "the 16 alpaca examples of `fixtures.ts`, float32 on the CPU).",
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        f"Machine: {report['machine']['processor']}, {report['machine']['cpus']} CPUs, no GPU; load average before "
        f"`{report['machine']['load_before']}`, after `{report['machine']['load_after']}` (other jobs shared the machine: only same-round ratios mean something).",
        "train_runtime is each tool's training loop (transformers' definition: without loading the model and data, and without the final save). "
        "Each round runs both tools on both settings; the tool that goes first alternates from round to round. "
        "The two tools shuffle the 16 examples differently, so their batches (and losses) differ; the shapes are alike.", "",
        "| checkpointing | round | first | LLaMA-Factory train_runtime | llamapro train_runtime | llamapro / LLaMA-Factory |",
        "|---|---|---|---|---|---|",
    ]
    for setting, rows in runs.items():
        for r in rows:
            lines.append(f"| {setting} | {r['round']} | {r['first']} | {fmt(r['llamafactory'])} s | {fmt(r['llamapro'])} s | {fmt(r['ratio'], 3)} |")
    lines += ["", "| checkpointing | median llamapro / LLaMA-Factory | target | median within target (on this run's load) |", "|---|---|---|---|"]
    for setting, target in report["targets"].items():
        m = medians[setting]
        lines.append(f"| {setting} | {fmt(m, 3)} | <= {target} | {'-' if m is None else ('yes' if m <= target else 'no')} |")
    lines += ["", "Read with care: these ratios were measured on whatever machine ran the script. Where other jobs load it beyond its "
              "cores, both tools slow down, but not necessarily alike (a plausible cause, not measured: LLaMA-Factory's torch runs a team "
              "of 2 intra-op threads that waits for its slowest member, llamapro one intra-op thread beside BLAS's), so a loaded "
              "machine's ratio need not be a quiet one's: compare the rounds, and the load average above."]
    if bench:
        lines += ["", f"`llamapro bench {os.path.basename(report['case'])}` in the same working folder (its own step, the settings alternating step by step; "
                  f"{bench['config']['steps']} timed steps after {bench['config']['warmup']} warm-up):", "",
                  "| checkpointing | step (median) | CPU time per step | step / on |", "|---|---|---|---|"]
        for r in bench["results"]:
            lines.append(f"| {r['checkpointing']} | {r['msPerStep']['median']:.0f} ms | {r['cpuMsPerStep']:.0f} ms | {bench['ratios'][r['checkpointing']]:.3f} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
