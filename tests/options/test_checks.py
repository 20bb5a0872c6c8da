"""Option values parsed by ``options/durations.py``: here, the durations ``keep_alive`` accepts."""

from __future__ import annotations

import pytest

from jazzmine.local import LocalLLM
from jazzmine.local.options.durations import parse_keep_alive


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


def test_a_stop_with_a_lone_surrogate_is_a_typed_error_naming_it() -> None:
    from jazzmine.local import LLMInvalidRequestError, MessagePart
    from jazzmine.local.options.checks import check_stop

    assert check_stop("stop", ["ok", "é\U0001f600"]) == ("ok", "é\U0001f600")
    with pytest.raises(
        ValueError, match=r"stop sequence 'ab\\ud800' holds a lone surrogate"
    ) as err:
        check_stop("stop", ["ok", "ab\ud800"])
    assert isinstance(err.value, LLMInvalidRequestError)
    # At construction and per call alike, before any process is started.
    with pytest.raises(ValueError, match="lone surrogate"):
        LocalLLM(binary_path="/bin/true", model="x.gguf", stop=["\udc80"])
    llm = LocalLLM(binary_path="/bin/true", model="x.gguf")
    with pytest.raises(ValueError, match="lone surrogate"):
        llm.generate([MessagePart("user", "hi")], stop="\udc80")
