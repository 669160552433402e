"""The sweep notebooks run top to bottom (nbclient, python3 kernel) at their CI budget
(HWGEN_NOTEBOOK_SMALL=1) and end with the answer in a plot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name, words", [
    ("fpga_array_precision.ipynb", ["fastest that fits", "Edge-MoE"]),
    ("optical_bits_framerate.ipynb", ["accuracy within", "beats the CPU"]),
])
def test_notebook_runs_and_ends_with_its_answer_plot(name, words, tmp_path, monkeypatch):
    monkeypatch.setenv("HWGEN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("HWGEN_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "**Question.**" in nb.cells[0].source
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = nb.cells[-1]
    assert last.cell_type == "code"
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert all(w in text for w in words), text
    assert any("image/png" in o.get("data", {}) for o in last.outputs), "the last cell shows no plot"
    assert (tmp_path / name.removesuffix(".ipynb") / "results.parquet").is_file()
