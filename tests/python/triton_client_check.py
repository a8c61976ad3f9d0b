"""Drives uie-serve with Triton's own client (tritonclient.http), exactly as it would call Triton.

Usage: triton_client_check.py URL MODEL REQUEST_JSON OUT_JSON

REQUEST_JSON: {"inputs": {name: {"dtype": "int64"|"float32", "shape": [...], "data": [...]}},
"hist_len_max": L, "categorical": a categorical input name}. Writes OUT_JSON with the readiness checks, the model metadata, `probs` from a
binary-data infer and a JSON-data infer, each malformed request's status and message, and `probs`
of a good request sent after them.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {"int64": ("INT64", np.int64), "float32": ("FP32", np.float32)}


def make_inputs(arrays, binary=True, override=None):
    override = override or {}
    inputs = []
    for name, arr in arrays.items():
        datatype = override.get(name, DTYPES[str(arr.dtype)][0])
        i = httpclient.InferInput(name, list(arr.shape), datatype)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    return inputs


def infer(client, model, inputs):
    out = [httpclient.InferRequestedOutput("probs", binary_data=False)]
    r = client.infer(model, inputs, outputs=out)
    return r.as_numpy("probs")


def main():
    url, model, request_path, out_path = sys.argv[1:5]
    with open(request_path) as f:
        request = json.load(f)
    arrays = {
        name: np.array(t["data"], dtype=DTYPES[t["dtype"]][1]).reshape(t["shape"])
        for name, t in request["inputs"].items()
    }
    L = request["hist_len_max"]
    client = httpclient.InferenceServerClient(url=url)
    result = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server": client.get_server_metadata(),
        "metadata": client.get_model_metadata(model),
    }
    probs_binary = infer(client, model, make_inputs(arrays, binary=True))
    probs_json = infer(client, model, make_inputs(arrays, binary=False))
    # No requested outputs: Triton's client asks for binary outputs; JSON ones must still parse.
    default = client.infer(model, make_inputs(arrays)).as_numpy("probs")
    result["probs_binary"] = probs_binary.astype(float).tolist()
    result["probs_json"] = probs_json.astype(float).tolist()
    result["probs_default"] = default.astype(float).tolist()
    result["shape"] = list(probs_binary.shape)

    first = request["categorical"]
    cases = {}

    def bad(case, model_name, arrs, override=None):
        try:
            infer(client, model_name, make_inputs(arrs, override=override))
            cases[case] = {"status": 200, "message": ""}
        except InferenceServerException as e:
            cases[case] = {"status": int(e.status() or 0), "message": e.message()}

    bad("missing_input", model, {k: v for k, v in arrays.items() if k != first})
    # Wrong datatype: a categorical field sent as FP32.
    wrong_type = dict(arrays)
    wrong_type[first] = arrays[first].astype(np.float32)
    bad("wrong_datatype", model, wrong_type)
    # Wrong shape: dense with one column too many.
    wrong_shape = dict(arrays)
    wrong_shape["dense"] = np.concatenate([arrays["dense"], arrays["dense"][:, :1]], axis=1)
    bad("wrong_shape", model, wrong_shape)
    nan = dict(arrays)
    nan["dense"] = arrays["dense"].copy()
    nan["dense"][0, 0] = np.nan
    bad("nan_dense", model, nan)
    above = dict(arrays)
    above["hist_len"] = np.full_like(arrays["hist_len"], L + 1)
    bad("hist_len_above_L", model, above)
    extra = dict(arrays)
    extra["colour"] = arrays[first].copy()
    bad("extra_input", model, extra)
    bad("unknown_model", "no_such_model", arrays)
    result["errors"] = cases
    result["model_ready_unknown"] = client.is_model_ready("no_such_model")

    result["probs_after"] = infer(client, model, make_inputs(arrays)).astype(float).tolist()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
