"""Planner benchmark: planning time per action, our incremental rollout vs the reference's full-history recompute.

Both planners run the same CEM code with the same seed and the same predictor weights in the same process; only the
rollout differs:
* ours  (`planner.rollout.WorldModelRollout`): one token block per imagined step against a key/value cache;
* naive (`planner.rollout.NaiveRollout`): every imagined step re-runs the predictor on the whole history of every
  sample, as `WorldModel.infer_next_action` in Meta's notebook does.
Settings: the notebook's WorldModel defaults (400 samples x 10 iterations x horizon 2) and the paper's (800 x 10 x 1),
with the spec's tiny predictor (64-d, depth 2, 4 heads, 256 px -> 256 tokens per frame, random weights).

Also printed: FLOPs per plan (counted with torch's FlopCounterMode) against this CPU's measured 2048^3 matmul rate in
fp32 and bf16, whether bf16 autocast on CPU leaves the chosen action unchanged, the imagined-state integration
(batched torch vs a per-sample scipy loop like the reference's `compute_new_pose`), and the analytic FLOPs of a plan
with the full 305M-parameter ViT-g predictor.

Usage: python -m bench.planner [--quick] [--repeats N] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.objectives import GoalObjective
from vjepa_ac.planner.rollout import NaiveRollout, WorldModelRollout, imagine_states
from vjepa_ac.worldmodel import PredictorConfig, build_predictor, normalize_reps

STATE = torch.tensor([0.58, 0.0, 0.25, -3.07, 0.03, -1.91, 1.0])  # the spec's planner-timing pose


def _cpu_flash_flops(q, k, v, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


# torch's counter has no formula for the CPU flash-attention kernel SDPA dispatches to; count it like the CUDA one.
_FLOP_MAPPING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops}


def matmul_rate(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """(GFLOP per wall second at the best of `repeats`, GFLOP per process-CPU second, median) of a size^3 matmul."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        a @ b
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    flops = 2 * size**3 / 1e9
    return flops / min(wall), flops / statistics.median(cpu)


def step_flops(config: PredictorConfig, batch: int, past_steps: int) -> int:
    """Analytic FLOPs of appending one step block for `batch` samples after `past_steps` cached steps."""
    width, n = config.predictor_embed_dim, config.tokens_per_frame
    tokens = n + config.cond_tokens
    keys = (past_steps + 1) * tokens
    hidden = int(width * config.mlp_ratio)
    embed = 2 * n * config.embed_dim * width + config.cond_tokens * 2 * config.action_embed_dim * width
    per_layer = 2 * tokens * width * (3 * width + width + 2 * hidden) + 4 * tokens * keys * width
    readout = 2 * n * width * config.embed_dim
    return batch * (embed + config.depth * per_layer + readout)


def plan_flops(config: PredictorConfig, cem: CEMConfig, naive: bool, context_frames: int = 1) -> int:
    """Analytic FLOPs of one plan: ours appends one block per imagined step (the context before the current frame
    runs once, batch 1); naive recomputes every earlier block, context included, for every sample."""
    past = context_frames - 1
    per_iteration = 0
    for h in range(cem.horizon):
        if naive:
            # A forward over past + h + 1 blocks; SDPA with the block-causal mask still multiplies every query with
            # every key, so each block costs as much as the last one.
            per_iteration += (past + h + 1) * step_flops(config, cem.samples, past + h)
        else:
            per_iteration += step_flops(config, cem.samples, past + h)
    prefix = 0 if naive else sum(step_flops(config, 1, j) for j in range(past))
    return per_iteration * cem.iterations + prefix


def counted_flops(rollout, objective, samples: int, horizon: int) -> int:
    """FLOPs of evaluating `samples` candidates once, counted by FlopCounterMode (matmuls and attention)."""
    actions = torch.zeros(samples, horizon, 7)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_FLOP_MAPPING) as counter:
        objective(rollout(actions))
    return counter.get_total_flops()


