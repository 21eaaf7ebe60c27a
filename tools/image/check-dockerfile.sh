#!/usr/bin/env bash
# Runs check-dockerfile.py on the operator's and the jump host's Dockerfiles, in a virtualenv
# cached under ~/.cache (the parser comes from PyPI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sip-dockerfile-check"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import dockerfile" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "dockerfile==3.4.0"
fi
for f in Dockerfile images/jump-host/Dockerfile; do
  "$venv/bin/python" tools/image/check-dockerfile.py "$f"
done
