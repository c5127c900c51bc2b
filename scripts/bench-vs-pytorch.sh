#!/usr/bin/env bash
# Times this project against PyTorch side by side on this machine's CPU and
# prints the table docs/speed.md and the README quote (see
# scripts/bench_vs_pytorch.py for what is timed and how).
#
#   scripts/bench-vs-pytorch.sh [--reps 5] [--threads 2] [--only NAME] [--out bench.json]
#
# The first run makes a venv with PyTorch for the CPU (a benchmark
# dependency only; nothing builds or tests with it): PyPI's torch wheel
# (about 540 MB) without its 3 GB of NVIDIA wheels, whose libraries it links
# against are replaced by stubs (bench_vs_pytorch.py --cuda-stubs). Needs
# python3 (3.9 or later), a C compiler, readelf and ldd.
# CODIFF_TORCH_VENV moves the venv (default ~/.cache/codiff-bench-torch);
# TORCH_VERSION pins another torch (default 2.15.0).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CODIFF_TORCH_VENV:-$HOME/.cache/codiff-bench-torch}
torch_version=${TORCH_VERSION:-2.15.0}
python=$venv/bin/python

if ! "$python" -c "import torch, yaml" 2>/dev/null; then
    echo "making $venv with PyTorch $torch_version for the CPU" >&2
    python3 -m venv "$venv"
    "$python" -m pip install --quiet --upgrade pip
    "$python" -m pip install --quiet --no-deps "torch==$torch_version"
    # What `import torch` needs of torch's dependencies, without the nvidia-* wheels
    # (pip then lists those it left out as conflicts: that is intended).
    "$python" -m pip install --quiet filelock typing-extensions sympy networkx jinja2 fsspec numpy pyyaml
    "$python" "$root/scripts/bench_vs_pytorch.py" --cuda-stubs "$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch/lib"
    "$python" -c "import torch; assert not torch.cuda.is_available(); print('torch', torch.__version__, 'imports', flush=True)" >&2
fi

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && cargo build --release --quiet)
exec "$python" "$root/scripts/bench_vs_pytorch.py" --codiff "$target/release/codiff" "$@"
