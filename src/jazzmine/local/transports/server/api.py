"""llama-server's ``/completion`` API as warm mode speaks it.

Mirrors what llama.cpp's ``tools/server/server.cpp`` takes and sends on ``/completion``:
the request body for one streamed generation, the ``data: {...}`` events of its reply,
the closing event (``"stop": true``) with exact token counts and why generation stopped,
and the error body of a refused or failed request.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import LLMError, LLMInternalError, LLMInvalidRequestError, context_length_error
from ...request import GenerationRequest, RunOutcome


def request_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "n_predict": request.max_tokens if request.max_tokens is not None else -1,
        "stop": list(request.stop_sequences),
        "stream": True,
        "cache_prompt": True,
    }
    if request.temperature is not None:
        body["temperature"] = float(request.temperature)
    if request.seed is not None:
        body["seed"] = request.seed
    # llama-server's field names are the options' own names.
    body.update(request.sampling)
    if request.json_schema is not None:
        body["json_schema"] = request.json_schema
    if request.server_grammar is not None:
        body.update(request.server_grammar)
    elif request.grammar is not None:
        body["grammar"] = request.grammar
    return body


def event_outcome(final: dict[str, Any] | None, interrupted: bool, stderr: str) -> RunOutcome:
    outcome = RunOutcome(stderr=stderr, exit_code=0, interrupted=interrupted)
    if final is None:
        return outcome
    timings = final.get("timings") or {}
    outcome.prompt_tokens = final.get("tokens_evaluated")
    outcome.completion_tokens = final.get("tokens_predicted")
    stop_type = final.get("stop_type")
    if stop_type in ("eos", "word"):
        outcome.hit_token_limit = False
    elif stop_type == "limit":
        outcome.hit_token_limit = True
    outcome.details = {
        "prompt_tokens_reused": timings.get("cache_n", 0),
        "prompt_tokens_evaluated": timings.get("prompt_n"),
        "stop_type": stop_type,
        "id_slot": final.get("id_slot"),
    }
    if stop_type == "word":
        # The server cut the stop from the text, so only it can say which one matched
        # (a caller's stop or a turn marker, reported as per call reports it).
        outcome.details["stopped_by"] = final.get("stopping_word") or None
    return outcome


def parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("data: "):
        return None
    payload = line[6:].strip()
    if payload == "[DONE]":
        return None
    event: dict[str, Any] = json.loads(payload)
    return event


def status_error(status: int, body: str) -> LLMError:
    try:
        error = json.loads(body).get("error", {})
        message = error.get("message", body)
    except (ValueError, AttributeError):
        error, message = {}, body
    if error.get("type") == "exceed_context_size_error":
        return context_length_error(int(error["n_prompt_tokens"]), int(error["n_ctx"]))
    if 400 <= status < 500:
        return LLMInvalidRequestError(f"llama-server refused the request ({status}): {message}")
    return LLMInternalError(f"llama-server failed the request ({status}): {message}")


class EventReader:
    """Turns the server's event stream into reply bytes plus the closing event."""

    def __init__(self) -> None:
        self.final: dict[str, Any] | None = None

    def take(self, line: str) -> bytes | None:
        event = parse_event(line)
        if event is None:
            return None
        if event.get("stop"):
            self.final = event
        content = event.get("content") or ""
        return content.encode("utf-8") if content else None
