"""llama.cpp's own chat templates (``models/templates`` of the pinned sdist), and the
assistant turns each writes: the yardstick of the tool-format and thinking round trips.

The templates are read from the llama-cpp-python source distribution the set-up
downloaded (``~/.cache/jazzmine/sdist``), unpacked once into the cache; they are data
nobody here wrote. ``written_call`` and ``written_thinking`` give the text a model
trained on a template would write after the generation prompt: the template's own
rendering of an assistant turn, minus the prompt it shares, up to the turn's end.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jazzmine.local import defaults
from jazzmine.local.errors import LLMInvalidRequestError
from jazzmine.local.setup.build import download_sdist
from jazzmine.local.template.diff import common_suffix
from jazzmine.local.template.engine.source import ChatTemplate
from jazzmine.local.template.markers import turn_after_prompt
from jazzmine.local.template.render import render
from jazzmine.local.types import MessagePart as M

BOS, EOS = "<|bos|>", "<|eos|>"

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
CLOCK_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "clock",
        "description": "The time now",
        "parameters": {"type": "object", "properties": {}},
    },
}
TOOLS = [WEATHER_TOOL, CLOCK_TOOL]
# nine alphanumerics: Mistral's templates refuse other ids
PARIS_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
}
QUESTION = M("user", "Weather in Paris?")
ANSWER = "It is sunny in Paris."
REASONING = "The user wants the weather, so I look it up."


def sdist_archive() -> Path:
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    return defaults.cache_root() / "sdist" / f"llama_cpp_python-{version}.tar.gz"


def template_dir() -> Path:
    """The unpacked ``models/templates`` directory of the pinned sdist."""
    version = defaults.LLAMA_CPP_PYTHON_VERSION
    target = defaults.cache_root() / f"templates-{version}"
    done = target / ".complete"
    if done.exists():
        return target
    archive = sdist_archive()
    if not archive.is_file():
        # a build cached from an earlier set-up, its download since removed: set-up
        # fetches it again (the set-up's network, not the tests')
        with tempfile.TemporaryDirectory() as work:
            archive = download_sdist(Path(work), lambda line: None)
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/models/templates/"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and name.startswith(prefix) and name.endswith(".jinja"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                (target / Path(member.name).name).write_bytes(extracted.read())
    done.touch()
    return target


def template_files() -> list[Path]:
    return sorted(template_dir().glob("*.jinja"))


def chat_template(path: Path) -> ChatTemplate:
    return ChatTemplate(path.read_text(encoding="utf-8"), BOS, EOS)


@dataclass(frozen=True)
class Written:
    """An assistant turn as a template writes it after its generation prompt."""

    prompt: str  # the rendered conversation up to and with the generation prompt
    reply: str  # what the model would write, up to (not with) its end of turn


def _turn_after_prompt(
    template: ChatTemplate, history: list[M], turn: M, **options: Any
) -> Written | None:
    """The text ``turn`` adds after the generation prompt of ``history``; None when
    the template refuses either rendering or the two share no generation prompt."""
    try:
        prompt = render(template, history, add_generation_prompt=True, **options)
        full = render(
            template, [*history, turn], add_generation_prompt=False, prefill_final=False, **options
        )
    except LLMInvalidRequestError:
        return None
    reply = turn_after_prompt(prompt, full, template)
    return None if reply is None else Written(prompt, reply)


def written_call(template: ChatTemplate) -> Written | None:
    """``get_weather(city="Paris")`` as the template writes it, with its tools given.

    None when the template writes no call after its generation prompt.
    """
    turn = M("assistant", "", tool_calls=[PARIS_CALL])
    written = _turn_after_prompt(template, [QUESTION], turn, tools=TOOLS)
    if written is None or "get_weather" not in written.reply or "Paris" not in written.reply:
        return None
    # What a plain answer's turn ends with too is the end of the turn, where the model
    # stops, when the turn-end table does not know the marker (MiniMax's "[e~[",
    # Nemotron Nano v2's "<SPECIAL_12>"): no part of the reply.
    plain = _turn_after_prompt(template, [QUESTION], M("assistant", ANSWER), tools=TOOLS)
    if plain is not None and not plain.reply.endswith(ANSWER):
        reply = written.reply
        shared = common_suffix(reply, plain.reply[plain.reply.rfind(ANSWER) + len(ANSWER) :])
        last = max(reply.rfind("Paris"), reply.rfind("get_weather"))
        cut = len(reply) - shared
        opening = reply.rfind("<", 0, cut)
        if opening >= 0 and ">" not in reply[opening:cut] and ">" in reply[cut:]:
            cut = reply.index(">", cut) + 1  # not inside a marker
        if shared and cut > last:
            written = Written(written.prompt, reply[:cut])
    return written


@dataclass(frozen=True)
class WrittenThinking(Written):
    """An assistant turn with reasoning; ``call``: the template shows reasoning only
    beside a tool call (Gemma 4, Command R7B), so the turn is ``get_weather`` after it
    (rendered with the tools), not ``ANSWER``."""

    call: bool = False


def written_thinking(template: ChatTemplate) -> WrittenThinking | None:
    """Reasoning and what follows it as the template writes them after its generation
    prompt, thinking on, the final turn as a finished one (llama.cpp renders the
    reasoning of the last assistant turn; ``prefill_final=False``). First an answer
    with its reasoning; when the template shows no reasoning there, a call with its
    reasoning. None when the template writes reasoning into neither."""
    answer = M("assistant", ANSWER, reasoning_content=REASONING)
    written = _turn_after_prompt(template, [QUESTION], answer, enable_thinking=True)
    if written is not None and REASONING in written.reply and ANSWER in written.reply:
        return WrittenThinking(written.prompt, written.reply)
    call = M("assistant", "", reasoning_content=REASONING, tool_calls=[PARIS_CALL])
    written = _turn_after_prompt(template, [QUESTION], call, tools=TOOLS, enable_thinking=True)
    if written is not None and REASONING in written.reply and "get_weather" in written.reply:
        return WrittenThinking(written.prompt, written.reply, call=True)
    return None
