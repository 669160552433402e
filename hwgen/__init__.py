"""hwgen: ONNX -> one hardware IR -> FPGA accelerator or 4f optical correlator.

Python API::

    graph = hwgen.load("model.onnx")            # or a bundled model's name
    outs = hwgen.interpret(graph, {"image": x})  # float, ONNX semantics
    outs = hwgen.interpret(graph, {"image": x}, numerics="fixed")  # bit-accurate
    graph = hwgen.canonicalize(graph)            # fold, fuse LayerNorm/GELU/Attention/MoE
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import HwgenError, ModelError, TargetError, UnsupportedOpError
from .frontend import load
from .interp import interpret
from .ir import Graph, Node, Tensor
from .passes import canonicalize

__all__ = [
    "load",
    "interpret",
    "canonicalize",
    "Graph",
    "Node",
    "Tensor",
    "HwgenError",
    "ModelError",
    "TargetError",
    "UnsupportedOpError",
    "__version__",
]
