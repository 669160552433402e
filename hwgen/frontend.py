"""ONNX frontend: read a model file, check it, bind its shapes, build the IR.

``load(path_or_name, batch=1)`` returns a :class:`hwgen.ir.Graph` in which every tensor
has a concrete shape and dtype. Everything that can be wrong with a model file is
reported as :class:`hwgen.errors.ModelError` with the file, and where it applies the
node and op, in one line.

Shapes come from two sources: ONNX shape inference (with data propagation) for the
graph inputs, and then one run of the float reference interpreter on a deterministic
sample input, which gives every intermediate tensor its exact shape and dtype whatever
the exporter did. Tensors whose shape depends on the data (downstream of ``NonZero``, as
in sparse-dispatch MoE exports) are marked ``dynamic``; the MoE pass removes them.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
from onnx.defs import onnx_opset_version

from .errors import HwgenError, ModelError, UnsupportedOpError
from .ir import Graph, Node, Tensor
from .interp.op_versions import version_problem
from .interp.registry import MAX_TENSOR_BYTES, supported_ops

__all__ = ["load", "from_onnx", "check_ops", "resolve_model", "bundled_models", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET = 13
#: The newest default-domain opset of the installed onnx: every op version up to it is
#: implemented or refused by name (:mod:`hwgen.interp.op_versions`).
MAX_OPSET = onnx_opset_version()
#: Largest model file hwgen reads (protobuf itself stops at 2 GiB).
MAX_FILE_BYTES = 2 << 30
#: ONNX ops whose output shape depends on the values of their inputs.
_DATA_DEPENDENT = {"NonZero", "Unique", "Compress", "NonMaxSuppression"}
_DEFAULT_DOMAINS = ("", "ai.onnx")
_BATCH_NAMES = {"batch", "batch_size", "n", "b", "n_batch", "batchsize", "s0"}


def bundled_models() -> dict[str, Path]:
    """Name -> path of the ONNX models shipped in ``hwgen/data/models``."""
    root = resources.files("hwgen") / "data" / "models"
    try:
        return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".onnx")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def resolve_model(path_or_name: str | os.PathLike) -> Path:
    """A model path, or the name of a bundled model, -> the path of an ONNX file."""
    p = Path(path_or_name)
    if p.exists():
        if p.is_dir():
            raise ModelError(f"{p}: is a folder, not an ONNX file")
        return p
    name = str(path_or_name)
    shipped = bundled_models()
    if name in shipped:
        return shipped[name]
    for ep in entry_points(group="hwgen.model_sources"):
        try:
            found = ep.load()(name)
        except ImportError:
            continue  # that source needs an extra (e.g. torch) that is not installed
        except HwgenError:
            raise
        except Exception as e:
            raise ModelError(f"{name}: model source {ep.name!r} failed: {type(e).__name__}: {e}") from e
        if found is not None:
            return Path(found)
    names = ", ".join(sorted(shipped)) or "(none)"
    raise ModelError(f"{name}: no such file, and not a bundled model (bundled: {names})")


def load(path_or_name: str | os.PathLike, batch: int = 1) -> Graph:
    """Load an ONNX model (file path or bundled name) into the IR.

    Parameters
    ----------
    batch : int
        Value bound to a dynamic batch dimension (the first dimension of an input, or
        one named like ``batch``). Other dynamic dimensions are an error.
    """
    import onnx

    path = resolve_model(path_or_name)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelError(f"{path}: file of {size / 2**30:.1f} GiB is larger than the 2 GiB ONNX protobuf limit")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})") from e
    if not model.HasField("graph") or (len(model.graph.node) == 0 and len(model.graph.output) == 0):
        raise ModelError(f"{path}: not an ONNX model (no graph in the file)")
    _load_external_data(model, path)
    return from_onnx(model, batch=batch, source=str(path))


def from_onnx(model, batch: int = 1, source: str = "<memory>") -> Graph:
    """Build the IR from an in-memory ``onnx.ModelProto`` (external data already loaded)."""
    import onnx

    if not isinstance(batch, int) or batch < 1:
        raise ModelError(f"{source}: batch must be a positive integer, not {batch!r}")
    if len(model.functions):
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as e:
            raise ModelError(f"{source}: cannot inline the model's local functions: {_first_line(e)}") from e
    _check_text_fields(model, source)
    # hwgen's own structural checks first: their messages name the node and the op
    opset = check_ops(model, source)
    g = Graph(model.graph.name or Path(source).stem, opset=opset, source=source)
    _add_initializers(g, model, source)
    _add_inputs(g, model, batch, source)
    _add_nodes(g, model, source)
    g.outputs = [o.name for o in model.graph.output]
    try:
        g.toposort()
    except ValueError as e:
        raise ModelError(f"{source}: {e}") from e
    _check_defined(g, source)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"{source}: fails the ONNX checker: {_first_line(e)}") from e
    _infer_shapes(g, source)
    return g


# --- helpers --------------------------------------------------------------------------
def _check_text_fields(message, source: str, path: str = "model") -> None:
    """Refuse a model whose protobuf ``string`` fields are not valid UTF-8.

    ONNX's schema is proto2, so the protobuf runtime hands a corrupted name, op type or
    domain back as ``bytes`` instead of refusing the file; every later message would
    then fail on it. Walks every set field (initializer payloads are ``bytes`` fields
    and are not touched).
    """
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        repeated = field.is_repeated
        values = value if repeated else (value,)
        if field.type == FieldDescriptor.TYPE_STRING:
            for i, v in enumerate(values):
                if isinstance(v, bytes):
                    where = f"{path}.{field.name}" + (f"[{i}]" if repeated else "")
                    raise ModelError(
                        f"{source}: corrupted model: {where} is not valid UTF-8 text ({v[:40]!r})"
                    )
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            for i, v in enumerate(values):
                _check_text_fields(v, source, f"{path}.{field.name}" + (f"[{i}]" if repeated else ""))


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def check_ops(model, source: str = "<memory>") -> int:
    """The model's default-domain opset, after checking that it is in
    ``MIN_OPSET..MAX_OPSET`` and that the interpreter implements every node's op at that
    opset (:mod:`hwgen.interp.op_versions`). Raises ModelError / UnsupportedOpError."""
    opset = _default_opset(model, source)
    _check_ops(model, source, opset)
    return opset


def _default_opset(model, source: str) -> int:
    opset = None
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            opset = int(imp.version)
    if opset is None:
        raise ModelError(f"{source}: the model imports no default-domain (ai.onnx) opset")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(
            f"{source}: opset {opset} is not supported; hwgen reads opsets {MIN_OPSET} to {MAX_OPSET} "
            f"(convert with onnx.version_converter.convert_version(model, {min(max(opset, MIN_OPSET), MAX_OPSET)}))"
        )
    return opset


def _load_external_data(model, path: Path) -> None:
    """Load tensors stored beside the model, refusing any location outside its folder."""
    from onnx import external_data_helper

    base = path.resolve().parent
    tensors = [t for t in external_data_helper._get_all_tensors(model) if external_data_helper.uses_external_data(t)]
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = (base / loc).resolve()
        if not loc or os.path.isabs(loc) or base not in target.parents:
            raise ModelError(
                f"{path}: initializer {t.name!r} points at external data {loc!r} outside the model's folder "
                f"(refused: path traversal)"
            )
        if not target.is_file():
            raise ModelError(f"{path}: initializer {t.name!r}: external data file {loc!r} is missing")
        offset, length = int(info.get("offset", 0) or 0), int(info.get("length", 0) or 0)
        fsize = target.stat().st_size
        if offset < 0 or length < 0 or offset + length > fsize:
            raise ModelError(
                f"{path}: initializer {t.name!r}: external data range [{offset}, {offset + length}) "
                f"exceeds {loc!r} ({fsize} bytes)"
            )
    if tensors:
        try:
            external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as e:
            raise ModelError(f"{path}: cannot read external data: {_first_line(e)}") from e


def _check_ops(model, source: str, opset: int) -> None:
    known = set(supported_ops())
    bad: list[str] = []
    for n in model.graph.node:
        if n.domain not in _DEFAULT_DOMAINS or n.op_type not in known:
            bad.append(f"node {n.name or '(unnamed)'!r} op {(n.domain + '.' if n.domain else '') + n.op_type!r}")
            continue
        why = version_problem(n.op_type, opset)
        if why is not None:
            raise UnsupportedOpError(f"{source}: node {n.name or '(unnamed)'!r}: {why}")
        for a in n.attribute:
            if a.type in (a.GRAPH, a.GRAPHS):
                bad.append(f"node {n.name or '(unnamed)'!r} op {n.op_type!r} (control flow with subgraphs)")
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise UnsupportedOpError(
            f"{source}: unsupported {bad[0]}{more}; supported ops: {', '.join(sorted(known))}"
        )


def _tensor_to_array(t, source: str, what: str) -> np.ndarray:
    from onnx import numpy_helper

    n = 1
    for d in t.dims:
        n *= int(d)
    if n * 8 > MAX_TENSOR_BYTES * 2:
        raise ModelError(f"{source}: {what} {t.name!r} of shape {list(t.dims)} is absurdly large")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:
        raise ModelError(f"{source}: {what} {t.name!r} cannot be read: {_first_line(e)}") from e


def _add_initializers(g: Graph, model, source: str) -> None:
    for t in model.graph.initializer:
        arr = _tensor_to_array(t, source, "initializer")
        g.add_tensor(Tensor(t.name, tuple(int(d) for d in arr.shape), arr.dtype, arr))
    for st in model.graph.sparse_initializer:
        raise ModelError(f"{source}: sparse initializer {st.values.name!r} is not supported")


def _add_inputs(g: Graph, model, batch: int, source: str) -> None:
    from onnx import helper

    for vi in model.graph.input:
        if vi.name in g.tensors:  # IR < 4 lists initializers as inputs too
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"{source}: input {vi.name!r} is not a tensor (sequences/maps are not supported)")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception as e:
            raise ModelError(f"{source}: input {vi.name!r} has unsupported element type {tt.elem_type}") from e
        if not tt.HasField("shape"):
            raise ModelError(f"{source}: input {vi.name!r} has no shape; hwgen needs static input shapes")
        shape = []
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif axis == 0 or d.dim_param.lower() in _BATCH_NAMES:
                shape.append(batch)
            else:
                label = f" ({d.dim_param!r})" if d.dim_param else ""
                raise ModelError(
                    f"{source}: input {vi.name!r} dimension {axis}{label} is dynamic and not a batch dimension; "
                    f"hwgen needs static shapes: re-export with a fixed size"
                )
        t = Tensor(vi.name, tuple(shape), dtype)
        if t.nbytes > MAX_TENSOR_BYTES:
            raise ModelError(f"{source}: input {vi.name!r} of shape {shape} is absurdly large")
        g.add_tensor(t)
        g.inputs.append(vi.name)


def _attr_value(a, source: str, node_name: str):
    from onnx import helper, numpy_helper

    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    if a.type == a.TENSOR:
        return _tensor_to_array(v, source, f"node {node_name!r} attribute")
    if a.type == a.TENSORS:
        return [numpy_helper.to_array(x) for x in v]
    if a.type in (a.SPARSE_TENSOR, a.SPARSE_TENSORS, a.TYPE_PROTO, a.TYPE_PROTOS):
        raise UnsupportedOpError(f"{source}: node {node_name!r}: attribute {a.name!r} of this type is not supported")
    return v


def _add_nodes(g: Graph, model, source: str) -> None:
    seen: set[str] = set()
    for idx, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{idx}"
        while name in seen:
            name = f"{name}_{idx}"
        seen.add(name)
        attrs = {a.name: _attr_value(a, source, name) for a in n.attribute}
        g.nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs, ""))


def _check_defined(g: Graph, source: str) -> None:
    defined = set(g.inputs) | {k for k, t in g.tensors.items() if t.is_const}
    for n in g.nodes:
        for i in n.inputs:
            if i and i not in defined:
                raise ModelError(
                    f"{source}: node {n.name!r} ({n.op}) reads {i!r}, which no node, initializer or graph input "
                    f"defines (missing initializer?)"
                )
        defined.update(o for o in n.outputs if o)
    for o in g.outputs:
        if o not in defined:
            raise ModelError(f"{source}: graph output {o!r} is produced by no node")


def sample_inputs(g: Graph, seed: int = 0, int_value: int = 0) -> dict[str, np.ndarray]:
    """Deterministic sample values for the graph inputs: standard normal floats, and
    ``int_value`` in every integer/bool input (e.g. a task id)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in g.inputs:
        t = g.tensors[name]
        if np.issubdtype(t.dtype, np.floating):
            out[name] = rng.standard_normal(t.shape).astype(t.dtype)
        else:
            out[name] = np.full(t.shape, int_value, dtype=t.dtype)
    return out


def _infer_shapes(g: Graph, source: str) -> None:
    """Give every tensor its concrete shape and dtype by one sample run."""
    from .interp import interpret

    try:
        env = interpret(g, sample_inputs(g), keep_all=True)
    except HwgenError as e:
        raise type(e)(f"{source}: {e}") from e
    dynamic: set[str] = set()
    for n in g.nodes:
        if n.op in ("ScatterND", "ScatterElements"):  # output shape = data input's shape
            dyn_in = n.inputs[0] in dynamic
        else:
            dyn_in = any(i in dynamic for i in n.inputs)
        is_dyn = n.op in _DATA_DEPENDENT or dyn_in
        for o in n.outputs:
            if not o:
                continue
            v = np.asarray(env[o])
            g.tensors[o] = Tensor(o, tuple(int(d) for d in v.shape), v.dtype, None, None, dynamic=is_dyn)
            if is_dyn:
                dynamic.add(o)
