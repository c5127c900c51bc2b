#!/usr/bin/env bash
# Everything the GPU has to show, in one call on a machine with an NVIDIA GPU,
# its driver, the CUDA 13 libraries and PyTorch, but no Rust: it runs the
# binary that scripts/gpu-pack.sh built and packed into .gpu-pack here.
#
#   scripts/gpu-check.sh [RESULTS_DIR]     (default: $OUT, else ./gpu-results)
#
# 1. parity: every network on the GPU against the CPU (full-size 256 model
#    with random weights, and the default models), within 1e-3;
# 2. `codiff bench --json` on the GPU (full256 and default);
# 3. a 50-step full-size collaborative generation, timed;
# 4. a few training steps of each stage on the GPU, timed;
# 5. the default bench on the CPU at 1, 2, 4, 8 and 16 threads;
# 6. the original's UNet, dynamic diffuser and collaborative step in PyTorch.
# Each part has its own time limit, and one failing does not stop the others;
# the exit status says whether all passed. Results: gpu-check.log (all
# output), parity.json, bench-gpu.json, cpu-threads.json, torch.json,
# summary.json.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
results="${1:-${OUT:-$repo/gpu-results}}"
mkdir -p "$results"
exec > >(tee "$results/gpu-check.log") 2>&1
cd "$repo" || exit 1
failed=()
started=$SECONDS

step() { echo; echo "=== $* (at ${SECONDS}s)"; }
# run NAME SECONDS COMMAND...: runs it with a time limit, noting a failure.
run() {
  local name="$1" limit="$2"
  shift 2
  if ! timeout "$limit" "$@"; then
    echo "FAILED: $name"
    failed+=("$name")
    return 1
  fi
}

step "unpacking .gpu-pack"
work="$repo/.gpu-pack/unpacked"
rm -rf "$work" && mkdir -p "$work"
xz -dc .gpu-pack/pack.tar.xz | tar -C "$work" -xf - || { echo "error: .gpu-pack/pack.tar.xz is missing or broken; run scripts/gpu-pack.sh where Rust is and carry .gpu-pack"; exit 1; }
codiff="$work/bin/codiff-cli"

# The binary reads models/, assets/ and ../shared where it was built: lay that out here.
build_root="$(cat "$work/build-root")"
if [[ "$(realpath -m "$build_root")" != "$repo" ]]; then
  if [[ -e "$build_root" ]]; then
    echo "error: $build_root exists here and is not this checkout; the binary would read its models/."
    exit 1
  fi
  mkdir -p "$(dirname "$build_root")"
  ln -s "$repo" "$build_root"
fi
shared="$(dirname "$build_root")/shared"
[[ -e "$shared" ]] || ln -s "$work/shared" "$shared"

# The CUDA libraries the binary links, from wherever this machine keeps them
# (the CUDA toolkit, or PyTorch's NVIDIA wheels).
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
  found="$(find /usr/local/cuda/ /usr/local/nvidia/ /opt/ /usr/lib/ /usr/local/lib/ -name "$lib" 2>/dev/null | head -n 1)"
  [[ -n "$found" ]] && LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
[[ -d /usr/local/nvidia/lib64 ]] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64"
export LD_LIBRARY_PATH
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
if ldd "$codiff" | grep 'not found'; then
  echo "error: the libraries above are missing on this machine."
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
nproc

# The GPU parts insist on the GPU: without it they fail instead of timing the CPU.
export CODIFF_DEVICE=cuda
elapsed_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

step "parity: GPU against CPU, every network"
run parity 300 "$codiff" --verbose bench --parity --json --reps 1 >"$results/parity.json"
cat "$results/parity.json"

step "bench on the GPU"
run bench-gpu 240 "$codiff" --verbose bench --json --reps 5 >"$results/bench-gpu.json"
cat "$results/bench-gpu.json"

