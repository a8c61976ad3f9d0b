"""Checks ONNX models with the official checker (full_check) and strict shape inference.

Usage: check_model.py MODEL [MODEL ...]; prints one line per model that passes, and one line per
model that fails to stderr (every model is checked, so one call reports every failure); exits 1
if any model fails. Also prints the declared input and output shapes after inference, so a test
can see dynamic dims.
"""
import sys

import onnx
from onnx import shape_inference


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check(path: str) -> str:
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    ins = {i.name: dims(i) for i in inferred.graph.input}
    outs = {o.name: dims(o) for o in inferred.graph.output}
    return f"ok {path} ir_version={model.ir_version} opset={model.opset_import[0].version} inputs={ins} outputs={outs}"


def main() -> None:
    failed = 0
    for path in sys.argv[1:]:
        try:
            print(check(path))
        except Exception as e:  # noqa: BLE001 - report every model's failure, then exit 1
            failed += 1
            print(f"FAIL {path}: {type(e).__name__}: {e}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(sys.argv) - 1} models failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
