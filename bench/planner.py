"""Planner benchmark: planning time per action, ours vs Meta's reference planner at identical settings, same run.

The reference is Meta's `cem` + `WorldModel.infer_next_action` from their planning notebook (facebookresearch/vjepa2
at c2963a47, `notebooks/utils`), imported from a local checkout given as `--reference-src` (or $VJEPA2_SRC), with the
reference predictor holding the same weights as ours; nothing of it is part of this project. Both planners get the
same settings (samples x iterations x horizon, top 10, momenta 0.15, box bound 0.05 m) and the same random stream
(torch's default generator seeded with 0 vs our generator seeded with 0), so on the CPU their first-iteration energies
agree to float rounding and their actions should agree within 1 mm. Without a checkout, ours is compared with
`NaiveRollout` (the reference's full-history recompute in our code) and the script says so.

Variants of ours: eager fp32; `torch.compile`d fp32 (fused RoPE / bias + GELU / layer norm; falls back to eager where
compilation fails, and says so); bf16 (CPU autocast, native on CPUs with AVX512-BF16/AMX; GPU autocast with --device
cuda). Printed for each: wall and process-CPU seconds per plan, ratio to the reference, action difference; the FLOPs
of a plan (FlopCounterMode) against this machine's 2048^3 matmul rate measured in the same run; and the profile's top
operations of one plan, eager vs compiled. Settings: the notebook's (400 x 10 x horizon 2) and the paper's
(800 x 10 x 1), with the spec's tiny timing predictor (64-d, depth 2, 4 heads, 256 tokens per frame).

Threads: chosen by measurement (`planner.threads.choose_threads` on a rollout probe) unless --threads is given.

Usage: python -m bench.planner [--reference-src DIR] [--quick] [--repeats N] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bench.model_speed import import_reference, predictor_pair
from vjepa_ac.planner.action_space import SearchSpace
from vjepa_ac.planner.base import evaluate
from vjepa_ac.planner.cem import CEMConfig, CEMPlanner
from vjepa_ac.planner.objectives import GoalObjective
from vjepa_ac.planner.rollout import NaiveRollout, WorldModelRollout, imagine_states
from vjepa_ac.planner.threads import ThreadChoice, choose_threads
from vjepa_ac.worldmodel import PredictorConfig, normalize_reps

STATE = torch.tensor([0.58, 0.0, 0.25, -3.07, 0.03, -1.91, 1.0])  # the spec's planner-timing pose


def _cpu_flash_flops(q, k, v, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


# torch's counter has no formula for the CPU flash-attention kernel SDPA dispatches to; count it like the CUDA one.
_FLOP_MAPPING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """(GFLOP per wall second at the best of `repeats`, GFLOP per process-CPU second, median) of a size^3 matmul."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    wall, cpu = [], []
    for _ in range(repeats):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        a @ b
        _sync(device)
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


