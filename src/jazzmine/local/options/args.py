"""What the command-line arguments a caller hands llama.cpp may say.

``extra_args`` go to every llama.cpp child as given, so the flags that would make it
reach the network, or undo what keeps a prompt private, are refused here. An
``argv_template`` is filled in per call, so its placeholders are checked now: a
misspelt one, or a template that never passes the prompt, fails at construction.
Both take arguments ``checks.check_arguments`` has already checked for type.
"""

from __future__ import annotations

import string

from ..errors import OptionValueError

TEMPLATE_FIELDS = ("prompt", "prompt_file", "model", "max_tokens", "temperature", "seed")

# Flags that could make llama.cpp reach the network; never passed through extra_args.
NETWORK_FLAGS = frozenset(
    {
        "-hf",
        "-hfr",
        "--hf-repo",
        "-hff",
        "--hf-file",
        "-hft",
        "--hf-token",
        "-mu",
        "--model-url",
        "-dr",
        "--docker-repo",
        "-hfd",
        "-hfrd",
        "--hf-repo-draft",
        "-hfv",
        "-hfrv",
        "--hf-repo-v",
        "-hffv",
        "--hf-file-v",
        "--server-base",
    }
)
# Flags that would undo what keeps a call private: the server's Unix socket in a 0700
# directory (a TCP listener instead), --no-slots (an endpoint showing every prompt), the
# private prompt file (the prompt in argv, readable by every local user), and files the
# server would read or write (keys, saved slots, static files).
PRIVACY_FLAGS = frozenset(
    {
        "--host",
        "--port",
        "--slots",
        "--metrics",
        "--props",
        "--slot-save-path",
        "--path",
        "--webui",
        "--api-key",
        "--api-key-file",
        "--ssl-key-file",
        "--ssl-cert-file",
        "-p",
        "--prompt",
        "-f",
        "--file",
        "-bf",
        "--binary-file",
    }
)


def refuse_flags(name: str, arguments: tuple[str, ...]) -> tuple[str, ...]:
    """``arguments`` unchanged, unless one is a network or privacy flag."""
    for argument in arguments:
        flag = argument.split("=", 1)[0]
        if flag in NETWORK_FLAGS:
            raise OptionValueError(
                f"{name} may not contain {argument!r}: LocalLLM never reaches the network"
            )
        if flag in PRIVACY_FLAGS:
            raise OptionValueError(
                f"{name} may not contain {argument!r}: it would undo what keeps prompts "
                "private (the server's private socket, --no-slots, the private prompt file)"
            )
    return arguments


def check_placeholders(name: str, template: tuple[str, ...]) -> tuple[str, ...]:
    """``template`` unchanged, unless a placeholder is unknown or the prompt never passed."""
    used = set()
    for part in template:
        try:
            fields = {
                field for _, field, _, _ in string.Formatter().parse(part) if field is not None
            }
        except ValueError as error:
            raise OptionValueError(
                f"{name} part {part!r} is malformed ({error}); "
                "write a literal brace as {{ or }}"
            ) from None
        unknown = fields - set(TEMPLATE_FIELDS)
        if unknown:
            raise OptionValueError(
                f"{name} part {part!r} has the placeholder {sorted(unknown)[0]!r}; known ones are "
                + ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            )
        used |= fields
    if not used & {"prompt", "prompt_file"}:
        raise OptionValueError(
            f"{name} never passes the prompt: give {{prompt}} or {{prompt_file}}"
        )
    return template
