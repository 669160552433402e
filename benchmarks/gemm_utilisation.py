"""MAC-array utilisation of one GEMM in RTL: m3vit-edge-moe's QKV projection by default.

One LINEAR instruction, ``Y[M, N] = X[M, K] @ W[K, N] + b`` (M = 129 tokens, N = 576,
K = 192), runs on the default accelerator top (``AcceleratorConfig()``: 16 x 16 MACs,
every engine, the 12,384-word buffer, which X and Y fill exactly) in Verilator through
``simulators.program_run`` (the in-simulation memory, latency 4): LOAD X, LINEAR, STORE Y.
Y must equal ``hwgen.numerics.linear.linear_codes`` bit for bit (the script exits non-zero
otherwise). Printed side by side, with the share of the array's peak (``M*N*K / 256``
cycles) each reaches:

* the LINEAR instruction in RTL: the cycles between the previous instruction's completion
  and its own (fetch and decode included), and the engine's part (start to done), which
  must equal :func:`fpga.hdl.engine_linear.linear_cycles`;
* the ideal, ``M*N*K / (rows*cols)``;
* the floor of any 16-token tiling: ``ceil(M / rows) * N/cols * K`` (129 tokens are 8
  full tiles and one of 1 token: 89.6 % of peak at best);
* the weight-stream floor of this engine: ``ceil(M / rows) * N/cols`` output tiles of
  ``bias_words + K * w_words`` beats (the 256-bit port carries one 16-weight row a beat);
* SCALE-Sim's output-stationary 16 x 16 array: run with ``/work/venvs/scalesim`` when that
  venv exists (~1-2 minutes), else the figure of /work/shared/FIELD-NOTES.md (71,927).

Run: ``python benchmarks/gemm_utilisation.py [--m 129 --n 576 --k 192] [--no-scalesim]``.
The build is program_run's cache (the same as ``hwgen simulate``'s on the default
configuration): ~2-6 minutes the first time.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "simulators" / "tb"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from top_program import pack_words, unpack_words  # noqa: E402

from fpga.config import AcceleratorConfig  # noqa: E402
from fpga.hdl.engine_linear import weight_words  # noqa: E402
from fpga.isa import Instr, Op, encode  # noqa: E402
from hwgen.numerics.linear import linear_codes  # noqa: E402

__all__ = ["FIELD_NOTES_SCALESIM", "SCALESIM_PYTHON", "run_rtl", "run_scalesim", "main"]

#: SCALE-Sim 3.0.0, GEMM M=129, N=576, K=192, 16 x 16 output stationary (FIELD-NOTES.md).
FIELD_NOTES_SCALESIM = 71_927
SCALESIM_PYTHON = Path("/work/venvs/scalesim/bin/python")
PROG = 0x40
#: External memory words of the build: hwgen simulate's for models up to 2 MB (vit-tiny), so
#: that one cached Verilator build of the default top serves both.
EXT_WORDS = 1 << 16
FETCH_OVERHEAD_NOTE = "fetch, decode and start of the instruction"


def run_rtl(m: int, n: int, k: int, config: AcceleratorConfig, latency: int = 4, seed: int = 0) -> dict:
    """LOAD X, LINEAR, STORE Y on the default top in Verilator; checks Y; returns cycles."""
    from simulators.hooks import END, ScriptHook
    from simulators.memory_image import add_program
    from simulators.program_run import build

    c, act, wf = config, config.act_fmt, config.weight_fmt
    lanes, bpw = c.lanes, c.mem_port_bits // 8
    sk, sn = -(-k // lanes), n // lanes
    if m * (sk + sn) > c.buffer_words:
        raise SystemExit(f"X and Y need {m * (sk + sn)} buffer words; the configuration has {c.buffer_words}")
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 12), 1 << 12, (m, k))          # moderate activations (fixed<32,10> codes)
    w = rng.integers(wf.qmin, wf.qmax + 1, (k, n)) // 4
    b = rng.integers(-(1 << 12), 1 << 12, (n,))
    want = linear_codes(x, w, b, act, wf, act, act, gelu=False)

    w_words, bias_words = weight_words(c.mac_cols, wf.width, act.width, c.mem_port_bits)
    image = []
    for j in range(0, n, c.mac_cols):
        image += pack_words(b[None, j:j + c.mac_cols], act.width, lanes)
        image += pack_words(w[:, j:j + c.mac_cols], wf.width, c.mem_port_bits // wf.width)
    x_words = pack_words(x, act.width, lanes)
    x_ext, w_ext = 1 << 12, 1 << 13
    y_ext = w_ext + len(image) + 64
    if y_ext + m * sn > EXT_WORDS:
        raise SystemExit(f"the GEMM needs {y_ext + m * sn} words of external memory; the build has {EXT_WORDS}")
    memory = {x_ext + i: v for i, v in enumerate(x_words)}
    memory.update({w_ext + i: v for i, v in enumerate(image)})
    xb, yb = 0, m * sk
    program = [Instr(Op.LOAD, dst=xb, length=len(x_words), ext_addr=x_ext * bpw),
               Instr(Op.LINEAR, src0=xb, dst=yb, length=m, aux=k, src1=n, ext_addr=w_ext * bpw),
               Instr(Op.STORE, src0=yb, length=m * sn, ext_addr=y_ext * bpw),
               Instr(Op.END)]
    add_program(memory, PROG, [encode(i) for i in program], c.mem_port_bits)
    sim = build(c, ext_words=EXT_WORDS)
    hook = ScriptHook({(0, END): [("read_ext", y_ext, m * sn)]})
    result = sim.run(memory, [(PROG, [])], hook=hook, latency=latency)
    prog = result.programs[0]
    got = result.hook_result[(0, END)][0]
    y = np.array(unpack_words(got, act.width, lanes, m * n)).reshape(m, n)
    if prog.error or result.mem_error or not np.array_equal(y, want):
        bad = int((y != want).sum())
        raise SystemExit(f"RTL result wrong: {bad} of {m * n} outputs differ, error={prog.error}, "
                         f"mem_error={result.mem_error}")
    done = dict(prog.trace)
    return {"instruction": done[1] - done[0], "program": prog.cycles, "build_s": getattr(sim, "build_s", None)}


def run_scalesim(m: int, n: int, k: int, config: AcceleratorConfig) -> int | None:
    """SCALE-Sim's compute cycles of the GEMM on the configuration's ``mac_rows x mac_cols``
    output-stationary array (``benchmarks/peers_scalesim.py``'s run), or None without its venv."""
    if not SCALESIM_PYTHON.exists():
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peers_scalesim import run_scalesim as run_peer  # noqa: E402

    with tempfile.TemporaryDirectory() as tmp:
        return int(run_peer([(m, k, n)], config, "os", None, Path(tmp))[(m, k, n)]["cycles"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=129)
    ap.add_argument("--n", type=int, default=576)
    ap.add_argument("--k", type=int, default=192)
    ap.add_argument("--latency", type=int, default=4, help="memory latency of the simulation (cycles)")
    ap.add_argument("--no-scalesim", action="store_true", help="quote FIELD-NOTES.md instead of running SCALE-Sim")
    args = ap.parse_args(argv)
    from fpga.hdl.engine_linear import linear_cycles

    c = AcceleratorConfig()
    m, n, k = args.m, args.n, args.k
    rows, cols = c.mac_rows, c.mac_cols
    w_words, bias_words = weight_words(cols, c.weight_fmt.width, c.act_fmt.width, c.mem_port_bits)
    ideal = m * n * k / (rows * cols)
    tiles = math.ceil(m / rows) * (n // cols)
    floor_tiles = tiles * k
    floor_weights = tiles * (bias_words + k * w_words)
    model = linear_cycles(m, n, k, c, latency=args.latency)
    rtl = run_rtl(m, n, k, c, latency=args.latency)
    scalesim, source = None, "FIELD-NOTES.md"
    if not args.no_scalesim:
        scalesim = run_scalesim(m, n, k, c)
        source = "SCALE-Sim 3.0.0 run" if scalesim is not None else source
    if scalesim is None:
        scalesim = FIELD_NOTES_SCALESIM if (m, n, k, rows, cols) == (129, 576, 192, 16, 16) else None

    print(f"GEMM M={m} N={n} K={k} on {rows}x{cols} MACs (default configuration, memory latency {args.latency}); "
          f"RTL result bit-exact vs hwgen.numerics")
    table = [("RTL: LINEAR instruction (fetch included)", rtl["instruction"]),
             ("linear_cycles (engine, start to done)", model),
             ("ideal M*N*K/256", ideal),
             (f"floor of {rows}-token tiles ({tiles} tiles x K)", floor_tiles),
             (f"weight-stream floor ({tiles} x {bias_words + k * w_words} beats)", floor_weights)]
    if scalesim is not None:
        table.append((f"SCALE-Sim output stationary ({source})", scalesim))
    width = max(len(name) for name, _ in table)
    print(f"{'':{width}s} {'cycles':>9s} {'of peak':>8s}")
    for name, cycles in table:
        print(f"{name:{width}s} {cycles:9,.0f} {100 * ideal / cycles:7.1f}%")
    overhead = rtl["instruction"] - model
    print(f"(the instruction's {overhead} cycles beyond the engine: {FETCH_OVERHEAD_NOTE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
