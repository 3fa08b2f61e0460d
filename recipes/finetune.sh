#!/usr/bin/env bash
# Fine-tune an AC checkpoint (default: the embedded model) on episodes of a scene it has not seen, and measure reach
# success in that scene before and after:
#   `vjepa-ac sim collect` (the new scene; or bring your own: raw DROID, RLDS or LeRobot episodes in $WORK/episodes)
#   -> `vjepa-ac encode` with the checkpoint's own encoder -> `vjepa-ac train recipes/finetune.yaml` from the
#   checkpoint -> export (checkpoint + model card) -> `python -m vjepa_ac.finetune_study` (before/after, seeds >= 5000).
#
# Usage: recipes/finetune.sh [STEP ...]      (default: every step in order)
#   STEP is one of: collect encode train export eval
# Environment: BASE (checkpoint to start from, default the embedded model), WORK (scratch folder, default
# runs/finetune), CAMERA_YAW (the new scene: exterior camera orbited by this many degrees, default 15),
# RANDOMIZATION (optional `sim collect --randomization FILE` for an appearance change instead), EPISODES (collected
# reach episodes, default 150, seeds 0..EPISODES-1), EVAL_EPISODES (per checkpoint, default 50, seeds 5000 and up),
# THREADS (torch/OpenMP threads, default 1).
# Every step is resumable or idempotent; the wall time of each is appended to $WORK/timings.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-vjepa_ac/default_model/vjepa-ac-sim-tiny.pt}
WORK=${WORK:-runs/finetune}
CAMERA_YAW=${CAMERA_YAW:-15}
RANDOMIZATION=${RANDOMIZATION:-}
EPISODES=${EPISODES:-150}
EVAL_EPISODES=${EVAL_EPISODES:-50}
OUT=${OUT:-$WORK/model/vjepa-ac-sim-tiny-finetuned.pt}
# shellcheck source=recipes/common.sh
source recipes/common.sh

step_collect() {
    # Scripted reach experts in the new scene; seeds below 5000 only (the evaluation's seeds stay unseen).
    local scene=(--camera-yaw "$CAMERA_YAW")
    if [ -n "$RANDOMIZATION" ]; then scene+=(--randomize --randomization "$RANDOMIZATION"); else scene+=(--no-randomize); fi
    "$VJEPA" sim collect --task reach --episodes "$EPISODES" --seed 0 --noisy-fraction 0 --failed-fraction 0 \
        "${scene[@]}" --out "$WORK/episodes" --no-progress
}

step_encode() {
    # The checkpoint's own frozen encoder: `vjepa-ac train` refuses a cache of any other encoder for fine-tuning.
    "$VJEPA" encode "$WORK/episodes" --out "$WORK/cache" --encoder-checkpoint "$BASE" --all-frames --crop droid \
        --camera left --no-progress
}

step_train() {
    "$VJEPA" train recipes/finetune.yaml data.cache="$WORK/cache" model.init_checkpoint="$BASE" \
        run.output_dir="$WORK/train"
}

step_export() {
    # The base model's card (planner settings, sim scene) with the fine-tuning's provenance added.
    "$PY" -m vjepa_ac.recipe export "$WORK/train/latest.pt" "$OUT" --card "${BASE%.pt}.json" \
        --set "name=$(basename "${OUT%.pt}")" --set "fine_tuned_from=$BASE" --set "recipe=recipes/finetune.sh" \
        --set "fine_tuning_scene={camera_yaw: $CAMERA_YAW, randomization: '$RANDOMIZATION', episodes: $EPISODES}"
}

step_eval() {
    "$PY" -m vjepa_ac.finetune_study --before "$BASE" --after "$OUT" --camera-yaw "$CAMERA_YAW" \
        --episodes "$EVAL_EPISODES" --seed 5000 --out "$WORK/eval"
}

steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then steps=(collect encode train export eval); fi
for step in "${steps[@]}"; do
    case $step in
        collect | encode | train | export | eval) timed "$step" "step_$step" ;;
        *) echo "unknown step $step (choose from: collect encode train export eval)" >&2; exit 2 ;;
    esac
done
