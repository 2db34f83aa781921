#!/usr/bin/env bash
# One command for a lent GPU machine (see docs/devices.md, "A lent GPU: one command").
#
#   scripts/gpu_reproduce.sh prepare                 # here: .whl/ (Keras wheels) and .gpu_data/ptb/
#   scripts/gpu_reproduce.sh run --out "$OUT"        # there: install, probe, choose, train, pack
#   scripts/gpu_reproduce.sh collect --out "$OUT"    # there, the next call: wait, pack
#   scripts/gpu_reproduce.sh stop                    # there: end the started trainers
#
# The work is in scripts/gpu_reproduce.py (`--help` on each command lists its options);
# PYTHON picks the interpreter (default python3, the one holding torch and JAX there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
cd "$ROOT"
if [[ "${1:-}" == prepare ]]; then
  PYTHON="$PYTHON" "$ROOT/scripts/fetch_gpu_wheels.sh" "$ROOT/.whl"
fi
exec "$PYTHON" "$ROOT/scripts/gpu_reproduce.py" "$@"
