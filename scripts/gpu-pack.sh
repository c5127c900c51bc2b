#!/usr/bin/env bash
# Builds the CUDA release binary here (no GPU needed) and packs what
# scripts/gpu-check.sh needs on a GPU machine that has no Rust: the stripped
# command line without the studio (codiff-cli, half of codiff's size) and the
# few reference files it reads from ../shared, compressed into
# .gpu-pack/pack.tar.xz (ignored by git; carry `.gpu-pack`).
#
#   scripts/gpu-pack.sh
#
# CODIFF_CUDA_TARGET is the cargo target directory of the CUDA build (default
# ~/.cache/codiff-cuda/target): apart from the CPU build's, since the feature
# rebuilds candle; the first build takes 30-40 minutes on two cores.
# CODIFF_PACK_BINARY=PATH packs that binary instead of building one (a CPU
# build, to try gpu-check.sh's steps where there is no GPU).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$repo/../shared"
pack="$repo/.gpu-pack"
export CARGO_TARGET_DIR="${CODIFF_CUDA_TARGET:-$HOME/.cache/codiff-cuda/target}"

binary="${CODIFF_PACK_BINARY:-$CARGO_TARGET_DIR/release/codiff-cli}"
if [[ -z "${CODIFF_PACK_BINARY:-}" ]]; then
  eval "$("$repo/scripts/cuda-toolchain.sh")"
  echo "Building the CUDA release binary in $CARGO_TARGET_DIR ..." >&2
  (cd "$repo" && nice -n 10 cargo build --release --features cuda --bin codiff-cli)
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/shared/reference/configs"
strip -o "$stage/bin/codiff-cli" "$binary"
# The configs of the full-size 256 model (bench and parity write random
# weights for it) and the released checkpoint's key list (the PyTorch reference
# checks its networks against it).
cp "$shared"/reference/configs/256_*.yaml "$stage/shared/reference/configs/"
cp "$shared/reference/official-manifest.json" "$stage/shared/reference/"
# The binary looks for models/, assets/ and ../shared where it was built.
echo "$repo" >"$stage/build-root"

rm -rf "$pack"
mkdir -p "$pack"
tar -C "$stage" -cf - . | xz -9e -T2 >"$pack/pack.tar.xz"

# What travels to the GPU machine: tracked and untracked-unignored files plus the pack.
# (A tracked file moved away for the call does not travel: du skips it.)
travelling() (
  cd "$repo" || exit
  git ls-files -z --cached --others --exclude-standard | xargs -0 du -b 2>/dev/null
  true
)
tree_bytes="$(travelling | awk '{ t += $1 } END { print t + 0 }')"
pack_bytes="$(du -cb "$pack"/* | tail -n 1 | cut -f1)"
limit=$((64 * 1024 * 1024))
total=$((tree_bytes + pack_bytes))
awk -v p="$pack_bytes" -v t="$tree_bytes" 'BEGIN { printf "pack %.1f MB + working tree %.1f MB = %.1f MB of the 67.1 MB (64 MiB) that may travel\n", p / 1e6, t / 1e6, (p + t) / 1e6 }' >&2
if ((total > limit)); then
  echo "error: over the limit by $(((total - limit) / 1024)) KiB; the device call would be refused." >&2
  echo "The largest files that would travel (gpu-check.sh reads models/codiff.* and models/*.yaml only):" >&2
  travelling | sort -n | tail -n 3 >&2
  exit 1
fi
