"""Bit-level arithmetic of the hardware: the one definition that the reference
interpreter (``numerics="fixed"``) and the Amaranth units share.

Importing this package registers the fixed-point kernels with the interpreter.
"""

from . import kernels_attention  # noqa: F401
from . import kernels  # noqa: F401,E402
from . import kernels_linear  # noqa: F401,E402
from . import moe  # noqa: F401,E402
