#!/usr/bin/env bash
# Installs the CUDA 13.0 toolchain that `cargo build --features cuda` needs
# (nvcc, headers, cuBLAS, cuRAND, NVRTC) from NVIDIA's wheels into a venv,
# then prints the environment to export. No GPU is needed to compile.
#
#   eval "$(scripts/cuda-toolchain.sh)"
#   cargo build --release --features cuda
#
# CODIFF_CUDA_VENV picks the venv (default ~/.cache/codiff-cuda); a second
# run reuses it. Progress goes to stderr, only the exports to stdout.
#
# Why these pins: the H200 machines run a CUDA 13.0 driver, which refuses PTX
# newer than its own; an unpinned nvidia-nvvm (13.5) writes PTX 9.5, which even
# the 13.0 ptxas refuses. Without nvidia-cuda-cccl, `nv/target` is missing.
set -euo pipefail

venv="${CODIFF_CUDA_VENV:-$HOME/.cache/codiff-cuda}"
packages=(
  "nvidia-cuda-nvcc==13.0.*"
  "nvidia-cuda-crt==13.0.*"
  "nvidia-cuda-runtime==13.0.*"
  "nvidia-cuda-cccl==13.0.*"
  "nvidia-nvvm==13.0.*"
  "nvidia-cuda-nvrtc==13.0.*"
  "nvidia-cublas==13.0.*"
  "nvidia-curand"
)

python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "Creating $venv ..." >&2
  "$python" -m venv "$venv" >&2
fi
echo "Installing the CUDA 13.0 wheels into $venv ..." >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2

root="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
if [[ ! -x "$root/bin/nvcc" ]]; then
  echo "error: $root/bin/nvcc is missing after the install; the wheels' layout may have changed." >&2
  exit 1
fi

# candle links the CUDA runtime (its MoE kernels), cuBLAS, cuRAND, NVRTC and
# the driver at build time (cudarc's dynamic-linking). The wheels ship only
# versioned libraries (libcublas.so.13), so the linker gets the plain names in
# a folder of their own. They ship no
# libcuda either: the driver comes with the machine's NVIDIA driver, so build
# a stub (soname libcuda.so.1, every driver entry point returning
# CUDA_ERROR_STUB_LIBRARY) from the entry points cudarc declares, as the CUDA
# toolkit's own lib64/stubs does. The binary loads the real libcuda.so.1 where
# it runs.
link="$venv/link"
mkdir -p "$link"
for lib in cudart cublas cublasLt curand nvrtc; do
  found="$(find "$root/lib" -maxdepth 1 -name "lib$lib.so.*" | head -n 1)"
  if [[ -z "$found" ]]; then
    echo "error: lib$lib.so.* is missing under $root/lib." >&2
    exit 1
  fi
  ln -sf "$found" "$link/lib$lib.so"
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cudarc="$(cd "$repo" && cargo metadata --quiet --format-version 1 --features cuda |
  "$venv/bin/python" -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
bindings="$(dirname "$cudarc")/src/driver/sys/mod.rs"
stub_c="$link/libcuda_stub.c"
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^pub unsafe fn //' | sort -u |
  awk '{ printf "int %s(void) { return 34; }\n", $1 }' >"$stub_c"
if [[ ! -s "$stub_c" ]]; then
  echo "error: found no driver entry points in $bindings." >&2
  exit 1
fi
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$stub_c"

cat <<EOF
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export CUDA_HOME="$root"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export PATH="$root/bin:\$PATH"
export LIBRARY_PATH="$link\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$root/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
EOF
