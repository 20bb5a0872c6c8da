#!/usr/bin/env bash
# A second virtualenv holding the published jazzmine framework beside this project, for
# tests/scenarios/test_framework.py and bench/agent.py: there LocalLLM runs inside the framework's
# own MessageEnhancer, FlowSelector, ConversationSummarizer and Agent.
#   usage: bash tests/envs/framework.sh VENV   (VENV: the project's virtualenv, e.g. .venv)
# The new virtualenv uses VENV's Python; it lives in ${XDG_CACHE_HOME:-~/.cache}/jazzmine/
# venv-framework (JAZZMINE_FRAMEWORK_VENV overrides), outside the work tree.
#
# The framework's wheel goes in without its dependencies: they include torch, transformers,
# onnxruntime, database drivers, docker, boto3 and codecarbon (gigabytes), which the
# LLM-calling parts never use. Only what those parts really import is installed:
#   pydantic   the message store's models (Message, Conversation, TurnTrace)
#   structlog  the agent's logger (AgentLogger, even the no-op one, logs through it)
# The rest are import-only stand-ins in tests/framework_stubs, put on PYTHONPATH by the
# test. tiktoken is left out on purpose: the framework then counts tokens by length, while
# with it it would fetch its BPE tables from the network on first use.
# This project goes in editable, with its runtime dependencies but not the model package:
# the model is the one `jazzmine setup` already assembled in the user cache.
#
# Idempotent: a stamp keyed by this script, the dependency list and the work tree's path
# makes a second run return at once; a changed key rebuilds the virtualenv from scratch.
set -euo pipefail
venv=${1:?usage: bash tests/envs/framework.sh VENV}
python=$venv/bin/python
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${JAZZMINE_FRAMEWORK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/jazzmine/venv-framework}

# The framework release the interop is pinned to (kept in step with tests/scenarios/test_framework.py).
framework="jazzmine==0.1.42"
light="pydantic>=2.12.5 structlog>=24"

# This project's runtime dependencies, read from pyproject.toml so the list cannot drift;
# the model package (named after its GGUF) is left out, see above.
deps=$("$python" - "$root/pyproject.toml" <<'EOF'
import re
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

with open(sys.argv[1], "rb") as file:
    project = tomllib.load(file)["project"]
model = re.compile(r"gguf|gemma|smollm", re.IGNORECASE)
print(" ".join(d for d in project["dependencies"] if not model.search(d)))
EOF
)

# The work tree's path is in the key: the editable install points into it.
key=$( (cat "$0"; echo "$deps"; echo "$root") | sha256sum | cut -c1-16)
if [ "$(cat "$dir/.jazzmine-stamp" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

if [ -e "$dir" ] && [ ! -f "$dir/pyvenv.cfg" ]; then
    echo "framework.sh: $dir exists and is not a virtualenv; not touching it" >&2
    exit 1
fi
base=$("$python" -c 'import sys; print(sys._base_executable)')
rm -rf "$dir"
"$base" -m venv "$dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
pip() {
    # pip complains of every framework dependency left out on purpose: shown only on failure.
    if ! "$dir/bin/python" -m pip --disable-pip-version-check install -q "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}
pip --no-deps "$framework"
# shellcheck disable=SC2086  # space-separated lists of requirement specifiers
pip $light $deps
pip --no-deps -e "$root"

# Fail now, not in the test, if the framework and this project do not import together.
PYTHONPATH=$root/tests/framework_stubs "$dir/bin/python" - <<'EOF'
import jazzmine.core.llm as framework
from jazzmine.local import LocalLLM

assert issubclass(LocalLLM, framework.BaseLLM), "LocalLLM does not extend the framework's"
EOF
echo "$key" > "$dir/.jazzmine-stamp"
size=$(du -sm "$dir" | cut -f1)
echo "framework venv: $framework and its light dependencies in $dir (${size} MB)"
