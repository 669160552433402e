"""cocotb testbench of simulators/hdl/hwgen_ext_mem.v: pipelined bursts at a given latency and rate.

The model under test is the external memory of program_run's wrapper. Two read bursts are
requested back to back (the second while the first still streams), a write burst and an
instruction fetch follow, then requests with bad addresses. Expected beat times come from
the model's specification (a request accepted at edge e offers its first beat at edge
e + latency; at most one beat every ``interval`` edges per channel; bursts in order), the
data from the words the test wrote into ``mem``. Environment: TB_SETTINGS (``lat,interval;...``),
TB_SEED, TB_WORDS (the model's depth).
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from fpga.hdl.dma import ADDR_BITS

BYTES = 32  # 256-bit words


def _req(addr: int, beats: int) -> int:
    return addr | beats << ADDR_BITS


class Bench:
    """Drives the request streams and logs every handshake with its edge number."""

    def __init__(self, dut, edge: int):
        self.dut = dut
        self.edge = edge  # the model's `now`: a free-running count, as in the wrapper
        self.log: dict[str, list[tuple[int, int]]] = {"rd_data": [], "ins_data": [], "wr_data": [], "rd_req": [],
                                                       "wr_req": [], "ins_req": []}
        self.plan: dict[str, list[tuple[int, int | None]]] = {"rd_req": [], "wr_req": [], "ins_req": [],
                                                             "wr_data": []}

    async def run(self, edges: int) -> None:
        dut = self.dut
        for _ in range(edges):
            # drive each source stream from its plan: (earliest edge, payload)
            for name, queue in self.plan.items():
                valid = bool(queue) and queue[0][0] <= self.edge
                getattr(dut, f"{name}__valid").value = int(valid)
                if valid:
                    getattr(dut, f"{name}__payload").value = queue[0][1]
            dut.now.value = self.edge
            await ReadOnly()
            for name in self.log:
                if int(getattr(dut, f"{name}__valid").value) and int(getattr(dut, f"{name}__ready").value):
                    self.log[name].append((self.edge, getattr(dut, f"{name}__payload").value.to_unsigned()))
                    if name in self.plan:
                        self.plan[name].pop(0)
            await RisingEdge(dut.clk)
            self.edge += 1


async def _reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("rd_req", "wr_req", "ins_req", "wr_data"):
        getattr(dut, f"{name}__valid").value = 0
    dut.rd_data__ready.value = 1
    dut.ins_data__ready.value = 1
    dut.ins_hold.value = 0
    dut.rst.value = 1
    dut.now.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _bursts(dut, lat: int, n: int, content: dict, rng: random.Random, edge: int) -> int:
    """Two pipelined read bursts, an instruction fetch and a write burst at latency ``lat``, interval ``n``."""
    dut.latency.value = lat          # what +mem_latency / +mem_beat_interval set at time 0
    dut.interval.value = n
    await RisingEdge(dut.clk)
    b = Bench(dut, edge)
    b.plan["rd_req"] += [(edge, _req(3 * BYTES, 5)), (edge, _req(20 * BYTES, 3))]
    b.plan["ins_req"] += [(edge + 2, _req(0x30, 1))]                # instruction 3: word 1, upper half
    b.plan["wr_req"] += [(edge + 1, _req(40 * BYTES, 2))]
    wdata = [rng.getrandbits(256) for _ in range(2)]
    b.plan["wr_data"] += [(edge + 2, wdata[0]), (edge + 2, wdata[1])]
    await b.run(20 + 10 * (lat + 8 * n))

    (a_edge, _), (b_edge, _) = b.log["rd_req"]
    assert b_edge == a_edge + 1, "the second read request is accepted while the first streams"
    want = [a_edge + lat + i * n for i in range(5)]
    want += [max(b_edge + lat, want[-1] + n) + i * n for i in range(3)]
    got_edges = [e for e, _ in b.log["rd_data"]]
    assert got_edges == want, f"latency {lat}, interval {n}: read beats at edges {got_edges}, specified {want}"
    assert [v for _, v in b.log["rd_data"]] == [content[w] for w in (3, 4, 5, 6, 7, 20, 21, 22)]
    (i_edge, _), = b.log["ins_req"]
    assert b.log["ins_data"] == [(i_edge + lat, content[1] >> 128)]
    w_edges = [e for e, _ in b.log["wr_data"]]
    assert len(w_edges) == 2 and w_edges[1] - w_edges[0] >= n
    assert [dut.mem[w].value.to_unsigned() for w in (40, 41)] == wdata
    assert int(dut.error.value) == 0
    return b.edge + 1


@cocotb.test()
async def pipelined_bursts_latency_rate_errors(dut):
    words = int(os.environ["TB_WORDS"])
    rng = random.Random(int(os.environ.get("TB_SEED", "0")))
    await _reset(dut)
    content = {w: rng.getrandbits(256) for w in range(64)}
    for w, v in content.items():
        dut.mem[w].value = v
    edge = 0
    for setting in os.environ["TB_SETTINGS"].split(";"):
        lat, n = (int(v) for v in setting.split(","))
        edge = await _bursts(dut, lat, n, content, rng, edge)

    # errors: a read past the end, then an unaligned write (the first error is kept)
    b = Bench(dut, edge)
    b.plan["rd_req"] += [(edge, _req((words - 1) * BYTES, 2))]
    await b.run(40)
    assert int(dut.error.value) == 1 and int(dut.err_code.value) == 4
    assert int(dut.err_addr.value) == (words - 1) * BYTES
    b.plan["wr_req"] += [(b.edge, _req(7, 1))]
    b.plan["wr_data"] += [(b.edge, 0)]
    await b.run(20)
    assert int(dut.err_code.value) == 4, "the first error's code is kept"
