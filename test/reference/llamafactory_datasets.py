"""LLaMA-Factory 0.9.5's own dataset loading, on local files: the reference for test/readers.test.ts.

For each name it runs data/parser.py's get_dataset_list (dataset_info.json → DatasetAttr), the "file" branch of
data/loader.py's _load_single_dataset (a file, or a folder whose files share one FILEEXT2TYPE type, loaded with
`datasets.load_dataset(type, data_files=...)`), and data/converter.py's converter for the entry's formatting, on
every example — the real package's parser.py and converter.py (installed with `pip install --no-deps
llamafactory==0.9.5`, or the folder named by LLAMAFACTORY_SRC), imported without torch, transformers or peft: the
modules they import only for logging, constants and hub access are stubbed, and FILEEXT2TYPE is read from
extras/constants.py's source. One difference on purpose: a folder's files are sorted (os.listdir's order is the
file system's; llamapro sorts).

stdin: {"dataset_dir": str, "names": [str]}; stdout: {name: [{"_prompt", "_response", "_system"}]} with
`datasets`' own row values.
"""
import ast
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from llamafactory_templates import _Logger, find_llamafactory, load, package, stub  # noqa: E402


def file_types(root: str) -> dict:
    tree = ast.parse(open(os.path.join(root, "extras", "constants.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FILEEXT2TYPE" for t in node.targets):
            return ast.literal_eval(node.value)
    sys.exit("FILEEXT2TYPE not found in extras/constants.py")


def main() -> None:
    request = json.load(sys.stdin)
    root = find_llamafactory()
    if 'VERSION = "0.9.5"' not in open(os.path.join(root, "extras", "env.py")).read():
        sys.exit(f"{root} is not llamafactory 0.9.5")
    package("llamafactory", root)
    package("llamafactory.extras", os.path.join(root, "extras"))
    package("llamafactory.data", os.path.join(root, "data"))
    stub("llamafactory.extras.logging", get_logger=lambda name=None: _Logger())
    FILEEXT2TYPE = file_types(root)
    stub("llamafactory.extras.constants", DATA_CONFIG="dataset_info.json", FILEEXT2TYPE=FILEEXT2TYPE, IGNORE_INDEX=-100)
    stub("llamafactory.extras.misc", use_modelscope=lambda: False, use_openmind=lambda: False)
    load("llamafactory.data.data_utils", os.path.join(root, "data", "data_utils.py"))
    parser = load("llamafactory.data.parser", os.path.join(root, "data", "parser.py"))
    converter = load("llamafactory.data.converter", os.path.join(root, "data", "converter.py"))
    from datasets import load_dataset

    class DataArgs:
        media_dir = request["dataset_dir"]
        streaming = False

    out = {}
    for name, attr in zip(request["names"], parser.get_dataset_list(request["names"], request["dataset_dir"])):
        # data/loader.py, _load_single_dataset, load_from == "file"
        local_path = os.path.join(request["dataset_dir"], attr.dataset_name)
        if os.path.isdir(local_path):
            data_files = [os.path.join(local_path, f) for f in sorted(os.listdir(local_path))]
        else:
            data_files = [local_path]
        data_path = FILEEXT2TYPE.get(os.path.splitext(data_files[0])[-1][1:], None)
        if data_path is None or any(data_path != FILEEXT2TYPE.get(os.path.splitext(f)[-1][1:], None) for f in data_files):
            out[name] = {"error": "File types should be identical."}
            continue
        dataset = load_dataset(path=data_path, data_files=data_files, split=attr.split)
        convert = converter.get_dataset_converter(attr.formatting, attr, DataArgs())
        rows = []
        for example in dataset:
            aligned = convert(example)
            rows.append({k: aligned[k] for k in ("_prompt", "_response", "_system")})
        out[name] = rows
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
