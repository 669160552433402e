"""IR graph -> FramePlan: which Conv nodes, channels and kernels go into which frames;
everything else is a host (electronic) op with its own work count.

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

__all__ = ["LayerFrames", "HostOp", "FramePlan", "plan_graph", "host_op_work", "FLOPS_PER_ELEMENT"]

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
class FramePlan:
    layers: list[LayerFrames] = field(default_factory=list)
    host_ops: list[HostOp] = field(default_factory=list)

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
    for ks, members in sets:
        t = B * len(members)
        plan = set_plan(cfg, (hp, wp), t, ks.shape[0], x_signed, bool((ks < 0).any()))
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


def plan_graph(graph: Graph, cfg: OpticalConfig, nonneg: set[str] | frozenset = frozenset()) -> FramePlan:
    """The FramePlan of ``graph``: every default-domain Conv on the optics, the rest on the host."""
    producers = graph.producers()
    plan = FramePlan()
    for node in graph.nodes:
        if node.op == "Conv" and not node.domain:
            x = node.inputs[0]
            p = producers.get(x)
            x_signed = not (x in nonneg or (p is not None and p.op in _NONNEG_PRODUCERS))
            try:
                plan.layers.append(_conv_layer(graph, node, cfg, x_signed))
            except ValueError as e:
                raise TargetError(f"node {node.name!r} (Conv): {e}") from e
        else:
            plan.host_ops.append(host_op_work(graph, node))
    return plan
