"""Expert weight bytes an image fetches from external memory, per MoE layer and expert.

The program runs every expert of a MoE layer in chunks of at most ``T`` tokens
(``docs/fpga-compiler.md``): MOE_GATHER, LINEAR fc1, LINEAR fc2 (rows from ``moe_rows``),
MOE_COMBINE. A LINEAR streams its whole weight image (every ``mac_cols``-column output
tile: bias words plus ``K`` weight rows, :func:`fpga.hdl.linear_timing.weight_words`) once
per token tile of ``mac_rows`` rows, and nothing when it has no rows (M = 0 finishes at
once, no weight DMA: ``fpga/hdl/engine_linear.py``). So an expert with ``r`` rows in a
chunk moves ``ceil(r / mac_rows)`` times its weight image; one with no tokens moves 0.

*Unique* bytes are each used expert's weight images counted once; *moved* bytes are what
the DMA reads (the same count as :func:`fpga.cost.energy.instruction_actions`). Their
ratio is the re-fetch factor. The rows come from :class:`fpga.cost.routing.RowsOfInstr`:
the routing of a given input (the fixed-point reference's experts) or the uniform
expectation ``tokens * k / E`` rows per expert.
"""

from __future__ import annotations

import math

from ..isa import Op
from .routing import RowsOfInstr

__all__ = ["linear_weight_bytes", "expert_weight_bytes", "expert_bytes_section"]


def linear_weight_bytes(k: int, n: int, config) -> int:
    """Bytes of one LINEAR's weight image (``K`` rows, ``N`` output columns, bias included):
    ``ceil(N / mac_cols)`` output tiles of ``bias_words + K * w_words`` port words."""
    from ..hdl.linear_timing import weight_words

    c = config
    w_words, b_words = weight_words(c.mac_cols, c.weight_fmt.width, c.act_fmt.width, c.mem_port_bits)
    return math.ceil(n / c.mac_cols) * (b_words + k * w_words) * c.mem_port_bits // 8


def expert_weight_bytes(binding, config, choices: dict | None = None) -> dict:
    """Expert weight bytes of one program set (one task), per MoE layer.

    Parameters
    ----------
    binding : fpga.compile.compiler.Binding
        The program set.
    config : fpga.config.AcceleratorConfig
    choices : dict, optional
        Per MoE node the ``[tokens, k]`` experts its tokens pick
        (:func:`fpga.cost.routing.expert_choices`); without, the uniform expectation.

    Returns
    -------
    dict
        ``{"routing": "routed" | "uniform", "layers": [...], "unique_bytes", "bytes_moved",
        "refetch"}``; each layer ``{"node", "experts", "experts_with_tokens", "rows" (per
        expert, token-expert pairs), "unique_bytes", "bytes_moved", "refetch",
        "bytes_moved_per_expert"}``. Bytes are external-memory bytes (weights and biases of
        the experts' LINEARs; the gate's LINEAR is not an expert's).
    """
    c = config
    walk = RowsOfInstr(choices, c.moe_k)
    layers: dict[str, dict] = {}
    expert, lin = None, 0
    for seg in binding.segments:
        if seg.kind != "program":
            continue
        for e in seg.instrs:
            rows, _, _ = walk(e)
            ins = e.instr
            if ins.op == Op.MOE_ROUTE:
                lay = layers.setdefault(e.node, {"node": e.node, "experts": ins.aux, "rows": [0.0] * ins.aux,
                                                 "unique": {}, "moved": [0] * ins.aux})
            elif ins.op == Op.MOE_GATHER:
                expert, lin = ins.aux, 0
                layers[e.node]["rows"][expert] += rows
            elif ins.op == Op.LINEAR and ins.flags & 2:
                lay = layers[e.node]
                block = linear_weight_bytes(ins.aux, ins.src1, c)
                tiles = math.ceil(rows / c.mac_rows) if rows > 0 else 0
                lay["moved"][expert] += tiles * block
                if tiles:  # the expert's lin-th weight image, once however often (chunks, tiles) it is read
                    lay["unique"][(expert, lin)] = block
                lin += 1
    out_layers = []
    for lay in layers.values():
        unique, moved = sum(lay["unique"].values()), sum(lay["moved"])
        out_layers.append({"node": lay["node"], "experts": lay["experts"],
                           "experts_with_tokens": sum(1 for r in lay["rows"] if r > 0), "rows": lay["rows"],
                           "unique_bytes": unique, "bytes_moved": moved, "refetch": moved / unique if unique else 0.0,
                           "bytes_moved_per_expert": lay["moved"]})
    unique = sum(x["unique_bytes"] for x in out_layers)
    moved = sum(x["bytes_moved"] for x in out_layers)
    return {"routing": "routed" if choices else "uniform", "layers": out_layers, "unique_bytes": unique,
            "bytes_moved": moved, "refetch": moved / unique if unique else 0.0}


def expert_bytes_section(figures: dict) -> str:
    """Markdown of the report's ``moe_expert_bytes``: one table per task."""
    lines = ["Expert weights (and biases) read from external memory for one image: *unique* counts each "
             "used expert's weights once, *moved* is what the DMA reads (again for every "
             "`mac_rows`-token tile and every chunk); experts without tokens fetch nothing.", ""]
    for t in figures["tasks"]:
        how = (f"routed: the experts the tokens of {t['input'] or 'the given input'} pick in the fixed-point "
               "reference") if t["routing"] == "routed" else "uniform expectation (tokens x k / E rows an expert)"
        lines += [f"**{t['task']}** ({how})", "",
                  "| MoE layer | experts with tokens | token-expert rows | unique bytes | bytes moved | re-fetch |",
                  "|---|---|---|---|---|---|"]
        for x in t["layers"]:
            lines.append(f"| {x['node']} | {x['experts_with_tokens']} of {x['experts']} | {sum(x['rows']):g} | "
                         f"{x['unique_bytes']:,} | {x['bytes_moved']:,} | {x['refetch']:.2f}x |")
        lines += [f"| total | | | {t['unique_bytes']:,} | {t['bytes_moved']:,} | {t['refetch']:.2f}x |", ""]
    return "\n".join(lines)
