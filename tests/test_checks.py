"""Option values parsed by ``durations.py``: here, the durations ``keep_alive`` accepts."""

from __future__ import annotations

import pytest

from jazzmine.local import LocalLLM
from jazzmine.local.durations import parse_keep_alive


def test_keep_alive_values() -> None:
    assert (
        parse_keep_alive(None) is None
        and parse_keep_alive(0) is None
        and parse_keep_alive("0") is None
    )
    assert parse_keep_alive(30) == 30 and parse_keep_alive("30s") == 30
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("1h") == 3600
    assert parse_keep_alive(-1) == -1 and parse_keep_alive("-1") == -1
    for bad in ("soon", "5 minutes", "1d", True):
        with pytest.raises(ValueError):
            parse_keep_alive(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LocalLLM(binary_path="/bin/true", model="x.gguf", keep_alive="later")
