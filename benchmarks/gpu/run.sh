#!/usr/bin/env bash
# On the GPU machine (the device tool runs it in the repository root, with .whl carried):
#   bash benchmarks/gpu/run.sh tests    # CUDA tests and the block/engine suites on CUDA, about 3 min
#   bash benchmarks/gpu/run.sh speed    # benchmarks/speed.py --device cuda, about 6 min
#   bash benchmarks/gpu/run.sh http     # benchmarks/speed_http.py with the server and the in-process side on cuda
#   bash benchmarks/gpu/run.sh scaling  # benchmarks/scaling.py --device cuda (time and peak memory with n, steps, size)
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
  http)
    python3 benchmarks/speed_http.py --device cuda:0 --n 1 256 1024 --rounds 3 \
      --out "$out/speed_http_cuda.md" 2>&1 | tee "$out/speed_http_cuda.log"
    ;;
  scaling)
    plot=()  # the PNG needs matplotlib, which the GPU machine's image may lack: the table is enough then
    if python3 -c "import matplotlib" 2>/dev/null; then plot=(--plot "$out/scaling_cuda.png"); fi
    python3 benchmarks/scaling.py --device cuda --out "$out/scaling_cuda.md" ${plot[@]+"${plot[@]}"} 2>&1 | tee "$out/scaling_cuda.log"
    ;;
  *)
    echo "usage: run.sh tests|speed|http|scaling" >&2
    exit 2
    ;;
esac
