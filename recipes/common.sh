# Sourced by the recipes after they set WORK: tool paths, threads (THREADS, default 1: on a CPU shared with other
# jobs one thread per process is much faster than oversubscribed cores), the offscreen MuJoCo backend, and `timed`,
# which runs a step and appends its wall time to $WORK/timings.tsv.
export OMP_NUM_THREADS=${THREADS:-1}
export MUJOCO_GL=${MUJOCO_GL:-egl}
VJEPA=${VJEPA:-.venv/bin/vjepa-ac}
PY=${PY:-.venv/bin/python}
mkdir -p "$WORK"

timed() {
    local name=$1
    shift
    local start=$SECONDS
    "$@"
    printf '%s\t%d\n' "$name" $((SECONDS - start)) | tee -a "$WORK/timings.tsv"
}
