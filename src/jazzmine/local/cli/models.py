"""``jazzmine pull`` and ``jazzmine models [--json]`` / ``jazzmine models rm NAME``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_model_commands(commands: Any) -> None:
    """The subcommands, on the parser's ``add_subparsers()`` object."""
    pull = commands.add_parser(
        "pull",
        help="download a GGUF from the Hugging Face Hub (checked) for hf: names",
        description="REPO[:QUANT] picks the file as llama.cpp's -hf does (default Q4_K_M, "
        "else Q8_0, else the first GGUF); REPO/FILE.gguf names one. HF_TOKEN for gated "
        "repositories, HF_ENDPOINT for a mirror.",
    )
    pull.add_argument("name", help="owner/repo[:QUANT] or owner/repo/file.gguf")
    pull.set_defaults(handler=_pull)

    models = commands.add_parser("models", help="list the models on disk (or: models rm NAME)")
    models.add_argument("--json", action="store_true", help="one JSON array")
    models.set_defaults(handler=_list)
    actions = models.add_subparsers(dest="models_command")
    rm = actions.add_parser("rm", help="delete a model's files")
    rm.add_argument("name", help="a name as `jazzmine models` shows it")
    rm.set_defaults(handler=_remove)


def _pull(args: argparse.Namespace) -> int:
    from ..models.hub import pull

    pulled = pull(args.name)
    size = sum(f.size for f in pulled.files)
    print(f"pulled hf:{pulled.name} ({_mib(size)}, sha256 checked): {pulled.model_path}")
    print(f'use it as LocalLLM(model="hf:{pulled.name}") or --model hf:{pulled.name}')
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..models.installed import installed

    entries = installed()
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    columns = ("name", "size", "architecture", "context", "template", "tools", "thinking", "source")
    rows = [[_cell(column, entry.get(column)) for column in columns] for entry in entries]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _cell(column: str, value: Any) -> str:
    if column == "size" and isinstance(value, int):
        return _mib(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)


def _mib(size: int) -> str:
    return f"{size / 1048576:.0f} MiB" if size >= 1048576 else f"{size / 1024:.0f} KiB"


def _remove(args: argparse.Namespace) -> int:
    from ..models.installed import remove

    for path in remove(args.name):
        print(f"removed {path}")
    return 0
