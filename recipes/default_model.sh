#!/usr/bin/env bash
# Rebuild the embedded default world model (vjepa_ac/default_model/vjepa-ac-sim-tiny.pt) from nothing:
#   random tiny encoder -> `vjepa-ac sim collect` -> [`vjepa-ac pretrain`] -> `vjepa-ac encode` -> `vjepa-ac train`
#   -> export -> `vjepa-ac eval`.
#
# Usage: recipes/default_model.sh [STEP ...]      (default: every step in order)
#   STEP is one of: encoder collect collect_varied pretrain encode train export eval
# Environment: WORK (scratch folder, default runs/default_model), OUT (exported checkpoint), ENCODER (random, the
# shipped model: the frozen encoder stays at its random initialisation; pretrained: V-JEPA self-supervised
# pretraining of the encoder on the collected sim video first, see EVALUATION.md), OBJECTIVE (the pretraining
# objective with ENCODER=pretrained: vjepa2, the default, on a vit_tiny encoder; vjepa2_1, V-JEPA 2.1's dense loss with
# deep supervision on images and clips, on a vjepa2_1_vit_tiny encoder; vjepa2_1_dense, the same without deep
# supervision; see `vjepa-ac pretrain --help`), CAMERA (the view(s) the world model reads: left, the paper's single
# exterior view, or left+wrist, the exterior and wrist views side by side; see EVALUATION.md), PRETRAIN_SCENE (the
# pretraining video with ENCODER=pretrained: varied, every episode its own randomised scene, or fixed, the same motion
# in the evaluation's fixed scene: the data-variety ablation), EVAL_EPISODES (per
# task, default 20), THREADS (torch/OpenMP threads,
# default 1: on a CPU shared with other jobs one thread per process is much faster than oversubscribed cores; use the
# core count on an idle machine).
# Every step is resumable or idempotent; the wall time of each is appended to $WORK/timings.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/default_model}
OUT=${OUT:-vjepa_ac/default_model/vjepa-ac-sim-tiny.pt}
EVAL_EPISODES=${EVAL_EPISODES:-20}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-3000}
ENCODER=${ENCODER:-random}
OBJECTIVE=${OBJECTIVE:-vjepa2}
CAMERA=${CAMERA:-left}
PRETRAIN_SCENE=${PRETRAIN_SCENE:-varied}
# shellcheck source=recipes/common.sh
source recipes/common.sh

# Per objective: the starting encoder (file and preset), the pretraining folder and options.
case $OBJECTIVE in
    vjepa2) INIT_ENCODER=$WORK/encoder.pt INIT_PRESET=vit_tiny PRETRAIN_OPTIONS=(--objective vjepa2) ;;
    vjepa2_1) INIT_ENCODER=$WORK/encoder_vjepa2_1.pt INIT_PRESET=vjepa2_1_vit_tiny
        PRETRAIN_OPTIONS=(--objective vjepa2_1) ;;
    vjepa2_1_dense) INIT_ENCODER=$WORK/encoder_vjepa2_1.pt INIT_PRESET=vjepa2_1_vit_tiny
        PRETRAIN_OPTIONS=(--objective vjepa2_1 --no-deep-supervision) ;;
    *) echo "OBJECTIVE must be vjepa2, vjepa2_1 or vjepa2_1_dense, got $OBJECTIVE" >&2; exit 2 ;;
esac
PRETRAIN_DIR=$WORK/pretrain
if [ "$OBJECTIVE" != vjepa2 ]; then PRETRAIN_DIR=$WORK/pretrain_$OBJECTIVE; fi
# Pretraining video and the scene option of its collection; the fixed-scene ablation keeps its own folders.
case $PRETRAIN_SCENE in
    varied) PRETRAIN_EPISODES=$WORK/episodes_varied SCENE_OPTION=--randomize ;;
    fixed) PRETRAIN_EPISODES=$WORK/episodes_fixed_scene SCENE_OPTION=--no-randomize PRETRAIN_DIR=${PRETRAIN_DIR}_fixed_scene ;;
    *) echo "PRETRAIN_SCENE must be varied or fixed, got $PRETRAIN_SCENE" >&2; exit 2 ;;
esac
# Latents and predictor per camera; the single-view run keeps the plain names.
CACHE_DIR=$WORK/cache TRAIN_DIR=$WORK/train
if [ "$CAMERA" != left ]; then CACHE_DIR=$WORK/cache_$CAMERA TRAIN_DIR=$WORK/train_$CAMERA; fi

