"""A functional simulator of the instruction set: what each instruction does to memory.

Not the hardware: the RTL (cocotb on Verilator) is. This is the instruction set's
executable specification, written from ``fpga/isa.py`` and the engines' documented
fields, with every arithmetic step taken from :mod:`hwgen.numerics` (the same reference
the RTL is proven against). It runs a compiled program in seconds, so the compiler can be
tested on many models without building Verilog, and a disagreement between it and the
RTL localises a bug to the hardware or to this specification.

State: the on-chip buffer (``buffer_words`` words of ``lanes`` activation codes), the
external memory (bytes), the SET registers. Lanes past a row's last element are written
as zero where an engine writes partial words (attention heads shorter than their words).
"""

from __future__ import annotations

import numpy as np

from hwgen.fixedpoint import requantize
from hwgen.numerics.attention import attention_codes
from hwgen.numerics.gelu import gelu_codes
from hwgen.numerics.layernorm import layernorm_codes
from hwgen.numerics.linear import linear_codes
from hwgen.numerics.residual import residual_codes
from hwgen.numerics.softmax import LOG2E, SOFTMAX_DEFAULT
from hwgen.numerics.topk import expert_schedule, route

from .compile.image import pack_rows, unpack_rows
from .hdl.engine_linear import weight_words
from .isa import REGISTERS, Op, decode, index_field, list_entry, list_word, schedule_words

__all__ = ["IsaSim", "IsaError"]


class IsaError(RuntimeError):
    """An instruction is invalid (address out of range, field out of bounds)."""


