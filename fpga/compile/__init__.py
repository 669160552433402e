"""The FPGA compiler: hardware graph -> engine ops -> buffer plan -> programs + memory image.

``compile_graph(graph, config)`` (:mod:`fpga.compile.compiler`) is the entry point; the
``fpga`` hwgen target (:mod:`fpga.compile.target`) writes its result to a folder.
"""

from .compiler import Compiled, compile_graph

__all__ = ["compile_graph", "Compiled"]
