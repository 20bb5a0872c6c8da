"""keep_alive's durations: seconds or ``"30s"``/``"5m"``/``"1h"``, and what 0 and
a negative value mean (per-call mode; loaded until ``close()``)."""

from __future__ import annotations

import math
import re
import threading

from ..errors import OptionValueError

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_keep_alive(value: float | int | str | None, name: str = "keep_alive") -> float | None:
    """``None``/``0``: per-call mode; seconds or ``"30s"``/``"5m"``/``"1h"``; negative: forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise OptionValueError(f"{name} must be seconds or a duration like '5m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise OptionValueError(
                f"{name} must be seconds or a duration like '30s', '5m', '1h', got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds > threading.TIMEOUT_MAX:
        # The idle timer's thread dies of OverflowError past TIMEOUT_MAX (infinity too);
        # "until close()" has its own spelling.
        raise OptionValueError(
            f"{name} must be finite and at most {threading.TIMEOUT_MAX:.0f} seconds "
            f"(a negative value keeps the model loaded until close()), got {value!r}"
        )
    return None if seconds == 0 else seconds
