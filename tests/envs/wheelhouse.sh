#!/usr/bin/env bash
# Fill the wheelhouse that tests/scenarios/test_packaging.py installs from, so that test needs no
# network: the jazzmine framework's wheel (without its dependencies: the test only checks
# files and imports, never runs the framework), this project's runtime dependencies, and
# setuptools + wheel to build this project offline.
#   usage: bash tests/envs/wheelhouse.sh VENV   (VENV: a virtualenv with pip, e.g. .venv)
# Idempotent: a stamp keyed by this script and the project's dependency list makes a second
# run return at once; a changed key refills the folder from scratch, so no stale wheel stays.
set -euo pipefail
venv=${1:?usage: bash tests/envs/wheelhouse.sh VENV}
python=$venv/bin/python
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${XDG_CACHE_HOME:-$HOME/.cache}/jazzmine/wheelhouse

# The framework release the interop is pinned to (kept in step with tests/scenarios/test_packaging.py).
framework="jazzmine==0.1.42"

# Runtime dependencies, read from pyproject.toml so this list cannot drift from it (none is
# a model: set-up installs those; an old model dependency is still left out by name).
deps=$("$python" - "$root/pyproject.toml" <<'EOF'
import sys

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

with open(sys.argv[1], "rb") as file:
    project = tomllib.load(file)["project"]
print(" ".join(d for d in project["dependencies"] if not d.startswith("gemma3-270m")))
EOF
)

key=$( (cat "$0"; echo "$deps") | sha256sum | cut -c1-16)
if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

fresh=$dir.partial
rm -rf "$fresh"
mkdir -p "$fresh"
pip=("$python" -m pip --disable-pip-version-check download -q -d "$fresh")
"${pip[@]}" --no-deps "$framework"
# shellcheck disable=SC2086  # $deps is a space-separated list of requirement specifiers
"${pip[@]}" setuptools wheel $deps
echo "$key" > "$fresh/.stamp"
rm -rf "$dir"
mv "$fresh" "$dir"
echo "wheelhouse: $(ls "$dir" | wc -l) wheels in $dir"
