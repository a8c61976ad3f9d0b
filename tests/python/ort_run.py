"""Runs an ONNX model in ONNX Runtime on inputs from a JSON file; writes the outputs as JSON.

Usage: ort_run.py MODEL INPUTS_JSON OUTPUTS_JSON
Each JSON file maps a tensor name to {"dtype": "int64"|"float32", "shape": [...], "data": [...]}.
One intra-op thread, all graph optimisations on (ONNX Runtime's default).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inputs_path, outputs_path = sys.argv[1:4]
    with open(inputs_path) as f:
        raw = json.load(f)
    feeds = {
        name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"]) for name, t in raw.items()
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    out = {
        name: {"dtype": str(r.dtype), "shape": list(r.shape), "data": r.reshape(-1).tolist()}
        for name, r in zip(names, results)
    }
    with open(outputs_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