step "50-step full-size collaborative generation"
random_ckpt="$(find "${TMPDIR:-/tmp}/codiff-bench" -name '256_codiff_mask_text-random-*.safetensors' 2>/dev/null | head -n 1)"
mask="$work/mask.png"
# A two-class mask the size of the 256 model's images.
python3 -c "
import sys, zlib, struct
w = h = 256
rows = b''.join(b'\x00' + bytes(1 if (x - 128) ** 2 + (y - 120) ** 2 < 90 ** 2 else 0 for x in range(w)) for y in range(h))
def chunk(kind, data): return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 3, 0, 0, 0))
png += chunk(b'PLTE', bytes([0, 0, 0, 204, 0, 0])) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
" "$mask"
if [[ -n "$random_ckpt" ]]; then
  begin=$EPOCHREALTIME
  run generate-full 180 "$codiff" --verbose generate --config "$shared/reference/configs/256_codiff_mask_text.yaml" --ckpt "$random_ckpt" \
    --mask "$mask" --text "This man has beard of medium length. He is in his thirties." --out "$work/full256.png" --steps 50 &&
    echo "generate_full256_50_steps_with_load_s $(elapsed_since "$begin")"
else
  echo "FAILED: no random full-size checkpoint (the bench writes it)"; failed+=(generate-full)
fi

step "training: every stage, a few steps each, on the GPU"
train_dir="$work/train"
begin=$EPOCHREALTIME
run train 240 "$codiff" --verbose train all --out "$train_dir" --steps 20 </dev/null >"$work/train.log" 2>&1
tail -n 30 "$work/train.log"
echo "train_all_s $(elapsed_since "$begin")"

step "CPU thread scaling of the default bench"
for threads in 1 2 4 8 16; do
  echo "threads $threads"
  RAYON_NUM_THREADS=$threads CODIFF_DEVICE=cpu run "cpu-$threads" 120 "$codiff" bench --only default --reps 3 >"$work/cpu-$threads.json" &&
    cat "$work/cpu-$threads.json"
done

step "the original's networks in PyTorch"
run torch 240 python3 scripts/torch_reference.py --shared "$shared" --out "$results/torch.json"

step "summary"
python3 - "$results" "$work" "$train_dir" <<'EOF'
import csv, glob, json, os, sys
results, work, train_dir = sys.argv[1:4]
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None
summary = {"parity": {}, "gpu": {}, "cpu_threads": {}, "train_step_s": {}, "ours_over_theirs": {}}
parity = load(os.path.join(results, "parity.json"))
for name, figures in ((parity or {}).get("configs") or {}).items():
    summary["parity"][name] = {"worst_rel_err": figures.get("worst_rel_err"), "worst": figures.get("worst")}
bench = load(os.path.join(results, "bench-gpu.json"))
for name, figures in ((bench or {}).get("configs") or {}).items():
    summary["gpu"][name] = {k: v for k, v in figures.items() if k.endswith("_ms") or k == "device"}
threads = {}
for path in sorted(glob.glob(os.path.join(work, "cpu-*.json"))):
    figures = load(path)
    if figures:
        threads[os.path.basename(path)[4:-5]] = {k: figures.get(k) for k in ("collab_step_ms", "unet_ms", "generate50_ms", "first_preview_ms")}
summary["cpu_threads"] = dict(sorted(threads.items(), key=lambda kv: int(kv[0])))
json.dump(summary["cpu_threads"], open(os.path.join(results, "cpu-threads.json"), "w"), indent=2)
for path in glob.glob(os.path.join(train_dir, "train", "*", "*.loss.csv")):
    rows = list(csv.DictReader(open(path)))
    if len(rows) > 1:
        seconds = [float(r["seconds"]) for r in rows]
        summary["train_step_s"][os.path.basename(path)[:-9]] = (seconds[-1] - seconds[0]) / (len(rows) - 1)
torch = load(os.path.join(results, "torch.json"))
full = summary["gpu"].get("full256", {})
if torch and full:
    for ours, theirs in (("collab_step_ms", "collab_step_ms_tf32_off"), ("unet_ms", "unet_ms_tf32_off"), ("diffuser_ms", "diffuser_ms_tf32_off")):
        if full.get(ours) and torch.get(theirs):
            summary["ours_over_theirs"][ours] = full[ours] / torch[theirs]
summary["torch"] = torch
json.dump(summary, open(os.path.join(results, "summary.json"), "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF

echo
echo "took $((SECONDS - started)) s"
if ((${#failed[@]})); then
  echo "FAILED parts: ${failed[*]}"
  exit 1
fi
echo "all parts passed"