class IsaSim:
    """Executes instructions on a buffer and an external memory.

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
    memory : bytes-like
        Initial external memory (byte 0 = address 0); grows on write.
    buffer_words : int, optional
        Default ``config.buffer_words``.
    """

    def __init__(self, config, memory: bytes, buffer_words: int | None = None):
        c = self.c = config
        self.lanes, self.act, self.wfmt = c.lanes, c.act_fmt, c.weight_fmt
        self.wb = c.mem_port_bits // 8
        self.buf = np.zeros((buffer_words or c.buffer_words, self.lanes), dtype=np.int64)
        self.ext = bytearray(memory)
        self.regs = {name: 0 for name in REGISTERS}
        self.instructions = 0
        self.trace: list[tuple[int, str]] = []

    # --- memory helpers -------------------------------------------------------------
    def _ext_read(self, addr: int, n: int) -> bytes:
        if addr % self.wb or addr < 0:
            raise IsaError(f"external address {addr:#x} is not aligned to {self.wb} bytes")
        end = addr + n
        if end > len(self.ext):
            raise IsaError(f"external read [{addr:#x}, {end:#x}) beyond the memory ({len(self.ext):#x} bytes)")
        return bytes(self.ext[addr:end])

    def _ext_write(self, addr: int, data: bytes) -> None:
        if addr % self.wb or addr < 0:
            raise IsaError(f"external address {addr:#x} is not aligned to {self.wb} bytes")
        if addr + len(data) > len(self.ext):
            self.ext.extend(b"\0" * (addr + len(data) - len(self.ext)))
        self.ext[addr:addr + len(data)] = data

    def _words(self, start: int, n: int) -> np.ndarray:
        if start < 0 or start + n > len(self.buf):
            raise IsaError(f"buffer words [{start}, {start + n}) outside the {len(self.buf)}-word buffer")
        return self.buf[start:start + n]

    def _rows(self, base: int, rows: int, stride: int, elems: int) -> np.ndarray:
        """``rows x elems`` codes: row ``i`` from word ``base + i * stride``."""
        nw = -(-elems // self.lanes)
        out = np.empty((rows, nw * self.lanes), dtype=np.int64)
        for i in range(rows):
            out[i] = self._words(base + i * stride, nw).reshape(-1)
        return out[:, :elems]

    def _write_rows(self, base: int, stride: int, codes: np.ndarray) -> None:
        rows, elems = codes.shape
        nw = -(-elems // self.lanes)
        padded = np.zeros((rows, nw * self.lanes), dtype=np.int64)
        padded[:, :elems] = codes
        for i in range(rows):
            self._words(base + i * stride, nw)[:] = padded[i].reshape(nw, self.lanes)

    # --- execution ------------------------------------------------------------------------
    def run(self, prog_addr: int, max_instructions: int = 10_000_000, after=None) -> int:
        """Run from byte address ``prog_addr`` to END; return the instructions executed.

        ``after(index)`` is called after each instruction (index in the program)."""
        pc = 0
        for _ in range(max_instructions):
            word = int.from_bytes(self._ext_read_ins(prog_addr + 16 * pc), "little")
            ins = decode(word)
            pc += 1
            self.instructions += 1
            if ins.op == Op.END:
                return pc
            try:
                self.step(ins)
            except IsaError as e:
                raise IsaError(f"instruction {pc - 1} ({ins}): {e}") from e
            if after is not None:
                after(pc - 1)
        raise IsaError(f"no END within {max_instructions} instructions")

    def _ext_read_ins(self, addr: int) -> bytes:
        if addr + 16 > len(self.ext):
            raise IsaError(f"instruction fetch at {addr:#x} beyond the memory")
        return bytes(self.ext[addr:addr + 16])

    def step(self, ins) -> None:
        getattr(self, f"_op_{ins.op.name.lower()}")(ins)

    def _op_sync(self, ins):
        pass

    def _op_set(self, ins):
        for name, idx in REGISTERS.items():
            if idx == ins.aux:
                self.regs[name] = ins.ext_addr
                return
        raise IsaError(f"SET of unknown register {ins.aux}")

    def _op_load(self, ins):
        data = self._ext_read(ins.ext_addr, ins.length * self.wb)
        self._words(ins.dst, ins.length)[:] = unpack_rows(data, ins.length, self.lanes, self.act.width, self.c.mem_port_bits)

    def _op_store(self, ins):
        self._ext_write(ins.ext_addr, pack_rows(self._words(ins.src0, ins.length), self.act.width, self.c.mem_port_bits))

    def _op_gelu(self, ins):
        self._words(ins.dst, ins.length)[:] = gelu_codes(self._words(ins.src0, ins.length), self.act, self.act)

    def _op_add(self, ins):
        a, b = self._words(ins.src0, ins.length).copy(), self._words(ins.src1, ins.length).copy()
        self._words(ins.dst, ins.length)[:] = residual_codes(a, b, self.act, self.act, self.act)

    def _op_linear(self, ins):
        c = self.c
        m = self.regs["moe_rows"] if ins.flags & 2 else ins.length
        k, n = ins.aux, ins.src1
        if n % c.mac_cols or k < 1:
            raise IsaError(f"LINEAR: N={n} must be a multiple of {c.mac_cols}, K={k} positive")
        if m == 0:
            return
        sk, sn = -(-k // self.lanes), n // self.lanes
        x = self._rows(ins.src0, m, sk, k)
        w_words, b_words = weight_words(c.mac_cols, self.wfmt.width, self.act.width, c.mem_port_bits)
        block = (b_words + k * w_words) * self.wb
        w = np.empty((k, n), dtype=np.int64)
        b = np.empty(n, dtype=np.int64)
        for j in range(n // c.mac_cols):
            raw = self._ext_read(ins.ext_addr + j * block, block)
            b[j * c.mac_cols:(j + 1) * c.mac_cols] = unpack_rows(raw[:b_words * self.wb], 1, c.mac_cols, self.act.width,
                                                                 c.mem_port_bits)[0]
            w[:, j * c.mac_cols:(j + 1) * c.mac_cols] = unpack_rows(raw[b_words * self.wb:], k, c.mac_cols,
                                                                    self.wfmt.width, c.mem_port_bits)
        y = linear_codes(x, w, b, self.act, self.wfmt, self.act, self.act, gelu=bool(ins.flags & 1))
        self._write_rows(ins.dst, sn, y)

    def _op_layernorm(self, ins):
        d = ins.aux
        sw = -(-d // self.lanes)
        stride = ins.ext_addr & 0xFFFF or sw
        x = self._rows(ins.src0, ins.length, stride, d)
        gamma = self._words(ins.src1, sw).reshape(-1)[:d]
        beta = self._words(ins.src1 + sw, sw).reshape(-1)[:d]
        eps = self.regs["ln_eps"] / 2.0 ** (2 * self.act.frac_bits)
        e_code = int(np.floor(eps * 2.0 ** (2 * self.act.frac_bits) + 0.5))
        if e_code != self.regs["ln_eps"]:
            raise IsaError("ln_eps register does not round-trip")
        y = layernorm_codes(x, gamma, beta, self.act, self.act, self.act, self.act, eps=eps)
        self._write_rows(ins.dst, stride, y)

    def _op_attention(self, ins):
        d, si, so = self.regs["att_dim"], self.regs["att_in_stride"], self.regs["att_out_stride"]
        code = self.regs["att_scale"]
        code = code - (1 << 20) if code >> 19 else code
        scale = code * SOFTMAX_DEFAULT.scale_fmt.lsb / LOG2E
        q = self._rows(ins.src0, ins.length, si, d)
        k = self._rows(ins.src1, ins.aux, si, d)
        v = self._rows(ins.ext_addr & 0xFFFF, ins.aux, si, d)
        out = attention_codes(q, k.T, v, (self.act, self.act, self.act), self.act, scale=scale)
        self._write_rows(ins.dst, so, out)

    def _op_moe_route(self, ins):
        c, lanes = self.c, self.lanes
        m, e = ins.length, ins.aux
        stride = ins.ext_addr & 0xFFFF or -(-e // lanes)
        scores = self._rows(ins.src0, m, stride, e)
        experts, weights = route(scores, c.moe_k, self.act, self.act, c.moe_normalization)
        table = np.zeros((m, lanes), dtype=np.int64)
        table[:, :c.moe_k], table[:, c.moe_k:2 * c.moe_k] = experts, weights
        self._words(ins.dst, m)[:] = table
        words = schedule_words(expert_schedule(experts), self.act.width, lanes)
        self._words(ins.src1, len(words))[:] = words

    def _op_moe_gather(self, ins):
        k = self.c.moe_k
        s, table = ins.ext_addr & 0xFFFF, (ins.ext_addr >> 16) & 0xFFFF
        cur, end, count = self.regs["moe_cursor"], self.regs["moe_end"], 0
        while count < ins.length and cur < end:
            ent = self._words(cur, 1)[0]
            fw = self.act.width
            if index_field(ent, 0, fw) != ins.aux:
                break
            token = index_field(ent, 1, fw)
            route_w = self._words(table + token, 1)[0]
            slots = [j for j in range(k) if route_w[j] == ins.aux]
            if not slots:
                raise IsaError(f"MOE_GATHER: token {token} is scheduled for expert {ins.aux} but not routed to it")
            self._words(ins.dst + count * s, s)[:] = self._words(ins.src0 + token * s, s)
            self._words(ins.src1 + count, 1)[:] = list_word(token, route_w[k + slots[0]], fw, self.lanes)
            count += 1
            cur += 1
        self.regs["moe_rows"], self.regs["moe_cursor"] = count, cur

    def _op_moe_combine(self, ins):
        so = ins.aux
        f = self.act.frac_bits
        for i in range(self.regs["moe_rows"]):
            lst = self._words(ins.src1 + i, 1)[0]
            token, w = list_entry(lst, self.act.width)
            h = self._words(ins.src0 + i * so, so)
            y = self._words(ins.dst + token * so, so)
            p = requantize(w * h, 2 * f, self.act)
            y[:] = residual_codes(y.copy(), p, self.act, self.act, self.act)
