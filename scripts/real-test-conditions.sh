#!/usr/bin/env bash
# Builds a conditions folder (masks/ + captions.json, as `codiff eval --conditions`
# reads) from the original repository's three real CelebAMask-HQ test masks, each
# with four captions. These masks are test data only: never train or tune on them.
#   scripts/real-test-conditions.sh OUT [TEST_DATA]
set -euo pipefail
out=${1:?usage: $0 OUT [TEST_DATA]}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${2:-$here/../shared/reference/test_data}
mkdir -p "$out/masks"
for m in 512_mask_29980.png 512_mask_27007.png 256_mask_27044_edited.png; do
  [ -f "$data/$m" ] || { echo "no $data/$m: pass the folder of the original's test masks" >&2; exit 1; }
  cp "$data/$m" "$out/masks/$m"
done
captions='[
  "This man has a long thick beard. He is in his sixties.",
  "She is in her twenties. There is no beard on her face.",
  "This young man is clean-shaven. He looks like he is in his teens.",
  "The woman is about 45 years old."
]'
cat > "$out/captions.json" <<JSON
{
  "512_mask_29980.png": $captions,
  "512_mask_27007.png": $captions,
  "256_mask_27044_edited.png": $captions
}
JSON
echo "wrote $out (3 masks x 4 captions)"
