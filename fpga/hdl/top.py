"""Accelerator top: controller, DMA with the on-chip buffer, and one engine per compute op.

```
 ins_req/ins_data ──► Controller ──dma_cmd──► Dma ◄── rd_req/rd_data, wr_req/wr_data ──► external memory
                          │ unit_start/op + fields          │ buffer: 1 write port, 1 read port (block RAM)
                          ▼                                 │        unit_words (weights, to LINEAR)
      registers (SET) ─► engines: GELU, ADD, LAYERNORM, LINEAR, ATTENTION, MOE_ROUTE,
      (moe_cursor/rows ◄─ MOE_GATHER)       MOE_GATHER, MOE_COMBINE
                          │ the running op's engine owns the buffer's ports:
                          └─ rd (addresses) ─► BufferReader ─► rd_data (words) ; wr (addr, word) ─► buffer
```

Execution is in order, one instruction at a time (:mod:`fpga.hdl.controller`), so the
buffer needs one read and one write port: the DMA's during LOAD/STORE, the running
engine's otherwise (LINEAR's weights come from external memory through the DMA's
``unit_words`` stream while its engine reads activations). An opcode without an engine
completes at once and sets the sticky ``error`` output.

Registers (:data:`fpga.isa.REGISTERS`) are written by SET; MOE_GATHER also writes
``moe_cursor`` and ``moe_rows`` when it finishes. A LINEAR with ``flags`` bit 1 takes its
row count from ``moe_rows`` instead of ``length`` (the top substitutes the ``length`` its
engine latches).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen.errors import TargetError

from ..isa import REGISTERS, Op
from .controller import Controller
from .dma import ADDR_BITS, Dma
from .engine import BufferReader
from .engine_attention import ATTENTION_REGS, AttentionEngine
from .engine_elementwise import ElementwiseEngine
from .engine_layernorm import LayerNormEngine
from .engine_linear import LinearEngine
from .engine_moe import MoeRouteEngine
from .engine_moe_expert import REG_BITS as MOE_REG_BITS
from .engine_moe_expert import MoeCombineEngine, MoeGatherEngine
from .gelu import GeluUnit
from .layernorm import EPS_BITS
from .residual import ResidualAdd

__all__ = ["Accelerator", "ENGINE_ADDR_BITS", "ENGINE_OPS"]

#: Width of the buffer addresses in instructions and engines (the ISA's 16-bit fields).
ENGINE_ADDR_BITS = 16

#: The compute ops the top has an engine for (every one is built unless ``ops`` says otherwise).
ENGINE_OPS = (Op.GELU, Op.ADD, Op.LAYERNORM, Op.LINEAR, Op.ATTENTION, Op.MOE_ROUTE, Op.MOE_GATHER, Op.MOE_COMBINE)

_REG_BITS = {**ATTENTION_REGS, "ln_eps": EPS_BITS, "moe_cursor": MOE_REG_BITS, "moe_end": MOE_REG_BITS,
             "moe_rows": MOE_REG_BITS}


class Accelerator(wiring.Component):
    """The accelerator.

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
    buffer_words : int, optional
        Buffer depth (default ``config.buffer_words``); smaller for fast simulations.
    ops : iterable of Op, optional
        The compute ops to build (default all); others set ``error`` when executed.
    """

    def __init__(self, config=None, *, buffer_words: int | None = None, ops=None):
        from ..config import AcceleratorConfig

        self.config = c = config if config is not None else AcceleratorConfig()
        self.data_bits = c.mem_port_bits
        if self.data_bits % c.act_fmt.width or c.lanes & (c.lanes - 1):
            raise TargetError(f"accelerator: mem_port_bits={self.data_bits} must hold a power-of-two number of "
                              f"{c.act_fmt} activations")
        self.buffer_words = buffer_words or c.buffer_words
        if self.buffer_words > 1 << ENGINE_ADDR_BITS:
            raise TargetError(f"accelerator: {self.buffer_words} buffer words exceed the ISA's 16-bit addresses")
        self.lanes = c.lanes
        self.ops = set(Op(o) for o in (ops if ops is not None else ENGINE_OPS))
        self._dma = Dma(self.data_bits, self.buffer_words, 16)
        self._ctrl = Controller(self._dma.buf_addr_bits)
        try:
            self._engines = self._build_engines()
        except ValueError as e:
            raise TargetError(f"accelerator: {e}") from e
        super().__init__({
            "start": In(1),
            "prog_addr": In(ADDR_BITS),
            "done": Out(1),
            "error": Out(1),
            "pc": Out(32),
            "ins_req": Out(self._ctrl.ins_req.signature),
            "ins_data": In(self._ctrl.ins_data.signature.flip()),
            "rd_req": Out(self._dma.rd_req.signature),
            "rd_data": In(self._dma.rd_data.signature.flip()),
            "wr_req": Out(self._dma.wr_req.signature),
            "wr_data": Out(self._dma.wr_data.signature),
        })

    def _build_engines(self) -> dict:
        """Opcode -> engine. Add an op here (and its opcode in fpga.isa)."""
        c, ab, db = self.config, ENGINE_ADDR_BITS, self.data_bits
        make = {
            Op.GELU: lambda: ElementwiseEngine(GeluUnit(self.lanes, c.act_fmt, c.act_fmt), 1, ab, db),
            Op.ADD: lambda: ElementwiseEngine(ResidualAdd(self.lanes, c.act_fmt, c.act_fmt, c.act_fmt), 2, ab, db),
            Op.LAYERNORM: lambda: LayerNormEngine(c.max_row, c.act_fmt, self.lanes, ab),
            Op.LINEAR: lambda: LinearEngine(c, ab, self._dma.buf_addr_bits),
            Op.ATTENTION: lambda: AttentionEngine(c, ab),
            Op.MOE_ROUTE: lambda: MoeRouteEngine(c, ab),
            Op.MOE_GATHER: lambda: MoeGatherEngine(c, ab),
            Op.MOE_COMBINE: lambda: MoeCombineEngine(c, ab),
        }
        return {op: make[op]() for op in sorted(self.ops)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self._dma
        m.submodules.ctrl = ctrl = self._ctrl
        m.submodules.reader = reader = BufferReader(ENGINE_ADDR_BITS, self.data_bits)
        for name in ("ins_req", "ins_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(ctrl, name))
        for name in ("rd_req", "rd_data", "wr_req", "wr_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dma, name))
        m.d.comb += self.pc.eq(ctrl.pc)  # instructions; simulators/program_run.py traces it
        m.d.comb += [ctrl.start.eq(self.start), ctrl.prog_addr.eq(self.prog_addr), self.done.eq(ctrl.done),
                     ctrl.dma_done.eq(dma.done), dma.rd_addr.eq(reader.mem_addr), reader.mem_data.eq(dma.rd_word)]

        # registers written by SET (and moe_cursor/moe_rows by MOE_GATHER when it finishes)
        regs = {name: Signal(_REG_BITS[name], name=f"reg_{name}") for name in REGISTERS}
        is_set = ctrl.unit_start & (ctrl.unit_op == Op.SET)
        for name, index in REGISTERS.items():
            with m.If(is_set & (ctrl.unit_aux == index)):
                m.d.sync += regs[name].eq(ctrl.unit_ext_addr)
        gather = self._engines.get(Op.MOE_GATHER)
        if gather is not None:
            with m.If(gather.reg_we):
                m.d.sync += [regs["moe_cursor"].eq(gather.cursor_out), regs["moe_rows"].eq(gather.rows_out)]

        # the running op
        op = Signal(4)
        active = Signal()
        with m.If(ctrl.unit_start):
            m.d.sync += [op.eq(ctrl.unit_op), active.eq(1)]
        finished = Signal()
        known = Signal()
        m.d.comb += known.eq(op == Op.SET)
        dma_for_unit = Signal()
        for code, eng in self._engines.items():
            m.submodules[f"{Op(code).name.lower()}_engine"] = eng
            sel = active & (op == code)
            a = eng.args
            length = ctrl.unit_length
            if code == Op.LINEAR:  # flags bit 1: the row count is the moe_rows register
                length = Mux(ctrl.unit_flags[1], regs["moe_rows"], ctrl.unit_length)
            m.d.comb += [eng.start.eq(ctrl.unit_start & (ctrl.unit_op == code)),
                         a.flags.eq(ctrl.unit_flags), a.dst.eq(ctrl.unit_dst), a.src0.eq(ctrl.unit_src0),
                         a.src1.eq(ctrl.unit_src1), a.length.eq(length), a.aux.eq(ctrl.unit_aux),
                         a.ext_addr.eq(ctrl.unit_ext_addr),
                         eng.rd_data.payload.eq(reader.data.payload), eng.rd_data.valid.eq(sel & reader.data.valid),
                         eng.wr.ready.eq(sel)]
            for name in ATTENTION_REGS if code == Op.ATTENTION else ():
                m.d.comb += getattr(eng, name).eq(regs[name])
            if code == Op.LAYERNORM:
                m.d.comb += eng.eps_code.eq(regs["ln_eps"])
            if code == Op.MOE_GATHER:
                m.d.comb += [eng.cursor_in.eq(regs["moe_cursor"]), eng.end_in.eq(regs["moe_end"])]
            if code == Op.MOE_COMBINE:
                m.d.comb += eng.rows_in.eq(regs["moe_rows"])
            if code == Op.LINEAR:
                m.d.comb += [eng.dma_words.payload.eq(dma.unit_words.payload),
                             eng.dma_words.valid.eq(sel & dma.unit_words.valid)]
            with m.If(op == code):
                m.d.comb += known.eq(1)
            with m.If(sel):
                m.d.comb += [reader.req.payload.eq(eng.rd.payload), reader.req.valid.eq(eng.rd.valid),
                             eng.rd.ready.eq(reader.req.ready), reader.data.ready.eq(eng.rd_data.ready),
                             dma.wr_en.eq(eng.wr.valid), dma.wr_addr.eq(eng.wr.payload.addr),
                             dma.wr_word.eq(eng.wr.payload.data), finished.eq(eng.done)]
                if code == Op.LINEAR:
                    m.d.comb += [dma_for_unit.eq(1), dma.cmd.p.eq(eng.dma_cmd.p), dma.cmd.valid.eq(eng.dma_cmd.valid),
                                 eng.dma_cmd.ready.eq(dma.cmd.ready), dma.unit_words.ready.eq(eng.dma_words.ready)]
        with m.If(~dma_for_unit):
            m.d.comb += [dma.cmd.p.eq(ctrl.dma_cmd.p), dma.cmd.valid.eq(ctrl.dma_cmd.valid),
                         ctrl.dma_cmd.ready.eq(dma.cmd.ready)]
        with m.If(active & ((op == Op.SET) | ~known)):
            m.d.comb += finished.eq(1)
            with m.If(~known):
                m.d.sync += self.error.eq(1)
        done = active & finished
        with m.If(done):
            m.d.sync += active.eq(0)
        m.d.comb += ctrl.unit_done.eq(done)
        return m