def time_plans(rollouts: dict, objective, config: CEMConfig, repeats: int) -> dict:
    """Plan `repeats` times with each rollout, interleaved so load changes on a shared machine hit all alike.

    Returns name -> (median wall seconds, median process CPU seconds, last PlanResult). CPU time counts only this
    process's work, so it stays meaningful when other jobs compete for the cores.
    """
    times: dict = {name: ([], []) for name in rollouts}
    results: dict = {}
    for _ in range(repeats):
        for name, rollout in rollouts.items():
            cpu = time.process_time()
            results[name] = CEMPlanner(config).plan(rollout, objective)
            times[name][1].append(time.process_time() - cpu)
            times[name][0].append(results[name].seconds)
    return {
        name: (statistics.median(wall), statistics.median(cpu), results[name]) for name, (wall, cpu) in times.items()
    }


def reference_pose_loop(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Next states the way the reference integrates them: one scipy Rotation round trip per sample."""
    out = np.empty_like(states)
    for i, (s, a) in enumerate(zip(states, actions, strict=True)):
        rot = Rotation.from_euler("xyz", a[3:6]).as_matrix() @ Rotation.from_euler("xyz", s[3:6]).as_matrix()
        out[i, :3] = s[:3] + a[:3]
        out[i, 3:6] = Rotation.from_matrix(rot).as_euler("xyz")
        out[i, 6] = np.clip(s[6] + a[6], 0, 1)
    return out


def bench_pose_integration(samples: int = 400, repeats: int = 5) -> tuple[float, float]:
    actions = 0.05 * torch.randn(samples, 2, 7, dtype=torch.float64)
    states = STATE.double().expand(samples, 7).numpy().copy()
    ours, ref = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        imagine_states(STATE, actions)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference_pose_loop(states, actions[:, 0].numpy())
        ref.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4x fewer samples (a smoke run, not for the table)")
    parser.add_argument("--repeats", type=int, default=1, help="plans timed per setting (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    (fp32_rate, fp32_cpu_rate), (bf16_rate, bf16_cpu_rate) = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    print(
        f"matmul 2048^3 on {args.threads} threads: fp32 {fp32_rate:.1f} GFLOP/s ({fp32_cpu_rate:.1f} per CPU-second), "
        f"bf16 {bf16_rate:.1f} GFLOP/s ({bf16_cpu_rate:.1f} per CPU-second), bf16/fp32 {bf16_rate / fp32_rate:.2f}x"
    )

    predictor = build_predictor("vit_ac_tiny", img_size=(256, 256)).eval()
    n, d = predictor.tokens_per_frame, predictor.config.embed_dim
    gen = torch.Generator().manual_seed(1)
    context = normalize_reps(torch.randn(n, d, generator=gen))
    scale = 4 if args.quick else 1

    rows = []
    # (samples, iterations, horizon, context frames); the last setting feeds 3 past frames and their actions as
    # context, which ours runs once per plan and naive re-runs for every sample and iteration.
    for samples, iterations, horizon, frames in ((400, 10, 2, 1), (800, 10, 1, 1), (800, 10, 1, 4)):
        past = normalize_reps(torch.randn(frames - 1, n, d, generator=gen))
        latents, states = torch.cat([past, context[None]]), STATE.expand(frames, 7)
        actions = 0.01 * torch.randn(frames - 1, 7, generator=gen)
        ours = WorldModelRollout(predictor, latents, states, actions, precision="float32")
        ours_bf16 = WorldModelRollout(predictor, latents, states, actions, precision="bfloat16")
        naive = NaiveRollout(predictor, latents, states, actions, precision="float32")
        config = CEMConfig(samples=samples // scale, iterations=iterations, horizon=horizon, seed=0)
        label = f"{samples // scale}x{iterations}x{horizon}" + (f", {frames} context frames" if frames > 1 else "")
        # A goal with a known optimum: what the model imagines for one fixed action sequence.
        target = torch.tensor([0.03, -0.02, 0.01, 0, 0, 0, 0]).expand(1, horizon, 7)
        objective = GoalObjective(ours(target)[0, -1])
        rollouts = {"naive": naive, "ours": ours, "ours_bf16": ours_bf16}
        if args.compile:
            rollouts["ours_compiled"] = WorldModelRollout(
                predictor, latents, states, actions, precision="float32", compile=True
            )
            start = time.perf_counter()
            rollouts["ours_compiled"](torch.zeros(config.samples, horizon, 7))
            print(f"torch.compile first call: {time.perf_counter() - start:.0f} s")
        timed = time_plans(rollouts, objective, config, args.repeats)
        (wn, cn, rn), (wo, co, ro), (wb, cb, rb) = timed["naive"], timed["ours"], timed["ours_bf16"]
        energy_gap = float((rn.energies[0] - ro.energies[0]).abs().max())
        same = torch.allclose(ro.actions, rn.actions, atol=1e-6)
        bf16_gap = float((ro.actions - rb.actions)[0, :3].abs().max())
        flops_ours = counted_flops(ours, objective, config.samples, horizon) * iterations
        flops_naive = counted_flops(naive, objective, config.samples, horizon) * iterations
        analytic = plan_flops(predictor.config, config, naive=False, context_frames=frames)
        print(
            f"\n[{label}] CPU s: naive {cn:.2f}, ours {co:.2f} ({cn / co:.2f}x), ours bf16 {cb:.2f} "
            f"({co / cb:.2f}x vs fp32) | wall s: naive {wn:.2f}, ours {wo:.2f}, bf16 {wb:.2f}\n"
            f"  ours vs naive: same action {same}, first-iteration energies differ by <= {energy_gap:.1e}; "
            f"bf16 vs fp32 action: max |Δxyz| {bf16_gap * 1e3:.2f} mm; target Δxyz {target[0, 0, :3].tolist()}, "
            f"ours planned {[round(v, 4) for v in ro.actions[0, :3].tolist()]}"
        )
        print(
            f"  FLOPs/plan: ours {flops_ours / 1e9:.1f} G (analytic {analytic / 1e9:.1f} G), "
            f"naive {flops_naive / 1e9:.1f} G; ours runs at {flops_ours / co / 1e9:.1f} GFLOP per CPU-second "
            f"({100 * flops_ours / co / 1e9 / fp32_cpu_rate:.0f}% of the fp32 matmul's); matmul-bound floor "
            f"{flops_ours / fp32_rate / 1e9:.2f} s fp32, {flops_ours / bf16_rate / 1e9:.2f} s bf16"
        )
        if args.compile:
            wc, cc, rc = timed["ours_compiled"]
            print(
                f"  torch.compile: CPU {cc:.2f} s ({co / cc:.2f}x vs eager), wall {wc:.2f} s; "
                f"action vs eager: max |Δxyz| {float((ro.actions - rc.actions)[0, :3].abs().max()) * 1e3:.3f} mm"
            )
        rows.append((label, cn, co, cn / co, cb, same, bf16_gap * 1e3, flops_ours / 1e9, flops_naive / 1e9))

    ours_pose, ref_pose = bench_pose_integration()
    print(
        f"\nimagined-state integration, 400 samples x 1 step: batched torch {ours_pose * 1e3:.2f} ms, "
        f"per-sample scipy loop {ref_pose * 1e3:.1f} ms ({ref_pose / ours_pose:.0f}x)"
    )

    giant = PredictorConfig()
    print("\nfull ViT-g AC predictor (305M), analytic FLOPs per plan and the matmul-bound floor on this CPU:")
    for samples, iterations, horizon in ((800, 10, 1), (400, 10, 2)):
        config = CEMConfig(samples=samples, iterations=iterations, horizon=horizon)
        f_ours, f_naive = plan_flops(giant, config, False), plan_flops(giant, config, True)
        print(
            f"  {samples}x{iterations}x{horizon}: ours {f_ours / 1e12:.1f} TFLOP, naive {f_naive / 1e12:.1f} TFLOP; "
            f"floor {f_ours / fp32_rate / 1e9 / 60:.0f} min fp32, {f_ours / bf16_rate / 1e9 / 60:.0f} min bf16"
        )

    print(
        "\n| setting | naive CPU s | ours CPU s | speed-up | ours bf16 CPU s | same action | bf16 Δxyz mm "
        "| GFLOP ours | GFLOP naive |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, cn, co, ratio, cb, same, gap, fo, fn in rows:
        print(f"| {label} | {cn:.2f} | {co:.2f} | {ratio:.2f}x | {cb:.2f} | {same} | {gap:.2f} | {fo:.0f} | {fn:.0f} |")


if __name__ == "__main__":
    main()
