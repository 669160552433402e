"""Timing of LINEAR's engine (:mod:`fpga.hdl.engine_linear`): its exact cycle count.

:func:`linear_cycles` follows the engine's three streams (weights from external memory,
activations through the store, results to the buffer) per K tile of every output tile;
``simulators/tb/tb_linear_engine.py`` asserts it against the RTL. Both names are also
exported by :mod:`fpga.hdl.engine_linear`.
"""

from __future__ import annotations

__all__ = ["linear_cycles", "weight_words"]


def weight_words(cols: int, w_bits: int, b_bits: int, data_bits: int) -> tuple[int, int]:
    """``(w_words, bias_words)``: words of one weight row and of one tile's bias."""
    return -(-cols * w_bits // data_bits), -(-cols * b_bits // data_bits)


def linear_cycles(m: int, n: int, k: int, config, latency: int = 4, gelu: bool = False) -> int:
    """Cycles of one LINEAR on :class:`~fpga.hdl.engine_linear.LinearEngine`, from ``start`` to ``done``, exactly.

    The engine behind the top's buffer reader and DMA, with no stalls: the buffer takes a
    write every cycle, and external memory answers a read burst accepted at cycle ``e``
    with one beat a cycle from ``e + latency`` on (``simulators/hdl/hwgen_ext_mem.v``;
    exact for ``latency <= 16``, the DMA's look-ahead). Asserted by
    ``simulators/tb/tb_linear_engine.py``.

    The engine is bound by the weight stream: ``bias_words + K * w_words`` beats per
    output tile (194 for Edge-MoE's K = 192), against ``K`` cycles of the MAC array; plus,
    per token tile, the DMA command's latency, and before the first tile, the activation
    fill (``rows * ceil(K / lanes)`` buffer reads). This function follows those streams
    per K tile (a few Python operations per ``mac_rows x mac_cols`` tile).

    Parameters
    ----------
    m, n, k : int
        Tokens, output features (a multiple of ``mac_cols``), reduction length.
    config : fpga.config.AcceleratorConfig
    latency : int
        Memory latency (cycles from a read request to its first beat, ``>= 1``).
    gelu : bool
        GELU on the results (one more cycle at the end).

    Returns
    -------
    int
        Cycles from the cycle ``start`` is high to the cycle ``done`` is high (1 for M = 0).
    """
    c = config
    rows, cols, lanes, depth = c.mac_rows, c.mac_cols, c.lanes, c.weight_depth
    if m <= 0:
        return 1
    if n <= 0 or n % cols or k <= 0:
        raise ValueError(f"linear_cycles: N={n} must be a positive multiple of mac_cols={cols}, K={k} positive")
    w_words, bias_words = weight_words(cols, c.weight_fmt.width, c.act_fmt.width, c.mem_port_bits)
    cpw = cols // lanes
    sk = -(-k // lanes)
    half = -(-c.linear_max_k // lanes) // 2
    two_halves = sk <= half
    k_tiles = [min(depth, k - k0) for k0 in range(0, k, depth)]
    n_tiles, t_tiles = n // cols, -(-m // rows)

    # activation fill of token tile t: f_start[t] (f_busy set), reads f+1 .. f+W, the
    # store half FULL for the feed's issue at f+W+3
    fill = [0] * t_tiles
    issue_last = [0] * t_tiles       # edge the tile's last column is issued (its half is freed)
    cmd = 1                           # edge the DMA accepts the token tile's weight command
    beat = 0                          # edge of the last weight beat taken
    bank_free = [0, 0]                # weight bank: first edge a row may enter it
    x_prev = 0                        # edge of the last x beat
    x_prev2 = 0                       # edge of the x beat before it
    emit_free = 0                     # first edge an output tile may end (previous one sent)
    kappa = 0
    done = 0
    for t in range(t_tiles):
        kept = min(rows, m - t * rows)
        words = kept * sk
        if t == 0:
            fill[t] = 1
        else:
            free = issue_last[t - 2] if two_halves and t >= 2 else (0 if two_halves else issue_last[t - 1])
            fill[t] = max(fill[t - 1] + (kept_prev * sk) + 1, free + 1)
        kept_prev = kept
        act0 = fill[t] + 3                 # the feed may issue a column of word kw from act0 + (kw+1)*kept
        act_issue = act0 + sk * kept       # ... every column from here
        if t > 0:
            cmd = beat + 2
        index = 0                          # beat index within the command
        for f in range(n_tiles):
            s = max(beat + 1, cmd + 1 + latency + index)
            beat = s + bias_words - 1
            index += bias_words
            for kt, length in enumerate(k_tiles):
                s = max(beat + 1, cmd + 1 + latency + index)
                row_done = max(s + w_words - 1, bank_free[kappa % 2])
                w_last = row_done + (length - 1) * w_words
                beat = w_last
                index += length * w_words
                k0 = kt * depth
                # column i may use weight row i the cycle after it is in (the last: the
                # bank complete), and its activations once their word is filled
                x_first = max(row_done + 1, x_prev + 1, act0 + (k0 // lanes + 1) * kept + 1)
                # fast path, equal to the general branch (one column a cycle from x_first: the
                # last activation word is filled by then and w_words == 1 adds no weight wait);
                # it makes linear_cycles 1.45x (16x16) to 3.5x (4x16) faster than the branch alone
                if w_words == 1 and act0 + ((k0 + length - 1) // lanes + 1) * kept + 1 <= x_first:
                    x_last = x_first + length - 1
                    second = x_last - 1 if length > 1 else x_prev
                else:  # columns wait for the fill, word by word, or for weight rows
                    x_last = _column_edge(length - 1, x_prev, row_done, w_words, act0, kept, k0, lanes)
                    second = _column_edge(length - 2, x_prev, row_done, w_words, act0, kept, k0, lanes) \
                        if length > 1 else x_prev
                end_tile = kt == len(k_tiles) - 1
                if end_tile:
                    x_last = max(x_last, emit_free)
                    emitted = kept * cpw + (rows - kept)
                    emit_free = x_last + emitted + 1
                    done = x_last + max(emitted, kept * cpw + int(bool(gelu))) + 1
                bank_free[kappa % 2] = x_last + 1
                x_prev2, x_prev = second, x_last
                kappa += 1
        issue_last[t] = max(x_prev2, act_issue)
    return done


def _column_edge(i: int, x_prev: int, row_done: int, w_words: int, act0: int, kept: int, k0: int, lanes: int) -> int:
    """Edge column ``i`` of a K tile is issued, when columns wait for the activation fill or
    for weight rows: ``x[i] = max(x[i-1] + 1, act0 + ((k0 + i) // lanes + 1) * kept + 1,
    row_done + i * w_words + 1)`` from ``x[-1] = x_prev`` (one column a cycle, not before
    its activation word is filled, nor before its weight row is in), in O(1).

    With ``y[i] = x[i] - i``: ``y[i] = max(x_prev + 1, max over j <= i of c[j] - j)``. The
    weight term ``row_done + 1 + j * (w_words - 1)`` grows with ``j``: its maximum is at
    ``j = i``. The fill term ``act0 + ((k0 + j) // lanes + 1) * kept + 1 - j`` falls within
    a word, so its maximum is at ``j = 0`` or at a word's first column, ``j = q * lanes -
    k0``, where it is ``act0 + 1 + k0 + kept + q * (kept - lanes)``: linear in ``q``, so at
    the last word (``kept >= lanes``) or the first after ``j = 0`` (``kept < lanes``).
    """
    best = max(x_prev + 1, row_done + 1 + i * (w_words - 1), act0 + (k0 // lanes + 1) * kept + 1)
    q_first, q_last = k0 // lanes + 1, (k0 + i) // lanes
    if q_first <= q_last:
        q = q_last if kept >= lanes else q_first
        best = max(best, act0 + 1 + k0 + kept + q * (kept - lanes))
    return i + best
