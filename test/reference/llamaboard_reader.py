"""LlamaBoard's own reader of a training run, LLaMA-Factory 0.9.5's webui/control.py `get_trainer_info` with its
loss plot (extras/ploting.py `gen_loss_plot`, matplotlib), run on a llamapro output folder: the reference for
test/run-log.test.ts. It shows whether LlamaBoard's monitor would display a llamapro run: the progress label and
percentage, the running log box and the loss plot.

The two files are loaded from the real package (`pip install --no-deps llamafactory==0.9.5`, or LLAMAFACTORY_SRC)
without transformers, gradio or peft: their package __init__ files are skipped and the modules they import only for
names are stubbed (gradio's components record what they were built with). RUNNING_LOG and TRAINER_LOG are read
from the package's own extras/constants.py.

argv: <output folder>; stdout: {"running_log", "progress": {label, value, visible}, "loss_plot": {"lines": [[x..],
[y..]] of the "original" curve} or null}.
"""
import ast
import importlib.util
import json
import os
import sys
import types


def find_llamafactory() -> str:
    src = os.environ.get("LLAMAFACTORY_SRC")
    if src:
        return os.path.join(src, "llamafactory")
    spec = importlib.util.find_spec("llamafactory")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llamafactory is not installed in this Python: run `npm run setup` (it installs llamafactory==0.9.5 --no-deps)")
    return list(spec.submodule_search_locations)[0]


def stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


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


def string_constants(path: str, names: list[str]) -> dict:
    """Module-level `NAME = "literal"` assignments of a file, read without running it."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in names and isinstance(node.value, ast.Constant):
                found[node.targets[0].id] = node.value.value
    missing = set(names) - set(found)
    if missing:
        sys.exit(f"{path} has no {', '.join(sorted(missing))}")
    return found


class Component:
    """A gradio component as control.py builds it: its keyword arguments, kept."""

    def __init__(self, value=None, **kwargs):
        self.kwargs = dict(kwargs, value=value)


def main() -> None:
    root = find_llamafactory()
    constants = string_constants(os.path.join(root, "extras", "constants.py"), ["RUNNING_LOG", "TRAINER_LOG"])
    package("llamafactory", root)
    package("llamafactory.extras", os.path.join(root, "extras"))
    package("llamafactory.webui", os.path.join(root, "webui"))

    class Logger:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    stub("llamafactory.extras.logging", get_logger=lambda name=None: Logger())
    stub("transformers", __path__=[])
    stub("transformers.trainer", TRAINER_STATE_NAME="trainer_state.json")
    stub("transformers.trainer_utils", get_last_checkpoint=lambda path: None)
    matplotlib = importlib.util.find_spec("matplotlib") is not None
    stub("llamafactory.extras.packages", is_gradio_available=lambda: True, is_matplotlib_available=lambda: matplotlib)
    stub(
        "llamafactory.extras.constants",
        CHECKPOINT_NAMES=set(),
        PEFT_METHODS=set(),
        STAGES_USE_PAIR_DATA=set(),
        SWANLAB_CONFIG="swanlab_public_config.json",
        TRAINING_STAGES={"Pre-Training": "pt"},
        **constants,
    )
    stub("gradio", Slider=Component, Plot=Component, Markdown=Component, Warning=lambda *args: None)
    stub("llamafactory.model", QuantizationMethod=object)
    stub(
        "llamafactory.webui.common",
        DEFAULT_CONFIG_DIR="config",
        DEFAULT_DATA_DIR="data",
        get_model_path=None,
        get_save_dir=None,
        get_template=None,
        load_dataset_info=None,
    )
    stub("llamafactory.webui.locales", ALERTS={})
    load("llamafactory.extras.ploting", os.path.join(root, "extras", "ploting.py"))
    control = load("llamafactory.webui.control", os.path.join(root, "webui", "control.py"))

    running_log, progress, info = control.get_trainer_info("en", sys.argv[1], True)
    plot = None
    if "loss_viewer" in info:
        figure = info["loss_viewer"].kwargs["value"]
        line = figure.axes[0].get_lines()[0]
        plot = {"label": line.get_label(), "lines": [list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))]}
    print(json.dumps({"running_log": running_log, "progress": progress.kwargs, "loss_plot": plot}))


if __name__ == "__main__":
    main()
