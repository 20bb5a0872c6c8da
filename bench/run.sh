#!/usr/bin/env bash
# One command for the benchmarks: a separate environment with the peers compared against
# (never project dependencies), then the scripts; results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev.sh demo "Hello" >/dev/null    # the project's own set-up: build and model
venv=.venv-bench
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e . matplotlib litellm langchain-community ollama gguf jsonschema
# The in-process peer, built from the same pinned source with the same portable flags,
# read from the one place set-up reads them.
CMAKE_ARGS=$("$venv/bin/python" -c 'from jazzmine.local import defaults; print(" ".join(defaults.CPU_FLAGS + defaults.OFFLINE_FLAGS))') \
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-binary llama-cpp-python llama-cpp-python==0.3.36
"$venv/bin/python" bench/perf.py
"$venv/bin/python" bench/warm.py
"$venv/bin/python" bench/structured.py
"$venv/bin/python" bench/rpc.py
"$venv/bin/python" bench/reliability.py > bench/results/reliability.md
"$venv/bin/python" bench/soak.py
"$venv/bin/python" bench/tools.py
bash tests/envs/framework.sh .venv && .venv/bin/python bench/agent.py
