#!/usr/bin/env bash
# Tables 1 and 2 of a composed model on the issue's three sets: held-out
# synthetic conditions, the original's three real test masks (four captions
# each, cycled), and painted-style masks (`codiff synth --painted`).
#   scripts/eval-three-sets.sh CODIFF MODEL_DIR OUT [COUNT] [STEPS]
# MODEL_DIR holds codiff.yaml, codiff.safetensors and judges.safetensors (models/ does).
# The sets run on one thread each, two at a time. Last, OUT/showcase: the
# three real masks and those painted in the studio (docs/painted/), one
# caption each, whose faces.png the README shows.
set -euo pipefail
codiff=${1:?usage: $0 CODIFF MODEL_DIR OUT [COUNT] [STEPS]}
models=${2:?model dir}
out=${3:?out dir}
count=${4:-200}
steps=${5:-50}
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../../shared/reference/test_data
mkdir -p "$out"
"$here/real-test-conditions.sh" "$out/conditions-real" >/dev/null
"$codiff" synth --painted --count 200 --size 128 --seed 3 --out "$out/conditions-painted" >/dev/null
model=(--config "$models/codiff.yaml" --ckpt "$models/codiff.safetensors" --judges "$models/judges.safetensors")
run() { # name, count, extra args
  local name=$1 n=$2; shift 2
  RAYON_NUM_THREADS=1 "$codiff" eval "${model[@]}" --count "$n" --steps "$steps" --out "$out/$name" "$@" \
    > "$out/$name.log" 2>&1 && echo "$name: done" || { echo "$name: failed, see $out/$name.log"; return 1; }
}
run heldout "$count" & a=$!
run real "$count" --conditions "$out/conditions-real" & b=$!
wait $a; run painted "$count" --conditions "$out/conditions-painted" & c=$!
wait $b
show=$out/conditions-showcase
mkdir -p "$show/masks"
cp "$data"/512_mask_29980.png "$data"/512_mask_27007.png "$data"/256_mask_27044_edited.png "$here"/../docs/painted/*.png "$show/masks/"
cat > "$show/captions.json" <<'JSON'
{
  "512_mask_29980.png": "She is in her twenties. There is no beard on her face.",
  "512_mask_27007.png": "This man has a long thick beard. He is in his sixties.",
  "256_mask_27044_edited.png": "This young man is clean-shaven. He looks like he is in his teens.",
  "long-hair.png": "The woman is about 45 years old.",
  "short-hair.png": "This man has beard of medium length. He is in his thirties.",
  "curly-hair.png": "This person has no beard. She is in her forties."
}
JSON
n=$(ls "$show/masks" | wc -l)
run showcase "$n" --conditions "$show" --batch "$n"
wait $c
