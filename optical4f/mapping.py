"""IR graph -> FramePlan: which Conv nodes run on the optics (and how their channels and
kernels go into frames) and which in electronics; everything else is a host op with its
own work count.

The mapper (:func:`plan_graph`, ``policy``) decides per Conv from the cost model and
records a :class:`MapDecision` with the reason:

* ``auto`` (default): a conv that is a matrix product in disguise -- a 1x1 conv (a
  channel matmul per pixel) or a conv whose stride equals its kernel with no padding (a
  reshape plus a matmul: the optics would compute every shift and discard all but
  ``1/(sh*sw)`` of them) -- goes where its latency is lower; every other conv (a spatial
  correlation, what the 4f system is for) stays on the optics, and its reason says when
  the cost model finds electronics faster;
* ``cost``: every conv where its latency is lower;
* ``optics`` / ``electronics``: every conv there.

Optical latency of a conv: its frames and filter loads on the devices
(:func:`optical4f.cost.layer_cost`); electronic: ``2 x MACs / FLOP/s + output bytes / (B/s)``
(:func:`host_op_work`). A conv in electronics becomes a :class:`HostOp`.

A Conv node becomes one :class:`LayerFrames`: its correlation sets (channels sharing a
kernel list share a Fourier filter, see :mod:`optical4f.conv`), each planned on frames
by :func:`optical4f.conv.set_plan` -- the same planner ``conv2d`` runs, so the frame
counts here are the ones the simulation uses. Whether a Conv's input is signed is not
known statically: it counts as non-negative when produced by Relu/Sigmoid/Softmax or
listed in ``nonneg`` (the target lists graph inputs that are images in [0, 1]).

Every other node is a :class:`HostOp` with a FLOP and a byte count: matrix ops 2 x
MACs (:func:`hwgen.analysis.node_macs`), elementwise ops a few FLOPs per output
element (table below), pure data movement (Transpose, Gather, Concat, Expand, ...) its
output bytes, and views (Reshape, Shape, Squeeze, Unsqueeze, Identity, Flatten) nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwgen.analysis import node_macs
from hwgen.errors import TargetError
from hwgen.ir import Graph, Node

from .conv import correlation_sets, dilate_kernels, electronic_flops, resolve_padding, set_plan
from .devices import OpticalConfig
from .evaluate import conv_args

__all__ = ["LayerFrames", "HostOp", "FramePlan", "MapDecision", "plan_graph", "host_op_work", "conv_kind",
           "FLOPS_PER_ELEMENT", "MAP_POLICIES"]

MAP_POLICIES = ("auto", "cost", "optics", "electronics")

#: FLOPs per output element of elementwise / normalisation ops (counted, not measured).
FLOPS_PER_ELEMENT = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Neg": 1, "Abs": 1, "Relu": 1, "Max": 1, "Min": 1, "Sign": 1,
    "Sqrt": 4, "Reciprocal": 4, "Pow": 8, "Exp": 8, "Log": 8, "Erf": 10, "Tanh": 10, "Sigmoid": 10,
    "Gelu": 14, "Softmax": 5, "LogSoftmax": 6, "LayerNormalization": 8, "BatchNormalization": 2,
    "Clip": 2, "Where": 1, "Cast": 0, "Equal": 1, "Less": 1, "Greater": 1,
}
_VIEWS = {"Reshape", "Shape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Constant", "Dropout", "Size"}
_NONNEG_PRODUCERS = {"Relu", "Sigmoid", "Softmax", "Abs"}


@dataclass
class LayerFrames:
    """One Conv node on the optics."""

    name: str
    op: str
    in_shape: tuple
    weight_shape: tuple
    out_shape: tuple
    groups: int
    sets: int
    shared_kernels: bool  # channels share one kernel list (ConvShareViT)
    tiles: int            # encoded tiles on the input modulator (signs, bit-planes)
    kernels: int          # encoded kernels on the Fourier filter
    frames: int
    filter_loads: int
    frame_px: int
    tiles_per_frame: int
    kernels_per_frame: int
    input_pixels: int
    filter_pixels: int
    camera_pixels: int
    electronic_flops: int
    macs: int
    x_signed: bool


@dataclass
class HostOp:
    name: str
    op: str
    flops: int
    bytes: int


@dataclass
class MapDecision:
    """Where one Conv runs and why (times in s, energies in J, for one inference of the batch)."""

    name: str
    device: str               # "optics" or "electronics"
    kind: str                 # pointwise | patchify | shared kernels | shared depthwise | depthwise | grouped | dense
    reason: str
    optical_s: float | None   # None: the conv cannot be planned on the optics
    electronic_s: float
    optical_j: float | None
    electronic_j: float
    frames: int = 0
    filter_loads: int = 0


@dataclass
class FramePlan:
    layers: list[LayerFrames] = field(default_factory=list)
    host_ops: list[HostOp] = field(default_factory=list)
    decisions: list[MapDecision] = field(default_factory=list)
    order: list[tuple[str, int]] = field(default_factory=list)  # graph order: ("layer", i) / ("host", i)

    @property
    def frames(self) -> int:
        return sum(l.frames for l in self.layers)

    @property
    def filter_loads(self) -> int:
        return sum(l.filter_loads for l in self.layers)


def host_op_work(graph: Graph, node: Node) -> HostOp:
    """FLOPs and bytes moved of a node run in electronics."""
    outs = [graph.tensors[o] for o in node.outputs if o and o in graph.tensors]
    size = sum(t.size for t in outs)
    nbytes = sum(t.nbytes for t in outs)
    if node.op in _VIEWS:
        return HostOp(node.name, node.op, 0, 0)
    macs = node_macs(graph, node)
    if macs:
        return HostOp(node.name, node.op, 2 * macs, nbytes)
    if node.op.startswith("Reduce"):
        ins = graph.tensors.get(node.inputs[0]) if node.inputs and node.inputs[0] else None
        return HostOp(node.name, node.op, ins.size if ins is not None else size, nbytes)
    return HostOp(node.name, node.op, FLOPS_PER_ELEMENT.get(node.op, 0) * size, nbytes)


def _conv_layer(graph: Graph, node: Node, cfg: OpticalConfig, x_signed: bool) -> LayerFrames:
    if len(node.inputs) < 2 or graph.const(node.inputs[1]) is None:
        raise TargetError(f"node {node.name!r} (Conv): the weights must be constant to sit on the Fourier filter")
    xt = graph.tensors[node.inputs[0]]
    w = np.asarray(graph.const(node.inputs[1]), np.float64)
    if len(xt.shape) != 4 or w.ndim != 4:
        raise TargetError(f"node {node.name!r} (Conv): only 2-D convolutions map to the 4f system (input {xt.shape})")
    args = conv_args(node)
    B, C, H, W = xt.shape
    kd = dilate_kernels(w, args["dilation"])
    khd, kwd = kd.shape[2:]
    pads = resolve_padding(args["padding"], w.shape[2:], args["dilation"], args["stride"])
    hp, wp = H + pads[0] + pads[2], W + pads[1] + pads[3]
    ho, wo = hp - khd + 1, wp - kwd + 1
    sets = correlation_sets(kd, args["groups"])
    frames = loads = tiles = kernels = ipx = fpx = cpx = flops = 0
    n = tpf = kpf = 0
    plans: dict[tuple, object] = {}  # sets of equal size and signs plan alike (1x1 convs: hundreds of sets)
    for ks, members in sets:
        t = B * len(members)
        key = (t, ks.shape[0], bool((ks < 0).any()))
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = set_plan(cfg, (hp, wp), t, ks.shape[0], x_signed, key[2])
        frames += plan.frames
        loads += plan.kernel_chunks
        tiles += plan.tiles
        kernels += plan.kernels
        n, tpf, kpf = max(n, plan.n), max(tpf, plan.tiles_per_frame), max(kpf, plan.kernels_per_frame)
        ipx += plan.frames * plan.n ** 2
        fpx += plan.kernel_chunks * plan.n ** 2
        cpx += plan.frames * plan.n ** 2
        flops += electronic_flops(cfg, plan, t, ks.shape[0], (ho, wo))
    O, cg = w.shape[:2]
    if cg > 1:
        flops += B * O * (cg - 1) * ho * wo
    out_shape = tuple(graph.tensors[node.outputs[0]].shape)
    if len(node.inputs) > 2 and node.inputs[2]:
        flops += int(np.prod(out_shape))
    return LayerFrames(node.name, node.op, tuple(xt.shape), tuple(w.shape), out_shape, args["groups"], len(sets),
                       len(sets) < C, tiles, kernels, frames, loads, n, tpf, kpf, ipx, fpx, cpx, flops,
                       node_macs(graph, node), x_signed)


def conv_kind(graph: Graph, node: Node) -> str:
    """pointwise | patchify | shared kernels | shared depthwise | depthwise | grouped | dense (see module doc)."""
    w = graph.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or w.ndim != 4:
        return "dense"
    args = conv_args(node)
    kh = (w.shape[2] - 1) * args["dilation"][0] + 1
    kw = (w.shape[3] - 1) * args["dilation"][1] + 1
    pads = args["padding"]
    no_pad = pads == "valid" or (not isinstance(pads, str) and not any(pads))
    if kh == kw == 1:
        return "pointwise"
    if tuple(args["stride"]) == (kh, kw) and no_pad:
        return "patchify"
    C = graph.tensors[node.inputs[0]].shape[1]
    g = args["groups"]
    if g == 1:
        return "shared kernels" if C == 1 else "dense"
    if g == C and w.shape[1] == 1:
        shared = len(correlation_sets(np.asarray(w), g)) < C
        return "shared depthwise" if shared else "depthwise"
    return "grouped"


_KIND_TEXT = {
    "pointwise": "1x1 conv = a channel matmul per pixel (no spatial correlation for the lenses to do)",
    "patchify": "stride = kernel, no padding = a reshape plus a matmul (the optics would compute every shift "
                "and keep 1 in stride^2)",
    "shared depthwise": "depthwise with kernels shared across channels: one Fourier filter serves every channel",
    "shared kernels": "one input channel: every tile (image, token) meets the same kernels, one filter per kernel chunk",
    "depthwise": "depthwise, one kernel per channel: a filter load per channel",
    "grouped": "grouped conv: one correlation set per channel",
    "dense": "dense conv: every channel meets every kernel",
}


def _s(t: float) -> str:
    return f"{t:.3g} s"


def _decide(graph: Graph, node: Node, cfg: OpticalConfig, x_signed: bool, policy: str) -> tuple[MapDecision, LayerFrames | None]:
    from .cost import layer_cost  # cost imports this module's types

    kind = conv_kind(graph, node)
    host = host_op_work(graph, node)
    el = cfg.electronics
    t_el = host.flops / el.flops_per_s + host.bytes / el.bytes_per_s
    e_el = host.flops * el.energy_per_flop_j + host.bytes * el.energy_per_byte_j
    layer, why_not = None, ""
    if policy != "electronics":
        try:
            layer = _conv_layer(graph, node, cfg, x_signed)
        except (ValueError, TargetError) as e:
            if policy == "optics":
                raise (e if isinstance(e, TargetError) else TargetError(f"node {node.name!r} (Conv): {e}")) from e
            why_not = str(e)
    if layer is None:
        reason = (f"{_KIND_TEXT[kind]}; " if kind in _KIND_TEXT else "") + (
            f"cannot go on the optics ({why_not})" if why_not else "map=electronics")
        return MapDecision(node.name, "electronics", kind, reason + f"; electronics {host.flops:,} FLOP: {_s(t_el)}",
                           None, t_el, None, e_el), None
    c = layer_cost(layer, cfg)
    t_opt, e_opt = c["latency_s"], c["energy_j"]
    nums = (f"optics {layer.frames:,} frames + {layer.filter_loads:,} filter loads: {_s(t_opt)}; "
            f"electronics {host.flops:,} FLOP: {_s(t_el)}")
    faster = "optics" if t_opt <= t_el else "electronics"
    if policy in ("optics", "electronics"):
        device, verdict = policy, f"map={policy}"
    elif policy == "cost" or kind in ("pointwise", "patchify"):
        device, verdict = faster, f"{faster} is faster" + (" (map=cost)" if policy == "cost" else "")
    else:
        device = "optics"
        verdict = ("optics is faster" if faster == "optics" else
                   f"kept on the optics (a spatial correlation, map=auto), although electronics is "
                   f"{t_opt / max(t_el, 1e-300):.3g}x faster (map=cost moves it)")
    reason = f"{_KIND_TEXT[kind]}; {nums}; {verdict}"
    d = MapDecision(node.name, device, kind, reason, t_opt, t_el, e_opt, e_el, layer.frames, layer.filter_loads)
    return d, (layer if device == "optics" else None)


def plan_graph(graph: Graph, cfg: OpticalConfig, nonneg: set[str] | frozenset = frozenset(),
               policy: str = "auto") -> FramePlan:
    """The FramePlan of ``graph``: each default-domain Conv on the optics or in electronics as
    ``policy`` decides (see module doc), the rest on the host."""
    if policy not in MAP_POLICIES:
        raise TargetError(f"map={policy!r}: the mapping policy must be one of {', '.join(MAP_POLICIES)}")
    producers = graph.producers()
    plan = FramePlan()
    for node in graph.nodes:
        if node.op == "Conv" and not node.domain:
            x = node.inputs[0]
            p = producers.get(x)
            x_signed = not (x in nonneg or (p is not None and p.op in _NONNEG_PRODUCERS))
            decision, layer = _decide(graph, node, cfg, x_signed, policy)
            plan.decisions.append(decision)
            if layer is not None:
                plan.order.append(("layer", len(plan.layers)))
                plan.layers.append(layer)
                continue
        plan.order.append(("host", len(plan.host_ops)))
        plan.host_ops.append(host_op_work(graph, node))
    return plan
