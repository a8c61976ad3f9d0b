"""Checks an ONNX model with the official checker (full_check) and strict shape inference.

Usage: check_model.py MODEL [MODEL ...]; prints one line per model, exits 1 on the first failure.
Also prints the declared input and output shapes after inference, so a test can see dynamic dims.
"""
import sys

import onnx
from onnx import shape_inference


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main() -> None:
    for path in sys.argv[1:]:
        onnx.checker.check_model(path, full_check=True)
        model = onnx.load(path)
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        ins = {i.name: dims(i) for i in inferred.graph.input}
        outs = {o.name: dims(o) for o in inferred.graph.output}
        print(f"ok {path} ir_version={model.ir_version} opset={model.opset_import[0].version} inputs={ins} outputs={outs}")


if __name__ == "__main__":
    main()