step_encoder() {
    # A random-initialised V-JEPA encoder at 128 px = 64 tokens/frame: vit_tiny (64-d, depth 2, 4 heads), or for the
    # 2.1 objectives vjepa2_1_vit_tiny (64-d, depth 4 = four output levels, image tokenizer): the start of
    # pretraining, or (vit_tiny, encoder.pt) the frozen encoder itself with ENCODER=random.
    "$PY" -m vjepa_ac.recipe init-encoder --out "$WORK/encoder.pt" --preset vit_tiny --img-size 128 --seed 0
    if [ "$INIT_ENCODER" != "$WORK/encoder.pt" ]; then
        "$PY" -m vjepa_ac.recipe init-encoder --out "$INIT_ENCODER" --preset "$INIT_PRESET" --img-size 128 --seed 0
    fi
}

step_collect() {
    # Scripted experts with noise and perturbations plus 20% random exploration, fixed appearance (the demo's scene);
    # no noisy-expert or failed-attempt episodes, so the shipped model's data stays as it was.
    local task episodes
    for spec in reach:200 grasp:60 reach_with_object:60 pick_and_place:80; do
        task=${spec%%:*}
        episodes=${spec##*:}
        "$VJEPA" sim collect --task "$task" --episodes "$episodes" --seed 0 --no-randomize \
            --noisy-fraction 0 --failed-fraction 0 --out "$WORK/episodes"
    done
}

step_collect_varied() {
    # Pretraining video with variety (only with ENCODER=pretrained): every episode its own randomised scene (object
    # shape, size and colour, distractors, textures, lighting, camera jitter; sim/randomization.py) and the default
    # mix of scripted, noisy, failed and random-exploration motion. The evaluation scene is not among them.
    # PRETRAIN_SCENE=fixed records the same motion mix in the evaluation's fixed scene instead.
    local task episodes
    for spec in reach:30 grasp:25 reach_with_object:20 pick_and_place:25; do
        task=${spec%%:*}
        episodes=${spec##*:}
        "$VJEPA" sim collect --task "$task" --episodes "$episodes" --seed 100 "$SCENE_OPTION" --out "$PRETRAIN_EPISODES"
    done
}

step_pretrain() {
    # V-JEPA masked-latent prediction on the left camera of the pretraining video, starting from the random encoder.
    "$VJEPA" pretrain "$PRETRAIN_EPISODES" --out "$PRETRAIN_DIR" --init "$INIT_ENCODER" --steps "$PRETRAIN_STEPS" \
        "${PRETRAIN_OPTIONS[@]}"
}

frozen_encoder() {
    case $ENCODER in
        random) echo "$WORK/encoder.pt" ;;
        pretrained) echo "$PRETRAIN_DIR/latest.pt" ;;
        *) echo "ENCODER must be random or pretrained, got $ENCODER" >&2; exit 2 ;;
    esac
}

step_encode() {
    # Every 15 Hz frame of the left exterior camera (and with CAMERA=left+wrist the wrist camera beside it), with the
    # reference's DROID crop.
    "$VJEPA" encode "$WORK/episodes" --out "$CACHE_DIR" --encoder-checkpoint "$(frozen_encoder)" \
        --all-frames --crop droid --camera "$CAMERA"
}

step_train() {
    "$VJEPA" train recipes/default_model.yaml data.cache="$CACHE_DIR" run.output_dir="$TRAIN_DIR"
}

step_export() {
    local sets=() objective=() name seconds
    if [ "$ENCODER" = pretrained ]; then
        objective=(--set "pretrain_objective=$OBJECTIVE" --set "pretrain_scene=$PRETRAIN_SCENE")
    fi
    while IFS=$'\t' read -r name seconds; do
        sets+=(--set "timings_seconds.$name=$seconds")
    done < "$WORK/timings.tsv"
    "$PY" -m vjepa_ac.recipe export "$TRAIN_DIR/latest.pt" "$OUT" --card recipes/default_model_card.yaml \
        --set "recipe_threads=$OMP_NUM_THREADS" --set "encoder_weights=$ENCODER" "${sets[@]}" "${objective[@]}" \
        --set "camera=$CAMERA" --set "sim.cameras=[${CAMERA//+/,}]"
}

step_eval() {
    "$VJEPA" eval --checkpoint "$OUT" --task all --episodes "$EVAL_EPISODES" --seed 1000 --out "$WORK/eval"
}

frozen_encoder > /dev/null
steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
    steps=(encoder collect)
    if [ "$ENCODER" = pretrained ]; then steps+=(collect_varied pretrain); fi
    steps+=(encode train export eval)
fi
for step in "${steps[@]}"; do
    case $step in
        encoder | collect | collect_varied | pretrain | encode | train | export | eval) timed "$step" "step_$step" ;;
        *) echo "unknown step $step (choose from: encoder collect collect_varied pretrain encode train export eval)" >&2
            exit 2 ;;
    esac
done
