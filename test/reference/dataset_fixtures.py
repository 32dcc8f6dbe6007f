"""Writes test/readers.test.ts's data files with the packages LLaMA-Factory users write them with: pyarrow
(parquet with snappy and zstd, several row groups; Arrow IPC file format), pandas (csv) and Hugging Face `datasets`
(`save_to_disk`, whose data-00000-of-00001.arrow is the Arrow IPC stream format), from the same records as the
JSONL files, so every format can be checked against the JSONL.

stdin: {"dir": str, "alpaca": [...], "sharegpt": [...], "openai": [...], "pt": [...]}; writes into dir, prints
the written names.
"""
import json
import os
import shutil
import sys
import tempfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset


def main() -> None:
    request = json.load(sys.stdin)
    out = request["dir"]
    written = []

    def path(name: str) -> str:
        written.append(name)
        full = os.path.join(out, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def jsonl(name, records):
        with open(path(name), "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def hf_arrow(name, records):
        with tempfile.TemporaryDirectory() as tmp:
            Dataset.from_list(records).save_to_disk(tmp)
            shutil.copy(os.path.join(tmp, "data-00000-of-00001.arrow"), path(name))

    for kind in ("alpaca", "sharegpt", "openai", "pt"):
        records = request[kind]
        jsonl(f"{kind}.jsonl", records)
        with open(path(f"{kind}.json"), "w", encoding="utf-8") as f:
            json.dump(records, f, ensure_ascii=False, indent=2)
        table = pa.Table.from_pylist(records)
        pq.write_table(table, path(f"{kind}-snappy.parquet"), compression="snappy")
        pq.write_table(table, path(f"{kind}-zstd.parquet"), compression="zstd", row_group_size=3)
        hf_arrow(f"{kind}.arrow", records)
        with pa.OSFile(path(f"{kind}-ipc-file.arrow"), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=2)

    # csv: flat columns only (pandas writes what it is given; nested lists are not csv)
    flat = [{k: v for k, v in r.items() if k != "history"} for r in request["alpaca"]]
    pd.DataFrame(flat).to_csv(path("alpaca.csv"), index=False)
    pd.DataFrame(request["pt"]).to_csv(path("pt.csv"), index=False)
    # txt: one text a line; a second file with Windows line ends and blank lines
    with open(path("pt.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("".join(r["text"] + "\n" for r in request["pt"]))
    with open(path("crlf.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("first\r\n\r\nthird\rfourth\n\nlast without a line end")

    # a folder of shards (parquet, as `datasets` pushes them), and one whose files mix types
    pt = request["pt"]
    third = (len(pt) + 2) // 3
    for i in range(3):
        pq.write_table(pa.Table.from_pylist(pt[i * third : (i + 1) * third]), path(f"pt-shards/train-{i:05d}-of-00003.parquet"))
        jsonl(f"pt-jsonl-shards/part-{i}.jsonl", pt[i * third : (i + 1) * third])
    jsonl("mixed/a.jsonl", pt[:2])
    pq.write_table(pa.Table.from_pylist(pt[2:]), path("mixed/b.parquet"))
    print(json.dumps(written))


if __name__ == "__main__":
    main()
