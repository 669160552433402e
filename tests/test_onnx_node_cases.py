"""ONNX's own backend node test cases, run through hwgen's reference interpreter.

The onnx wheel generates the cases (``onnx.backend.test.case.node.collect_testcases``);
each is a one-node model with input/output data. For every op hwgen supports, every case
must give the expected numbers, or be refused with UnsupportedOpError (an exotic dtype
or attribute), which counts as skipped. A wrong number fails.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

import hwgen
from hwgen.errors import UnsupportedOpError
from hwgen.interp import run_node
from hwgen.interp.registry import supported_ops
from hwgen.ir import Node

_COUNTS: dict[str, list[int]] = {}


def _cases_by_op():
    from onnx.backend.test.case.node import collect_testcases

    by_op = defaultdict(list)
    for case in collect_testcases(None):
        nodes = case.model.graph.node
        if len(nodes) == 1:
            by_op[nodes[0].op_type].append(case)
    return by_op


CASES = _cases_by_op()
OPS = sorted(op for op in supported_ops() if op in CASES)


def _opset(model) -> int:
    return max((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), default=0)


def _to_node(model):
    from hwgen.frontend import _attr_value

    n = model.graph.node[0]
    attrs = {a.name: _attr_value(a, "case", n.name) for a in n.attribute}
    return Node(n.op_type, n.name or n.op_type, list(n.input), list(n.output), attrs)


def _array(x):
    """Case data come as arrays or as TensorProtos (Cast cases)."""
    import onnx
    from onnx import numpy_helper

    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x


def _run_case(case):
    """'pass' | 'skip' (refused); raises AssertionError on a wrong number."""
    model = case.model
    if model.functions or any(a.type in (a.GRAPH, a.GRAPHS) for a in model.graph.node[0].attribute):
        return "skip"
    try:
        node = _to_node(model)
    except UnsupportedOpError:
        return "skip"
    names = [i.name for i in model.graph.input]
    for inputs, outputs in case.data_sets:
        inputs, outputs = [_array(x) for x in inputs], [_array(x) for x in outputs]
        if any(isinstance(x, (list, dict)) for x in inputs) or any(isinstance(x, (list, dict)) for x in outputs):
            return "skip"  # sequences / maps
        if any(np.asarray(x).dtype.kind in "VOUS" or np.asarray(x).dtype.names or np.asarray(x).dtype.type.__module__ != "numpy" for x in list(inputs) + list(outputs)):
            return "skip"  # float8/bfloat16/int4 custom dtypes, strings
        if any(np.asarray(x).dtype == np.float16 for x in list(inputs) + list(outputs)):
            return "skip"
        feed = dict(zip(names, inputs))
        args = [feed.get(i) if i else None for i in node.inputs]
        try:
            got = run_node(node, args, _opset(model))
        except UnsupportedOpError:
            return "skip"
        for g_, w in zip(got, outputs):
            w = np.asarray(w)
            g_ = np.asarray(g_)
            assert g_.shape == w.shape, f"{case.name}: shape {g_.shape} != {w.shape}"
            assert g_.dtype == w.dtype, f"{case.name}: dtype {g_.dtype} != {w.dtype}"
            if w.dtype.kind in "biu":
                np.testing.assert_array_equal(g_, w, err_msg=case.name)
            else:
                np.testing.assert_allclose(g_, w, rtol=1e-4, atol=1e-5, err_msg=case.name)
    return "pass"


@pytest.mark.parametrize("op", OPS)
def test_node_cases(op):
    passed = skipped = 0
    for case in CASES[op]:
        if _run_case(case) == "pass":
            passed += 1
        else:
            skipped += 1
    _COUNTS[op] = [passed, skipped]
    print(f"{op}: {passed} passed, {skipped} skipped")
    assert passed + skipped == len(CASES[op])


def test_node_cases_summary():
    """Printed last: per-op and total counts (run with -s to see them)."""
    if not _COUNTS:
        pytest.skip("per-op tests did not run in this process (e.g. under xdist)")
    total_p = sum(p for p, _ in _COUNTS.values())
    total_s = sum(s for _, s in _COUNTS.values())
    print(f"\nONNX node cases over {len(_COUNTS)} ops: {total_p} passed, {total_s} skipped")
    assert total_p > 0
