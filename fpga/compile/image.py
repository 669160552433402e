"""The external-memory image: packing codes into words, and placing blocks at addresses.

Words are ``mem_port_bits`` wide and little-endian: code ``i`` of a packed row occupies
bits ``[i * bits, (i + 1) * bits)`` counted from bit 0 of the row's first word (the
layout of ``fpga.hdl.engine_linear``'s weight image and of every buffer word), and each
row starts a new word. An image is a ``bytearray``; byte ``b`` of word ``w`` is at
``w * word_bytes + b``.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["pack_rows", "unpack_rows", "linear_weight_image", "Image"]


def pack_rows(codes, bits: int, word_bits: int) -> bytes:
    """``[rows, n]`` signed codes -> bytes: each row packed from bit 0 of a new word."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim == 1:
        codes = codes[None]
    rows, n = codes.shape
    words = -(-n * bits // word_bits)
    wb = word_bits // 8
    if bits in (8, 16, 32, 64) and (n * bits) % word_bits == 0:
        u = codes.astype({8: "<u1", 16: "<u2", 32: "<u4", 64: "<u8"}[bits]) if bits < 64 else codes.astype("<i8")
        return u.tobytes()
    mask = np.int64((1 << bits) - 1) if bits < 64 else np.int64(-1)
    u = (codes & mask).astype(np.uint64)
    bitmat = ((u[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8).reshape(rows, n * bits)
    padded = np.zeros((rows, words * word_bits), dtype=np.uint8)
    padded[:, : n * bits] = bitmat
    out = np.packbits(padded, axis=1, bitorder="little")
    assert out.shape[1] == words * wb
    return out.tobytes()


def unpack_rows(data: bytes, rows: int, n: int, bits: int, word_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: signed codes ``[rows, n]`` (int64)."""
    words = -(-n * bits // word_bits)
    wb = word_bits // 8
    raw = np.frombuffer(bytes(data), dtype=np.uint8).reshape(rows, words * wb)
    bitmat = np.unpackbits(raw, axis=1, bitorder="little")[:, : n * bits].reshape(rows, n, bits).astype(np.int64)
    vals = (bitmat << np.arange(bits, dtype=np.int64)).sum(axis=2) if bits < 63 else None
    if vals is None:
        raise ValueError("codes wider than 62 bits are not supported")
    sign = np.int64(1) << np.int64(bits - 1)
    return np.where(vals & sign, vals - (sign << np.int64(1)), vals)


def linear_weight_image(w_phys, b_phys, cols: int, w_bits: int, b_bits: int, word_bits: int) -> bytes:
    """The LINEAR weight image of ``fpga.hdl.engine_linear`` for ``w_phys [K, N]`` and
    ``b_phys [N]`` codes (``N`` a multiple of ``cols``): per tile of ``cols`` outputs, the
    bias (packed) then the ``K`` weight rows (each packed)."""
    w_phys = np.asarray(w_phys, dtype=np.int64)
    b_phys = np.asarray(b_phys, dtype=np.int64)
    k, n = w_phys.shape
    if n % cols:
        raise ValueError(f"N={n} is not a multiple of the {cols} MAC columns")
    parts = []
    for j in range(0, n, cols):
        parts.append(pack_rows(b_phys[None, j:j + cols], b_bits, word_bits))
        parts.append(pack_rows(w_phys[:, j:j + cols], w_bits, word_bits))
    return b"".join(parts)


class Image:
    """External memory contents being laid out: blocks appended at word-aligned byte
    addresses from ``base``; identical blocks (by content) share one address.

    ``virtual=True`` (cost-only compiles) gives the addresses of blocks placed by size
    (:meth:`reserve`) and keeps no bytes: ``data`` stays empty."""

    def __init__(self, word_bits: int, base: int = 0, virtual: bool = False):
        self.word_bytes = word_bits // 8
        self.data = bytearray()
        self.base = base
        self.virtual = virtual
        self._size = 0  # bytes laid out
        self._by_hash: dict[str, int] = {}
        self.regions: list[dict] = []  # {name, addr, bytes, kind}

    @property
    def end(self) -> int:
        """First free byte address."""
        return self.base + self._size

    def align(self) -> None:
        pad = -self._size % self.word_bytes
        if not self.virtual:
            self.data.extend(b"\0" * pad)
        self._size += pad

    def put(self, name: str, blob: bytes, kind: str, dedup: bool = True) -> int:
        """Place ``blob``; return its byte address."""
        if self.virtual:
            return self.reserve(name, len(blob), kind)
        key = hashlib.sha1(blob).hexdigest() if dedup else None
        if key is not None and key in self._by_hash:
            return self._by_hash[key]
        self.align()
        addr = self.end
        self.data.extend(blob)
        self._size += len(blob)
        self.align()
        if key is not None:
            self._by_hash[key] = addr
        self.regions.append({"name": name, "addr": addr, "bytes": len(blob), "kind": kind})
        return addr

    def reserve(self, name: str, nbytes: int, kind: str) -> int:
        """Zeroed space (inputs, outputs, spills; any block of a virtual image); return its
        byte address."""
        if not self.virtual:
            return self.put(name, b"\0" * nbytes, kind, dedup=False)
        self.align()
        addr = self.end
        self._size += nbytes
        self.align()
        self.regions.append({"name": name, "addr": addr, "bytes": nbytes, "kind": kind})
        return addr
