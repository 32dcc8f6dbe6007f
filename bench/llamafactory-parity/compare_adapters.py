"""For the LoRA cases: the adapter each tool wrote after training (adapter_model.safetensors) — the same tensor names,
and how far apart their values are — appended to the results' .md and .json by run.sh.

usage: compare_adapters.py <work dir> <out prefix> <case>...
"""
import json
import sys

from safetensors.torch import load_file

work, out, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
rows, results = [], {}
for case in cases:
    a = load_file(f"{work}/saves/llamafactory/{case}/adapter_model.safetensors")
    b = load_file(f"{work}/saves/llamapro/{case}/adapter_model.safetensors")
    same = sorted(a) == sorted(b)
    worst = max(((a[k].double() - b[k].double()).abs().max() / a[k].double().abs().max()).item() for k in a if k in b)
    results[case] = {"same_tensor_names": same, "tensors": len(a), "max_difference_relative_to_tensor_scale": worst}
    rows.append(f"| `{case}` | {len(a)} | {'yes' if same else 'NO'} | {worst:.1e} |")
with open(out + ".md", "a") as f:
    f.write("\n## The trained adapters\n\nLLaMA-Factory's (PEFT's `save_pretrained`) and llamapro's `adapter_model.safetensors` after the last step: "
            "tensor names, and the largest difference of any tensor relative to that tensor's largest value.\n\n"
            "| case | tensors | same names | largest difference |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
with open(out + ".json") as f:
    data = json.load(f)
data["adapters"] = results
with open(out + ".json", "w") as f:
    json.dump(data, f, indent=2)
print(json.dumps(results))
