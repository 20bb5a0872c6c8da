#!/usr/bin/env bash
# One command for the benchmarks: a separate environment with the peers compared against
# (never project dependencies), then the scripts; results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev.sh demo "Hello" >/dev/null    # the project's own set-up: build and model
venv=.venv-bench
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[warm]" matplotlib litellm langchain-community ollama gguf jsonschema
# The in-process peer, built from the same pinned source with the same portable flags.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF" \
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-binary llama-cpp-python llama-cpp-python==0.3.36
"$venv/bin/python" bench/perf.py
"$venv/bin/python" bench/warm.py
"$venv/bin/python" bench/structured.py
"$venv/bin/python" bench/rpc.py
"$venv/bin/python" bench/reliability.py > bench/results/reliability.md
