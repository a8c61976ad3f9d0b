"""Parses Triton config.pbtxt files with Triton's own ModelConfig protobuf.

Usage: triton_config_check.py CONFIG.pbtxt...
Prints one JSON line per file: name, platform, max_batch_size, dynamic_batching, and the inputs and
outputs as {name, data_type, dims, reshape} (reshape null when absent). Exits non-zero if any file
does not parse.
"""

import json
import sys

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


def tensors(entries, type_enum):
    out = []
    for t in entries:
        out.append(
            {
                "name": t.name,
                "data_type": type_enum.Name(t.data_type),
                "dims": list(t.dims),
                "reshape": list(t.reshape.shape) if t.HasField("reshape") else None,
            }
        )
    return out


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            config = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
        print(
            json.dumps(
                {
                    "name": config.name,
                    "platform": config.platform,
                    "max_batch_size": config.max_batch_size,
                    "dynamic_batching": config.HasField("dynamic_batching"),
                    "input": tensors(config.input, model_config_pb2.DataType),
                    "output": tensors(config.output, model_config_pb2.DataType),
                }
            )
        )


if __name__ == "__main__":
    main()
