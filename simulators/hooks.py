"""Ready-made hooks for :meth:`simulators.program_run.SimBuild.run`.

A hook is any picklable object whose class is importable in the simulator process, with
optional methods ``checkpoint(ctx, program_index, instr_index)``,
``after_program(ctx, program_index)`` and ``result()``. :class:`ScriptHook` runs a fixed
list of memory reads and writes at given points and returns what it read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ScriptHook", "END"]

#: The point after a program's END (``ScriptHook`` key ``(program_index, END)``).
END = "end"

_ACTIONS = ("read_ext", "read_buf", "write_ext", "write_buf")


class ScriptHook:
    """Reads and writes at checkpoints, from a script.

    Parameters
    ----------
    script : mapping
        ``{(program_index, instr_index or END): [action, ...]}``; an action is
        ``("read_ext" | "read_buf", word_addr, n)`` or ``("write_ext" | "write_buf",
        word_addr, [words])`` (words of ``mem_port_bits``).

    ``result()`` is ``{(program_index, point): [reads, ...]}``: per point, each read's words
    (writes give None), plus ``("cycles", program_index, point)`` -> the program's cycles then.
    """

    def __init__(self, script: Mapping[tuple[int, int | str], Sequence[tuple]]):
        for point, actions in script.items():
            for action in actions:
                if not action or action[0] not in _ACTIONS or len(action) != 3:
                    raise ValueError(f"ScriptHook {point}: action {action!r} is not (one of {_ACTIONS}, addr, n|words)")
        self.script = {k: [tuple(a) for a in v] for k, v in script.items()}
        self.out: dict = {}

    def _run(self, ctx, point) -> None:
        actions = self.script.get(point)
        if actions is None:
            return
        got = []
        for name, addr, arg in actions:
            got.append(getattr(ctx, name)(addr, arg))
        self.out[point] = got
        self.out[("cycles",) + point] = ctx.cycles

    def checkpoint(self, ctx, program_index: int, instr_index: int) -> None:
        self._run(ctx, (program_index, instr_index))

    def after_program(self, ctx, program_index: int) -> None:
        self._run(ctx, (program_index, END))

    def result(self) -> dict:
        return self.out
