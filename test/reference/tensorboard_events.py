"""Reads TensorBoard event files with TensorBoard's own code (PyPI `tensorboard`, no TensorFlow) for
test/tensorboard.test.ts. stdin: {"files": [path, ...], "crc_inputs": [hex, ...]}; stdout: JSON with
"masked_crc" (TensorBoard's masked CRC-32C of each hex input) and "files", one entry per file:
  records      every TFRecord read by TensorBoard's record reader (it checks both CRCs): the Event it parses to,
               whether protobuf re-serializes it to the same bytes, and the reader's error that stopped it, if any
  accumulator  what EventAccumulator (the loader behind TensorBoard's Scalars and Text tabs) keeps: tags, scalars,
               and text summaries rendered to HTML the way the Text tab renders them
"""
import json
import math
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New, masked_crc32c
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.plugins.text import text_plugin
from tensorboard.util import tensor_util


def num(x):
    """JSON has no NaN or infinities: they travel as the strings "nan", "inf", "-inf"."""
    return x if math.isfinite(x) else repr(x)


def value_json(value):
    out = {"tag": value.tag, "kind": value.WhichOneof("value")}
    if out["kind"] == "simple_value":
        out["simple_value"] = num(value.simple_value)
    if value.HasField("metadata"):
        out["plugin"] = value.metadata.plugin_data.plugin_name
    if out["kind"] == "tensor":
        out["dtype"] = value.tensor.dtype
        out["shape"] = [d.size for d in value.tensor.tensor_shape.dim]
        out["strings"] = [s.decode("utf-8") for s in value.tensor.string_val]
        # The same summary built by TensorBoard's own text summary op, to compare bytes with ours.
        reference = text_summary.text_pb(value.tag, out["strings"][0]).value[0]
        out["same_bytes_as_text_pb"] = reference.SerializeToString() == value.SerializeToString()
    return out


def read_records(path):
    reader = PyRecordReader_New(path)
    records, error = [], None
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        except errors.DataLossError as e:
            error = str(e)
            break
        raw = reader.record()
        event = event_pb2.Event.FromString(raw)
        records.append({
            "wall_time": event.wall_time,
            "step": event.step,
            "file_version": event.file_version,
            "values": [value_json(v) for v in event.summary.value],
            "canonical": event.SerializeToString() == raw,
        })
    return {"records": records, "error": error}


def accumulate(path):
    acc = event_accumulator.EventAccumulator(path, size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [[e.wall_time, e.step, num(e.value)] for e in acc.Scalars(t)] for t in tags["scalars"]}
    texts = {}
    for tag in tags["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "text":
            continue
        texts[tag] = [
            {"wall_time": e.wall_time, "step": e.step,
             "html": text_plugin.text_array_to_html(tensor_util.make_ndarray(e.tensor_proto), True)}
            for e in acc.Tensors(tag)
        ]
    return {"file_version": acc.file_version, "scalar_tags": sorted(tags["scalars"]),
            "text_tags": sorted(texts), "scalars": scalars, "texts": texts}


request = json.load(sys.stdin)
out = {"masked_crc": {h: masked_crc32c(bytes.fromhex(h)) for h in request.get("crc_inputs", [])}, "files": {}}
for path in request.get("files", []):
    out["files"][path] = {**read_records(path), "accumulator": accumulate(path)}
json.dump(out, sys.stdout, allow_nan=False)