class ReferencePlanner:
    """Meta's notebook planner (`WorldModel.infer_next_action` -> `cem`) on a reference predictor, recording the
    energies of its first CEM iteration. Seeds torch's default generator with `seed` before each plan, which gives
    the stream our `CEMPlanner` draws from its own generator seeded alike."""

    def __init__(
        self, ref, predictor, tokens_per_frame: int, config: CEMConfig, device: torch.device, seed: int = 0
    ) -> None:
        import importlib

        wrapper = importlib.import_module("notebooks.utils.world_model_wrapper")
        logging.getLogger("notebooks.utils.mpc_utils").setLevel(logging.WARNING)  # it logs every CEM iteration
        self.first_energies: torch.Tensor | None = None
        self.seed = seed
        mpc_args = {
            "rollout": config.horizon, "samples": config.samples, "topk": config.topk, "cem_steps": config.iterations,
            "momentum_mean": config.momentum_mean, "momentum_std": config.momentum_std,
            "maxnorm": config.space.max_translation, "verbose": False, "objective": self._objective,
        }
        self.model = wrapper.WorldModel(
            encoder=None, predictor=predictor, tokens_per_frame=tokens_per_frame, transform=None, mpc_args=mpc_args,
            device=device,
        )

    def _objective(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        energies = torch.mean(torch.abs(a - b), dim=-1)
        if self.first_energies is None:
            self.first_energies = energies.float().cpu()
        return energies

    def plan(self, context: torch.Tensor, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The reference's action sequence [H, 7] from latents [N, D], a state [7] and a goal [N, D]."""
        self.first_energies = None
        torch.manual_seed(self.seed)
        with torch.no_grad():
            action = self.model.infer_next_action(context[None, None], state[None, None], goal[None, None])
        return action.float().cpu()


def timed(fn, device: torch.device) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def time_interleaved(planners: dict, repeats: int, device: torch.device) -> dict:
    """Call each planner `repeats` times, interleaved so load changes on a shared machine hit all alike.

    Returns name -> (median wall seconds, median process CPU seconds, last result). CPU time counts only this
    process's work, so it stays meaningful when other jobs compete for the cores.
    """
    runs: dict = {name: ([], [], None) for name in planners}
    for _ in range(repeats):
        for name, plan in planners.items():
            wall, cpu, out = timed(plan, device)
            runs[name][0].append(wall)
            runs[name][1].append(cpu)
            runs[name] = (runs[name][0], runs[name][1], out)
    return {name: (statistics.median(w), statistics.median(c), out) for name, (w, c, out) in runs.items()}


def top_ops(plan, rows: int = 6) -> list[tuple[str, float]]:
    """(operation, share of self CPU time) of the `rows` most expensive operations of one call of `plan`."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        plan()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:rows]]


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
    parser.add_argument("--reference-src", default=os.environ.get("VJEPA2_SRC", ""),
                        help="checkout of facebookresearch/vjepa2 (default: $VJEPA2_SRC); without it the baseline is "
                        "our NaiveRollout")
    parser.add_argument("--quick", action="store_true", help="4x fewer samples (a smoke run, not for the table)")
    parser.add_argument("--repeats", type=int, default=1, help="plans timed per variant (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: chosen by measurement)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]; on CUDA bf16 is autocast (default: cpu)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    parser.add_argument("--profile", action="store_true", help="print the top operations of one plan per variant")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build sees no CUDA device")
    torch.manual_seed(0)
    ref = import_reference(args.reference_src)
    ours_predictor, ref_predictor = predictor_pair(ref, full_size=False)
    ours_predictor.to(device)
    if ref_predictor is not None:
        ref_predictor.to(device).requires_grad_(False)
    n, d = ours_predictor.tokens_per_frame, ours_predictor.config.embed_dim
    gen = torch.Generator().manual_seed(1)
    context = normalize_reps(torch.randn(n, d, generator=gen))

    if args.threads is None:
        probe = WorldModelRollout(ours_predictor, context, STATE, precision="float32")
        choice = choose_threads(lambda: probe(torch.zeros(64, 2, 7)))
    else:
        torch.set_num_threads(args.threads)
        choice = ThreadChoice(args.threads)
    print(f"torch {torch.__version__}, {device}, {choice.describe()}, "
          f"reference: {args.reference_src if ref else 'none (baseline = NaiveRollout)'}")
    (fp32_rate, fp32_cpu_rate) = matmul_rate(torch.float32, device)
    (bf16_rate, bf16_cpu_rate) = matmul_rate(torch.bfloat16, device)
    print(f"matmul 2048^3: fp32 {fp32_rate:.1f} GFLOP/s ({fp32_cpu_rate:.1f} per CPU-second), bf16 {bf16_rate:.1f} "
          f"GFLOP/s ({bf16_cpu_rate:.1f} per CPU-second), bf16/fp32 {bf16_rate / fp32_rate:.2f}x")
    scale = 4 if args.quick else 1

    table = []
    for samples, iterations, horizon in ((400, 10, 2), (800, 10, 1)):
        config = CEMConfig(samples=samples // scale, iterations=iterations, horizon=horizon, seed=0,
                           space=SearchSpace(max_translation=0.05, translation_constraint="box"))
        label = f"{config.samples}x{iterations}x{horizon}"

        def rollout(precision: str, compile: bool = False) -> WorldModelRollout:
            return WorldModelRollout(ours_predictor, context, STATE, precision=precision, compile=compile)

        fp32 = rollout("float32")
        # A goal with a known optimum: what the model imagines for one fixed action sequence.
        target = torch.tensor([0.03, -0.02, 0.01, 0, 0, 0, 0]).expand(1, horizon, 7)
        goal = fp32(target)[0, -1].to(device)
        objective = GoalObjective(goal)
        variants = {"ours": fp32, "ours bf16": rollout("bfloat16")}
        if args.compile:
            for name, precision in (("ours compiled", "float32"), ("ours compiled bf16", "bfloat16")):
                compiled = rollout(precision, compile=True)
                wall, _, _ = timed(lambda r=compiled: CEMPlanner(config).plan(r, objective), device)
                state = "compiled" if compiled._step.is_compiled else f"eager fallback ({compiled._step.failure})"
                print(f"[{label}] {name}: first plan incl. compilation {wall:.0f} s, {state}")
                variants[name] = compiled
        planners = {name: (lambda r=r: CEMPlanner(config).plan(r, objective)) for name, r in variants.items()}
        if ref is not None:
            reference = ReferencePlanner(ref, ref_predictor, n, config, device)
            state_dev = STATE.to(device)
            planners = {"reference": lambda: reference.plan(context.to(device), state_dev, goal), **planners}
            baseline = "reference"
        else:
            naive = NaiveRollout(ours_predictor, context, STATE, precision="float32")
            planners = {"naive": lambda: CEMPlanner(config).plan(naive, objective), **planners}
            baseline = "naive"
        results = time_interleaved(planners, args.repeats, device)
        base_wall, base_cpu, base_out = results[baseline]
        base_actions = base_out if baseline == "reference" else base_out.actions
        if baseline == "reference":
            base_first = reference.first_energies
        else:
            base_first = base_out.energies[0]
        flops = counted_flops(fp32, objective, config.samples, horizon) * iterations
        print(f"\n[{label}] {baseline}: wall {base_wall:.2f} s, CPU {base_cpu:.2f} s; FLOPs per plan "
              f"{flops / 1e9:.1f} G (analytic {plan_flops(ours_predictor.config, config, naive=False) / 1e9:.1f} G)")
        # The floor: these FLOPs at the full fp32 matmul rate. A target ratio r to the baseline needs a sustained
        # share floor / (r * baseline) of that rate over the whole plan, attention included.
        floor = flops / 1e9 / fp32_cpu_rate
        print(f"  floor at 100% of the fp32 matmul rate: {floor:.2f} CPU-s = {floor / base_cpu:.3f}x the {baseline}'s "
              f"CPU time; 0.2x would need {100 * floor / (0.2 * base_cpu):.0f}% of that rate")
        for name, (wall, cpu, result) in results.items():
            if name == baseline:
                continue
            gap_mm = float((result.actions - base_actions)[:, :3].abs().max()) * 1e3
            # Utilisation per process-CPU second against the matmul's rate per CPU second: other jobs on a shared
            # machine stretch wall time but not the CPU time this process gets.
            rate, rate_wall = flops / cpu / 1e9, flops / wall / 1e9
            bf16 = "bf16" in name
            ceiling, ceiling_wall = (bf16_cpu_rate, bf16_rate) if bf16 else (fp32_cpu_rate, fp32_rate)
            print(f"  {name:<20} wall {wall:6.2f} s ({wall / base_wall:.2f}x), CPU {cpu:6.2f} s ({cpu / base_cpu:.2f}x)"
                  f", action vs {baseline} max |Δxyz| {gap_mm:.3f} mm, {rate:.1f} GFLOP per CPU-second = "
                  f"{100 * rate / ceiling:.0f}% of the {'bf16' if bf16 else 'fp32'} matmul's (per wall second: "
                  f"{100 * rate_wall / ceiling_wall:.0f}%)")
            table.append((label, name, wall, cpu, wall / base_wall, cpu / base_cpu, gap_mm, 100 * rate / ceiling))
        # First-iteration energies: ours recomputed with the same stream for an exact comparison.
        first = CEMPlanner(dataclasses.replace(config, iterations=1)).plan(fp32, objective)
        if baseline == "reference":
            gen0 = torch.Generator().manual_seed(0)
            ours_first = evaluate(fp32, objective, config.space.to_actions(
                config.space.sample(*config.space.initial_distribution(horizon), config.samples, gen0)), None)
        else:
            ours_first = first.energies  # naive records only summaries; compare the summary rows
            base_first = base_out.energies[:1]
        print(f"  first-iteration energies, ours fp32 vs {baseline}: max |diff| "
              f"{float((ours_first - base_first).abs().max()):.2e}")
        table.append((label, baseline, base_wall, base_cpu, 1.0, 1.0, 0.0, float("nan")))
        if args.profile:
            for name in ("ours", "ours compiled"):
                if name in planners:
                    ops = ", ".join(f"{op} {100 * share:.0f}%" for op, share in top_ops(planners[name]))
                    print(f"  profile {name}: {ops}")

    print("\n| setting | planner | wall s | CPU s | wall ratio | CPU ratio | action diff mm "
          "| % of matmul rate (per CPU-second) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, name, wall, cpu, wr, cr, gap, util in table:
        util_text = "" if util != util else f"{util:.0f}%"
        print(f"| {label} | {name} | {wall:.2f} | {cpu:.2f} | {wr:.2f}x | {cr:.2f}x | {gap:.2f} | {util_text} |")

    ours_pose, ref_pose = bench_pose_integration()
    print(f"\nimagined-state integration, 400 samples x 1 step: batched torch {ours_pose * 1e3:.2f} ms, per-sample "
          f"scipy loop {ref_pose * 1e3:.1f} ms ({ref_pose / ours_pose:.0f}x)")
    giant = PredictorConfig()
    print("full ViT-g AC predictor (305M), analytic FLOPs per plan and the matmul-bound floor on this machine:")
    for samples, iterations, horizon in ((800, 10, 1), (400, 10, 2)):
        config = CEMConfig(samples=samples, iterations=iterations, horizon=horizon)
        f_ours = plan_flops(giant, config, False)
        print(f"  {samples}x{iterations}x{horizon}: {f_ours / 1e12:.1f} TFLOP; floor {f_ours / fp32_rate / 1e9 / 60:.1f}"
              f" min fp32, {f_ours / bf16_rate / 1e9 / 60:.1f} min bf16")


if __name__ == "__main__":
    main()
