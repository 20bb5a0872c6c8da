"""The output of a rendering, capped as it is written and when it is joined.

jinja2 collects a macro's, ``{% set %}`` block's or ``{% filter %}`` block's output in a
list and joins it at the end, and prints each ``{{ value }}`` with str(): here each
printed value is checked first, each piece is counted, capped and charged as it is
written, and each join is capped, under the budget of ``budget``. No llama.cpp
counterpart: a sandbox limit of ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2.compiler import CodeGenerator, Frame

from .budget import MAX_TEXT, TemplateLimitError, built, current_budget
from .shape import check_printable


def finalize(value: Any) -> Any:
    """The environment's ``finalize``: each ``{{ value }}`` is checked before printing."""
    check_printable(value)
    return value


class OutputBuffer(list[str]):
    """The output of a macro, ``{% set %}`` block or ``{% filter %}`` block as written.

    jinja2 collects such output in a list and joins it only at the end, so a loop that
    writes fresh text each time would fill memory before concat() could check it; each
    piece is counted, capped and charged as it is written instead.
    """

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def _take(self, size: int) -> None:
        self.size += size
        if self.size > MAX_TEXT:
            raise TemplateLimitError(f"chat template output is over {MAX_TEXT} characters")
        budget = current_budget()
        if budget is not None:
            budget.step()
            budget.build(size)

    def append(self, piece: str) -> None:
        self._take(len(piece))
        super().append(piece)

    def extend(self, pieces: Iterable[str]) -> None:
        pieces = list(pieces)
        self._take(sum(map(len, pieces)))
        super().extend(pieces)


def concat(pieces: Iterable[str]) -> str:
    """The environment's ``concat``: the output of a template, macro or block, capped."""
    budget = current_budget()
    kept: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_TEXT:
            raise TemplateLimitError(f"chat template output is over {MAX_TEXT} characters")
        if budget is not None:
            budget.step()
        kept.append(piece)
    return built("".join(kept))  # type: ignore[no-any-return]


class BufferedCodeGenerator(CodeGenerator):
    """jinja2's code generator, with macro and block output in a capped buffer.

    The environment using it must offer ``output_buffer`` (an OutputBuffer factory).
    """

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")
