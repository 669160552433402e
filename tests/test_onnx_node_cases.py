"""ONNX's own backend node test cases, run through hwgen's frontend checks and its
reference interpreter.

The onnx wheel generates the cases (``onnx.backend.test.case.node.collect_testcases``);
each is a one-node model with input/output data, at the opset its op was last changed
(up to the installed onnx's newest, :data:`hwgen.frontend.MAX_OPSET`). For every op hwgen
supports, every case must

* pass the frontend's opset and op-version check (:func:`hwgen.frontend.check_ops`) --
  cases below :data:`~hwgen.frontend.MIN_OPSET` skip this (the frontend refuses such
  models whole) and only run the node -- and then give the expected numbers; or
* be refused with UnsupportedOpError (an exotic dtype or attribute): "refused".

A wrong number fails. Coverage cannot silently drop: each op's passing count must reach
the floor recorded in ``onnx_node_case_floors.json`` (checked per op, so it holds under
xdist too), and every supported op with cases has a floor. After an improvement, record
the new counts with ``python tests/test_onnx_node_cases.py --record``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from hwgen.errors import ModelError, UnsupportedOpError
from hwgen.frontend import MAX_OPSET, MIN_OPSET, check_ops
from hwgen.interp import run_node
from hwgen.interp.op_versions import OP_VERSIONS, schema_version
from hwgen.interp.registry import supported_ops
from hwgen.ir import Node

FLOORS_PATH = Path(__file__).with_name("onnx_node_case_floors.json")


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


def _floors() -> dict[str, int]:
    return json.loads(FLOORS_PATH.read_text()) if FLOORS_PATH.exists() else {}


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


def _exotic(x) -> bool:
    """float8/bfloat16/int4/int2 custom dtypes, strings."""
    x = np.asarray(x)
    return x.dtype.kind in "VOUS" or bool(x.dtype.names) or x.dtype.type.__module__ != "numpy"


#: (rtol, atol) per float dtype: float32 rounding for float32/64; one unit in the last
#: place (2**-10 relative, 2**-14 = the smallest normal absolute) for float16, whose
#: expected values ONNX computes in float32 and rounds once.
_TOL = {np.dtype(np.float16): (2.0**-10, 2.0**-14)}


def _run_case(case) -> str:
    """'pass' | 'refused'; raises AssertionError on a wrong number."""
    model = case.model
    if model.functions or any(a.type in (a.GRAPH, a.GRAPHS) for a in model.graph.node[0].attribute):
        return "refused"
    opset = _opset(model)
    if opset >= MIN_OPSET:
        try:
            check_ops(model, case.name)
        except UnsupportedOpError:
            return "refused"
        except ModelError as e:  # an opset the frontend refuses: a coverage bug, not a skip
            raise AssertionError(f"{case.name}: the frontend refuses opset {opset}: {e}") from e
    try:
        node = _to_node(model)
    except UnsupportedOpError:
        return "refused"
    names = [i.name for i in model.graph.input]
    for inputs, outputs in case.data_sets:
        inputs, outputs = [_array(x) for x in inputs], [_array(x) for x in outputs]
        if any(isinstance(x, (list, dict)) for x in list(inputs) + list(outputs)):
            return "refused"  # sequences / maps
        if any(_exotic(x) for x in list(inputs) + list(outputs)):
            return "refused"
        feed = dict(zip(names, inputs))
        args = [feed.get(i) if i else None for i in node.inputs]
        try:
            got = run_node(node, args, opset)
        except UnsupportedOpError:
            return "refused"
        assert len(got) >= len([o for o in node.outputs if o]), f"{case.name}: {len(got)} outputs"
        got = [g_ for g_, name in zip(got, node.outputs) if name]  # the case lists named outputs only
        for k, (g_, w) in enumerate(zip(got, outputs)):
            w = np.asarray(w)
            g_ = np.asarray(g_)
            assert g_.shape == w.shape, f"{case.name}: shape {g_.shape} != {w.shape}"
            assert g_.dtype == w.dtype, f"{case.name}: dtype {g_.dtype} != {w.dtype}"
            if w.dtype.kind in "biu":
                np.testing.assert_array_equal(g_, w, err_msg=case.name)
            else:
                rtol, atol = _TOL.get(w.dtype, (1e-4, 1e-5))
                if _printed_to_4_decimals(w) and not np.allclose(g_, w, rtol=rtol, atol=atol):
                    w = _onnxruntime_output(case, feed, k)
                np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol, err_msg=case.name)
    return "pass"


def _printed_to_4_decimals(w: np.ndarray) -> bool:
    """Some cases (AveragePool's ceil-mode window, GridSample bicubic, RoiAlign) list
    hand-rounded values with 4 decimals, which a 1e-4 relative tolerance cannot judge."""
    return w.size > 0 and bool(np.all(np.round(w.astype(np.float64), 4).astype(w.dtype) == w))


def _onnxruntime_output(case, feed: dict, index: int) -> np.ndarray:
    """The case's model run by onnxruntime: the oracle where the case's own data are rounded."""
    import onnxruntime as ort

    sess = ort.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[index]


def count(op: str) -> tuple[int, int, list[str]]:
    """(passed, refused, names of the refused cases) of one op."""
    passed, refused = 0, []
    for case in CASES[op]:
        if _run_case(case) == "pass":
            passed += 1
        else:
            refused.append(case.name)
    return passed, len(refused), refused


@pytest.mark.parametrize("op", OPS)
def test_node_cases(op):
    passed, refused, names = count(op)
    print(f"{op}: {passed} passed, {refused} refused")
    floor = _floors().get(op)
    assert floor is not None, f"{op} has no coverage floor: record one (python {__file__} --record)"
    assert passed >= floor, f"{op}: {passed} cases pass, below the recorded floor {floor}; refused: {names}"


def test_every_op_has_a_floor():
    floors = _floors()
    assert sorted(floors) == OPS, f"floors for ops without cases or no floor: {sorted(set(floors) ^ set(OPS))}"
    assert sum(floors.values()) > 0


def test_newest_opset_cases_are_accepted():
    """Every supported op's cases at the installed onnx's newest version get past the
    frontend (the old MAX_OPSET = 23 refused Reshape, Transpose, Shape, Cast, ... at 24+)."""
    newer = [c for op in OPS for c in CASES[op] if _opset(c.model) > 23]
    assert newer, "the installed onnx has no node cases above opset 23"
    for case in newer:
        opset = check_ops(case.model, case.name)
        assert 23 < opset <= MAX_OPSET


def test_op_versions_cover_installed_onnx():
    """The version table names, for each supported op, the newest version of the
    installed onnx: an onnx upgrade that versions an op again fails here until its
    changes are implemented (or refused) and the table is updated."""
    stale = {
        op: (OP_VERSIONS.get(op), schema_version(op, MAX_OPSET))
        for op in supported_ops()
        if OP_VERSIONS.get(op) != schema_version(op, MAX_OPSET)
    }
    assert not stale, f"op: (table, installed onnx) differ: {stale}"


def _record() -> None:  # pragma: no cover - a maintenance command
    floors, total_p, total_r = {}, 0, 0
    for op in OPS:
        p, r, _ = count(op)
        floors[op] = p
        total_p, total_r = total_p + p, total_r + r
    FLOORS_PATH.write_text(json.dumps(floors, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(floors)} ops: {total_p} passed, {total_r} refused -> {FLOORS_PATH}")


if __name__ == "__main__":  # pragma: no cover
    if "--record" in sys.argv:
        _record()
