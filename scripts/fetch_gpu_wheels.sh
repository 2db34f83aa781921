#!/usr/bin/env bash
# Fill .whl/ (ignored) with Keras and the dependencies a lent GPU machine may lack, as wheels
# for Python 3.12 on manylinux x86_64, so scripts/gpu_reproduce.sh installs them there with no
# network. Run here, in the repository, where pip reaches its registry; then carry `.whl`.
#
#   scripts/fetch_gpu_wheels.sh [DEST]      # DEST defaults to .whl
#
# No TensorFlow: the GPU machine trains under torch or JAX (both already there) with
# --noexport; SavedModel/TFLite export happens back here. Versions are pinned so a second
# fetch gives the same files (one version of each: two would stop the install there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.whl}"
PYTHON="${PYTHON:-python3}"
# keras==3.15.1 (setup.cfg's pin) and its Requires-Dist: absl-py, numpy, rich, namex, h5py,
# optree, ml-dtypes, packaging; rich needs markdown-it-py (which needs mdurl) and pygments.
# numpy is not fetched: the machine's torch and JAX bring theirs, and a second numpy on the
# path would shadow the one they were built against.
WHEELS=(
  keras==3.15.1 namex==0.1.0 optree==0.19.0 absl-py==2.3.1 rich==14.2.0 markdown-it-py==4.0.0
  mdurl==0.1.2 pygments==2.19.2 h5py==3.15.1 ml-dtypes==0.5.4 packaging==25.0
)
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  --platform any -d "$DEST" "${WHEELS[@]}"
ls -l "$DEST"
du -sh "$DEST"
