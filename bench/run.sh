#!/usr/bin/env bash
# One command for the benchmarks: a separate environment with the peers compared against
# (never project dependencies), then the scripts; results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev.sh demo "Hello" >/dev/null    # the project's own set-up: build and model
venv=.venv-bench
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[warm]" matplotlib litellm langchain-community ollama
"$venv/bin/python" bench/perf.py "$@"
"$venv/bin/python" bench/reliability.py > bench/results/reliability.md
