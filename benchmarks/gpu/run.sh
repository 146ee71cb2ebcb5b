#!/usr/bin/env bash
# On the GPU machine (the device tool runs it in the repository root, with .whl carried):
#   bash benchmarks/gpu/run.sh tests    # CUDA tests and the block/engine suites on CUDA, about 3 min
#   bash benchmarks/gpu/run.sh speed    # benchmarks/speed.py --device cuda, about 6 min
# Output goes to $OUT (what comes back) or benchmarks/gpu/out.
set -euo pipefail
out="${OUT:-benchmarks/gpu/out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD:$PWD/clients/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
case "${1:-tests}" in
  tests)
    python3 -m pytest -p no:cacheprovider -q -rs -m cuda tests 2>&1 | tee "$out/cuda_tests.txt"
    ;;
  speed)
    python3 benchmarks/speed.py --device cuda --batches 1 64 256 1024 4096 --rounds 3 \
      --out "$out/speed_cuda.md" --json "$out/speed_cuda.json" 2>&1 | tee "$out/speed_cuda.log"
    ;;
  *)
    echo "usage: run.sh tests|speed" >&2
    exit 2
    ;;
esac
