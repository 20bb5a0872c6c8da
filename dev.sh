#!/usr/bin/env bash
# The project's two entry points on a fresh machine:
#   bash dev.sh demo ["PROMPT"]   set up, then stream the default model's answer
#   bash dev.sh test [PYTEST ARGS] set up, then lint, type-check and run the test suite
# Set-up is idempotent: a virtualenv in .venv, the package (with its test tools for
# `test`), and `jazzmine setup` (llama.cpp built once into the user cache, the models);
# `test` also fills the offline wheelhouse and framework virtualenv its tests use.
set -euo pipefail
cd "$(dirname "$0")"
venv=${JAZZMINE_VENV:-.venv}

need_build_tools() {
    command -v cmake >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null
}
if ! need_build_tools; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq cmake g++ make >/dev/null
    else
        echo "dev.sh: cmake, a C++ compiler and make are needed to build llama.cpp" >&2
        exit 1
    fi
fi

command=${1:-demo}
shift || true
if [ "$command" != demo ] && [ "$command" != test ]; then
    echo "usage: bash dev.sh demo [PROMPT] | test [PYTEST ARGS]" >&2
    exit 2
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# The demo needs the package and set-up (llama.cpp, the models); the test command also
# needs the test tools and the offline material of the packaging and framework tests.
extras=""
[ "$command" = test ] && extras="[test]"
wanted="$(sha256sum pyproject.toml | cut -c1-16)$extras"
installed=$(cat "$venv/.jazzmine-installed" 2>/dev/null || true)
if [ "$installed" != "$wanted" ] && [ "$installed" != "$wanted[test]" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"
    echo "$wanted" > "$venv/.jazzmine-installed"
fi
"$venv/bin/jazzmine" setup
if [ "$command" = test ]; then
    # Registries are reached here, at set-up, never while the tests run.
    bash tests/envs/wheelhouse.sh "$venv"
    bash tests/envs/framework.sh "$venv"
fi

case "$command" in
    demo)
        "$venv/bin/jazzmine" run "${1:-What are the three primary colours?}" --max-tokens 64
        ;;
    test)
        "$venv/bin/ruff" check src tests bench
        "$venv/bin/mypy"
        "$venv/bin/python" -m pytest "$@"
        if [ $# -eq 0 ]; then
            # macOS's portable path (pipe prompt, lifeline launcher, short socket dir),
            # forced on Linux: the fault and privacy suites again.
            JAZZMINE_PORTABLE=1 "$venv/bin/python" -m pytest tests/scenarios/test_faults.py \
                tests/scenarios/test_fork.py tests/scenarios/test_hostile.py tests/process \
                tests/transports/test_argv.py tests/transports/test_private_file.py
        fi
        ;;
    *)
        echo "usage: bash dev.sh demo [PROMPT] | test [PYTEST ARGS]" >&2
        exit 2
        ;;
esac
