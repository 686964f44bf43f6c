#!/usr/bin/env bash
# Create .venv and install droplab into it. Idempotent: a second run with nothing changed is a no-op.
# Prefers the CPU build torch==2.13.0 when no torch is installed, so a CPU machine never pulls a
# multi-GB CUDA build; a torch that is already installed (any version >= 2.4) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${DROPLAB_EXTRAS-}   # e.g. DROPLAB_EXTRAS=test (what `make test` asks for)
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

stamp="$VENV/.droplab-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import droplab, torch" 2>/dev/null; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$VPY" -c "import torch" 2>/dev/null; then
    echo "droplab setup: installing torch==2.13.0 (CPU build where one is available locally)"
    "$VPY" -m pip install -q "torch==2.13.0" || {
        echo "droplab setup: torch==2.13.0 is not available here; install a torch>=2.4 build for your machine into $VENV first" >&2
        exit 1
    }
fi
# Pin whatever torch is installed so resolving droplab's dependencies never swaps it for another build.
tv=$("$VPY" -c "import importlib.metadata as m; print(m.version('torch'))")
cons="$VENV/droplab-constraints.txt"
echo "torch==$tv" > "$cons"
target="."
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
echo "droplab setup: installing droplab${EXTRAS:+[$EXTRAS]} (torch $tv kept)"
"$VPY" -m pip install -q -c "$cons" -e "$target"
echo "$want" > "$stamp"
