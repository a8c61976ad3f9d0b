"""Loads one ONNX model in ONNX Runtime from its path (so external data is read), runs it once, and
writes the session load time, the run time and the `probs` output as JSON.

Usage: ort_timed.py MODEL FEEDS_JSON OUT_JSON
FEEDS_JSON maps input names to {"dtype": "int64"|"float32", "shape": [...], "data": [...]}.
One intra-op thread, CPU provider, all graph optimisations (ONNX Runtime's default).
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, feeds_path, out_path = sys.argv[1:4]
    with open(feeds_path) as f:
        feeds = {
            name: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])
            for name, t in json.load(f).items()
        }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    t0 = time.perf_counter()
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    t1 = time.perf_counter()
    (probs,) = session.run(["probs"], feeds)
    t2 = time.perf_counter()
    with open(out_path, "w") as f:
        json.dump({"load_s": t1 - t0, "run_s": t2 - t1, "probs": probs.reshape(-1).tolist()}, f)


if __name__ == "__main__":
    main()
