"""Tables and figures of a ``compare_methods.py`` record: runs grouped by method over seeds (mean ± std), the eval
curve (test PSNR / coverage against steps and training seconds), time to quality against a reference method, the
loss / Gaussian curves and the progress picture. Pure functions of the per-run result dicts (``<method>_s<seed>.json``)
except the two ``plot_*`` functions, which write PNGs.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

QUALITY_MARGIN_DB = 0.1
"""Time to quality: the first eval point whose test PSNR reaches the reference's final PSNR minus this."""


def by_method(results: List[Dict]) -> Dict[str, List[Dict]]:
    """Runs grouped by method, in first-seen order, each group sorted by seed."""
    groups: Dict[str, List[Dict]] = {}
    for r in results:
        groups.setdefault(r["method"], []).append(r)
    return {m: sorted(rs, key=lambda r: r.get("seed", 0)) for m, rs in groups.items()}


def mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (None for fewer than 2 values; both None for none). None and NaN values
    (e.g. peak GPU memory of a CPU run) are left out."""
    values = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_ms(values: Sequence[float], spec: str) -> str:
    """``mean ± std`` of ``values`` (``mean`` for one value, ``n/a`` for none)."""
    mean, std = mean_std(values)
    if mean is None:
        return "n/a"
    return format(mean, spec) + ("" if std is None else " ± " + format(std, spec))


def quality_target(results: List[Dict], reference: Optional[str]) -> Optional[float]:
    """The reference method's final test PSNR, mean over its seeds, minus :data:`QUALITY_MARGIN_DB`; None when the
    record has no run of ``reference``."""
    ref = [r["metrics"]["psnr"] for r in results if r["method"] == reference and "psnr" in r["metrics"]]
    return statistics.fmean(ref) - QUALITY_MARGIN_DB if ref else None


def time_to_quality(run: Dict, target: Optional[float]) -> Optional[Dict[str, float]]:
    """``{"step", "wall_s", "psnr"}`` of the first eval point of ``run`` whose PSNR reaches ``target``, or None when it
    never does (or there is no target). Wall seconds are training time, eval time excluded."""
    if target is None:
        return None
    for point in run.get("eval_curve", []):
        if point["psnr"] >= target:
            return {"step": point["step"], "wall_s": point["wall_s"], "psnr": point["psnr"]}
    return None


def summary_table(results: List[Dict], reference: Optional[str], iterations: int) -> List[str]:
    """Markdown rows per method, mean ± std over seeds: final quality, size, time, time to quality. Runs cut before
    their last step (``cut_at_step``, :func:`cut_notes`) have no final quality or wall time: those cells leave them
    out, and their Gaussians are those of their last eval point."""
    target = quality_target(results, reference)
    rows = ["| method | seeds | PSNR | SSIM | LPIPS | coverage | Gaussians | train wall (s) | s / 1k iter | "
            "time to quality (s) | steps to quality | peak GPU mem (GiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, runs in by_method(results).items():
        ttq = [time_to_quality(r, target) for r in runs]
        reached = [t for t in ttq if t is not None]
        ttq_note = "" if target is None else f" ({len(reached)}/{len(runs)} reached)"
        metric = lambda k: [r["metrics"].get(k) for r in runs]  # noqa: E731
        walls = [r["train_wall_s"] for r in runs if r["train_wall_s"] is not None]  # cut runs have none
        rows.append(
            f"| {method} | {', '.join(str(r.get('seed', '?')) for r in runs)} | {fmt_ms(metric('psnr'), '.2f')} | "
            f"{fmt_ms(metric('ssim'), '.3f')} | {fmt_ms(metric('lpips'), '.3f')} | "
            f"{fmt_ms(metric('coverage'), '.3f')} | {fmt_ms([r['num_gaussians'] for r in runs], ',.0f')} | "
            f"{fmt_ms(walls, '.0f')} | {fmt_ms([1000 * w / iterations for w in walls], '.1f')} | "
            f"{fmt_ms([t['wall_s'] for t in reached], '.0f')}{ttq_note} | {fmt_ms([t['step'] for t in reached], ',.0f')} | "
            f"{fmt_ms([r.get('peak_gpu_mem_gib') for r in runs], '.2f')} |"
        )
    return rows


def cut_notes(results: List[Dict]) -> List[str]:
    """One Markdown line per run cut before its last step (a device call's time limit): the step of its last eval
    point and the training seconds to it."""
    out = []
    for r in results:
        if r.get("cut_at_step") is not None:
            last = r["eval_curve"][-1]
            out.append(f"- {r['method']} (seed {r.get('seed', '?')}): cut after the eval at step {last['step']:,} "
                       f"({last['wall_s']:.0f} s of training); no final metrics")
    return out


def curve_table(results: List[Dict], key: str, spec: str) -> List[str]:
    """Markdown rows per method: ``key`` (``psnr``, ``coverage``, ``wall_s``, ``num_gaussians``) of the eval curve
    at each eval step, mean ± std over seeds."""
    groups = by_method(results)
    steps = sorted({p["step"] for runs in groups.values() for r in runs for p in r.get("eval_curve", [])})
    if not steps:
        return []
    rows = ["| method | " + " | ".join(f"{s:,}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for method, runs in groups.items():
        cells = []
        for s in steps:
            values = [p[key] for r in runs for p in r.get("eval_curve", []) if p["step"] == s]
            cells.append(fmt_ms(values, spec))
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return rows


def paired_table(results: List[Dict], reference: Optional[str]) -> List[str]:
    """Markdown rows per method other than ``reference``: its test PSNR minus the reference run's of the same seed
    (dB), mean ± std over the seeds both have, at each eval step, and inside / outside each ``--region-boxes`` region
    at the end. Pairing by seed takes out what the seed decides (initial points, view order),
    which makes an effect visible that the per-method spreads hide; it does not take out GPU non-determinism.
    Empty when the record has no run of ``reference`` or nothing pairs with it."""
    groups = by_method(results)
    base = {r.get("seed"): r for r in groups.get(reference, [])}
    if not base:
        return []
    steps = sorted({p["step"] for runs in groups.values() for r in runs for p in r.get("eval_curve", [])})
    regions = sorted({k for r in results for k in r.get("metrics", {}).get("region_psnr", {})})
    head = [f"{s:,}" for s in steps] + [f"{k} region {side}, final" for k in regions for side in ("inside", "outside")]
    rows = ["| method | seeds | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]

    def at(run: Dict, step: int) -> Optional[float]:
        return next((p["psnr"] for p in run.get("eval_curve", []) if p["step"] == step), None)

    def region(run: Dict, name: str, side: str) -> Optional[float]:
        return run.get("metrics", {}).get("region_psnr", {}).get(name, {}).get(side)

    for method, runs in groups.items():
        pairs = [(r, base[r.get("seed")]) for r in runs if method != reference and r.get("seed") in base]
        if not pairs:
            continue
        getters = [lambda r, s=s: at(r, s) for s in steps]
        getters += [lambda r, k=k, side=side: region(r, k, side) for k in regions for side in ("inside", "outside")]
        cells = []
        for get in getters:
            diffs = [get(a) - get(b) for a, b in pairs if get(a) is not None and get(b) is not None]
            mean, std = mean_std(diffs)
            cells.append("n/a" if mean is None else f"{mean:+.2f}" + ("" if std is None else f" ± {std:.2f}"))
        seeds = ", ".join(str(a.get("seed")) for a, _ in pairs)
        rows.append(f"| {method} | {seeds} | " + " | ".join(cells) + " |")
    return rows if len(rows) > 2 else []


def phase_table(results: List[Dict]) -> List[str]:
    """Markdown rows: Gaussian counts at the end of each guidance phase, mean ± std over seeds (runs recorded
    before the counts were kept are left out)."""
    rows = [r for r in results if r.get("gaussians_at_phase_end")]
    if not rows:
        return []
    ends = rows[0]["phase_ends"]
    out = ["| method | " + " | ".join(f"{p} (< {s:,})" for p, s in ends.items()) + " | final |",
           "|---|" + "---|" * (len(ends) + 1)]
    for method, runs in by_method(rows).items():
        cells = [fmt_ms([r["gaussians_at_phase_end"].get(p) for r in runs], ",.0f") for p in ends]
        out.append(f"| {method} | " + " | ".join(cells) + f" | {fmt_ms([r['num_gaussians'] for r in runs], ',.0f')} |")
    return out


def guidance_table(results: List[Dict]) -> List[str]:
    """Markdown rows: per guided run and phase, queries, boxes, source time and Gaussians guided; and the wall-time
    overhead against the unguided ``vlm-fastgs`` run of the same seed when there is one."""
    guided = [r for r in results if r.get("guidance")]
    if not guided:
        return []
    out = ["| method | seed | phase | queries applied | boxes | source time (s) | densify-guided GSs | "
           "prune-guided GSs |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in guided:
        base = next((b for b in results if b["method"] == "vlm-fastgs" and b.get("seed") == r.get("seed")), None)
        g = r["guidance"]
        for phase, p in g["phases"].items():
            out.append(f"| {r['method']} | {r.get('seed', '?')} | {phase} | {p['queries']} | {p['boxes']} | "
                       f"{p['source_s']:.1f} | {p['densify_gaussians']:,} | {p['prune_gaussians']:,} |")
        overhead = (f"; wall time {100 * (r['train_wall_s'] / base['train_wall_s'] - 1):+.1f}% against unguided "
                    "vlm-fastgs" if base else "")
        waited = (f" ({g['main_thread_wait_s']:.1f} s of it waiting for the source)"
                  if "main_thread_wait_s" in g else "")  # records before it was measured lack it
        notes.append(f"- {r['method']} (seed {r.get('seed', '?')}): source busy {g['worker_busy_s']:.1f} s on the "
                     f"worker thread; training thread {g['main_thread_snapshot_s']:.1f} s snapshotting + "
                     f"{g['main_thread_apply_s']:.1f} s applying{waited}; {g['dropped_queries']} queries dropped{overhead}")
    return [*out, "", *notes]


def _running_mean(values: List[float], w: int = 25) -> List[float]:
    return [sum(values[max(0, i - w + 1) : i + 1]) / len(values[max(0, i - w + 1) : i + 1]) for i in range(len(values))]


def plot_curves(results: List[Dict], path: Path, target: Optional[float] = None,
                phase_ends: Optional[Dict[str, int]] = None, iterations: Optional[int] = None) -> None:
    """2x2 PNG: test PSNR against steps and against training seconds (mean over seeds, thin lines per seed), training
    loss (running mean of 25 logs) and Gaussian count per run (at the eval points for a cut run, which kept no
    TensorBoard curves); the time-to-quality target as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_step, ax_time), (ax_loss, ax_gs) = axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (method, runs) in enumerate(by_method(results).items()):
        colour = colours[k % len(colours)]
        for j, r in enumerate(runs):
            curve = r.get("eval_curve", [])
            label = method if j == 0 else None
            if curve:
                ax_step.plot([p["step"] for p in curve], [p["psnr"] for p in curve], color=colour, lw=0.8, alpha=0.5,
                             marker=".", label=None)
                ax_time.plot([p["wall_s"] for p in curve], [p["psnr"] for p in curve], color=colour, lw=0.8,
                             alpha=0.5, marker=".", label=label)
            for ax, key in ((ax_loss, "loss"), (ax_gs, "gaussians")):
                pts = r.get("curves", {}).get(key, [])
                if not pts and key == "gaussians":  # a cut run kept no TensorBoard curves: its eval points' counts
                    pts = [[p["step"], p["num_gaussians"]] for p in curve]
                if pts:
                    values = [p[1] for p in pts]
                    ax.plot([p[0] for p in pts], _running_mean(values) if key == "loss" else values, color=colour,
                            lw=0.8, alpha=0.7, label=label)
        steps = sorted({p["step"] for r in runs for p in r.get("eval_curve", [])})
        means = [mean_std([p["psnr"] for r in runs for p in r.get("eval_curve", []) if p["step"] == s])[0]
                 for s in steps]
        if steps:
            ax_step.plot(steps, means, color=colour, lw=2, label=f"{method} (mean of {len(runs)})")
    if target is not None:
        for ax in (ax_step, ax_time):
            ax.axhline(target, color="grey", ls="--", lw=1)
    for phase, step in (phase_ends or {}).items():
        if iterations is None or step < iterations:
            ax_gs.axvline(step, color="grey", ls=":", lw=1)
            ax_gs.text(step, 0, f" end of {phase}", rotation=90, va="bottom", fontsize=7)
    ax_step.set(title="test PSNR", xlabel="iteration", ylabel="dB")
    ax_time.set(title="test PSNR against training time (eval excluded)", xlabel="seconds", ylabel="dB")
    ax_loss.set(title="training loss (running mean of 25 logs)", xlabel="iteration", yscale="log")
    ax_gs.set(title="number of Gaussians", xlabel="iteration")
    for ax in axes.flat:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_progress(results: List[Dict], path: Path, root: Path, seed: Optional[int] = None) -> bool:
    """PNG grid: one row per method (its run with ``seed``, else its first), one column per progress step, the
    fixed test view as rendered at that step, ground truth last. Image paths in the results are relative to
    ``root`` (the record's folder). False (nothing written) when no run saved images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = []
    for method, runs in by_method(results).items():
        run = next((r for r in runs if r.get("seed") == seed), runs[0])
        images = {int(s): root / p for s, p in (run.get("progress_images") or {}).items() if (root / p).is_file()}
        if images:
            rows.append((method, run, images))
    if not rows:
        return False
    steps = sorted({s for _, _, images in rows for s in images})
    first = Image.open(next(iter(rows[0][2].values())))
    aspect = first.height / first.width
    n_cols = len(steps) + 1
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.6 * aspect * len(rows) + 0.6), squeeze=False)
    for i, (method, run, images) in enumerate(rows):
        for j, step in enumerate(steps):
            ax = axes[i, j]
            if step in images:
                ax.imshow(Image.open(images[step]))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"step {step:,}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{method}\n(seed {run.get('seed', '?')})", fontsize=8)
            psnr = next((p["psnr"] for p in run.get("eval_curve", []) if p["step"] == step), None)
            if psnr is not None:
                ax.set_xlabel(f"{psnr:.2f} dB", fontsize=8)
        ax = axes[i, -1]
        gt = run.get("progress_gt")
        if gt and (root / gt).is_file():
            ax.imshow(Image.open(root / gt))
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_title("ground truth", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
