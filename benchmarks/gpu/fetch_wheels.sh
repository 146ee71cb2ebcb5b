#!/usr/bin/env bash
# On the development machine, before a session's first GPU run: download the wheels of benchmarks/gpu/wheels.txt
# for the GPU machine's Python (CPython 3.12, x86-64 Linux) into .whl/ (ignored by git; carried with the run).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
grep -v '^#' benchmarks/gpu/wheels.txt | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl
ls .whl
