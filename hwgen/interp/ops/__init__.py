"""Float reference implementations of ONNX ops, one family per module.

Importing this package fills :data:`hwgen.interp.registry.FLOAT_OPS`.
"""

from . import elementwise, index, nn, onnx_reference, reduce, shape  # noqa: F401
