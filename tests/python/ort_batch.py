"""Runs many ONNX models in ONNX Runtime in one Python start; writes every output as JSON.

Usage: ort_batch.py MANIFEST_JSON OUTPUTS_JSON
The manifest is a list of {"name": ..., "model": PATH, "inputs": {tensor name: tensor}}; a tensor
is {"dtype": "int64"|"float32", "shape": [...], "data": [...]} (row-major). The outputs file maps
each job's name to {"<level>": {output name: tensor}} for the optimisation levels "disabled" and
"all" (ONNX Runtime's default), or to {"error": message} when the session fails to load or run.
One intra-op thread, CPU provider.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def run(model: str, feeds: dict, level) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = level
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        name: {"dtype": str(r.dtype), "shape": list(r.shape), "data": r.reshape(-1).tolist()}
        for name, r in zip(names, results)
    }


def main() -> None:
    manifest_path, outputs_path = sys.argv[1:3]
    with open(manifest_path) as f:
        jobs = json.load(f)
    out = {}
    for job in jobs:
        feeds = {
            name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])
            for name, t in job["inputs"].items()
        }
        try:
            out[job["name"]] = {level: run(job["model"], feeds, v) for level, v in LEVELS.items()}
        except Exception as e:  # noqa: BLE001 - report per job, the caller names the case
            out[job["name"]] = {"error": f"{type(e).__name__}: {e}"}
    with open(outputs_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
