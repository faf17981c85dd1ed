"""benchmarks/compare_methods.py end to end on CPU (tiny budget), so the recorded benchmark stays re-runnable."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_methods.py"


@pytest.mark.slow
def test_compare_methods_writes_report(transforms_scene, tmp_path):
    """Two seeds of two methods, 2 runs at a time, then a guided and a DefaultStrategy run one by one."""
    out = tmp_path / "bench"
    common = ["--data", str(transforms_scene), "--downscale", "1", "--iterations", "20", "--out", str(out),
              "--runs-dir", str(tmp_path / "runs")]
    methods = ("vlm-fastgs:legacy", "vlm-fastgs")
    result = subprocess.run([sys.executable, str(SCRIPT), *common, "--methods", *methods, "--seeds", "42", "7",
                             "--jobs", "2"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    boxes = tmp_path / "regions.json"  # a background box on every image: masked PSNR on the guided run's curve
    boxes.write_text(json.dumps({"images": {f"{i:03d}.png": {"background": [[0, 0, 500, 1000]]} for i in range(64)}}))
    for method, extra in (("vlm-fastgs:default+none", []), ("vlm-fastgs+image-evidence", ["--region-boxes", str(boxes)])):
        result = subprocess.run([sys.executable, str(SCRIPT), *common, "--run-one", method, "--seed", "42", *extra],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    all_methods = (*methods, "vlm-fastgs:default+none", "vlm-fastgs+image-evidence")
    result = subprocess.run([sys.executable, str(SCRIPT), *common, "--report-only", "--seeds", "42", "7",
                             "--methods", *all_methods], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["seed"]): r for r in report["results"]}
    assert set(rows) == {(m, s) for m in methods for s in (42, 7)} | {(m, 42) for m in all_methods[2:]}
    run_dirs = {Path(r["config"]).parent for r in rows.values()}
    assert len(run_dirs) == len(rows)  # one run folder per run, also for runs started together
    guided = rows[("vlm-fastgs+image-evidence", 42)]
    masked = [p["region_psnr"]["subject"] for p in guided["eval_curve"]] + [guided["metrics"]["region_psnr"]["subject"]]
    assert masked and all(0 < m["inside"] < 60 and 0 < m["outside"] < 60 and m["inside_frac"] == 0.5 for m in masked)
    assert all(0 <= m["gaussians_inside"] <= guided["num_gaussians"] for m in masked[-1:])
    assert "Test PSNR inside and outside" in (out / "results.md").read_text()
    for row in rows.values():
        assert 0 < row["metrics"]["psnr"] < 60 and row["num_gaussians"] > 0 and row["curves"]["loss"]
        assert row["gpu"] == "cpu" and row["num_gaussians"] == row["curves"]["gaussians"][-1][1]
        assert 0.0 <= row["metrics"]["coverage"] <= 1.0 and Path(row["checkpoint"]).is_file()
        # 20 steps end before every phase does: each phase-end count is the final count
        assert row["gaussians_at_phase_end"] == dict.fromkeys(("detail", "subject", "artifacts"), row["num_gaussians"])
        curve = row["eval_curve"]
        assert [p["step"] for p in curve] == [1, 2, 4, 6, 8, 11, 14, 17, 20]  # 1k ... 20k scaled to 20 steps
        walls = [p["wall_s"] for p in curve]
        assert walls == sorted(walls) and walls[-1] <= row["train_wall_s"]
        assert curve[-1]["psnr"] == pytest.approx(row["metrics"]["psnr"], abs=1e-4)
        assert all(len(p["psnr_per_view"]) == row["metrics"]["num_eval_images"] for p in curve)
        assert all(sum(p["psnr_per_view"]) / len(p["psnr_per_view"]) == pytest.approx(p["psnr"]) for p in curve)
        assert curve[-1]["num_gaussians"] == row["num_gaussians"]
        assert sorted(map(int, row["progress_images"])) == [2, 4, 8, 14, 20]
        assert all((out / p).is_file() for p in row["progress_images"].values())
    assert rows[("vlm-fastgs", 42)]["guidance"] is None
    guided = rows[("vlm-fastgs+image-evidence", 42)]["guidance"]
    assert guided["source"] == "image-evidence" and guided["phases"] == {} and guided["dropped_queries"] == 0
    assert report["quality_target_psnr"] == pytest.approx(
        (rows[("vlm-fastgs:legacy", 42)]["metrics"]["psnr"] + rows[("vlm-fastgs:legacy", 7)]["metrics"]["psnr"]) / 2
        - 0.1)
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "progress.png").stat().st_size > 10_000
    md = (out / "results.md").read_text()
    assert "| vlm-fastgs:default+none | 42 |" in md and "| vlm-fastgs | 7, 42 |" in md and "±" in md
    assert "## Test PSNR (dB) at each eval step" in md and "## Guidance" in md


def _script():
    spec = importlib.util.spec_from_file_location("compare_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_at_reads_the_last_logged_count_before_each_phase_end():
    curve = [[0, 100], [500, 180], [7999, 900], [8000, 1500], [13000, 4000], [19999, 3500]]
    ends = {"detail": 8000, "subject": 14000, "artifacts": 15000, "early": 0}
    assert _script().counts_at(curve, ends) == {"detail": 900, "subject": 4000, "artifacts": 4000}


def test_guidance_table_reports_phases_and_overhead():
    base = {"method": "vlm-fastgs", "seed": 7, "train_wall_s": 200.0, "guidance": None}
    other_seed = {"method": "vlm-fastgs", "seed": 42, "train_wall_s": 100.0, "guidance": None}
    guided = {"method": "vlm-fastgs+vlm", "seed": 7, "train_wall_s": 230.0, "guidance": {
        "source": "vlm", "worker_busy_s": 40.0, "main_thread_snapshot_s": 1.5, "main_thread_apply_s": 2.0,
        "dropped_queries": 1, "phases": {"detail": {"queries": 15, "boxes": 7, "source_s": 30.0,
                                                    "densify_gaussians": 1200, "prune_gaussians": 0, "errors": 0}}}}
    lines = _script().guidance_table([other_seed, base, guided])
    assert "| vlm-fastgs+vlm | 7 | detail | 15 | 7 | 30.0 | 1,200 | 0 |" in lines
    assert any("+15.0% against unguided" in line and "1 queries dropped" in line for line in lines)  # same seed
    assert not any("waiting for the source" in line for line in lines)  # an older record: no wait measured
    guided["guidance"]["main_thread_wait_s"] = 1.25
    assert any("2.0 s applying (1.2 s of it waiting for the source);" in line
               for line in _script().guidance_table([base, guided]))


def _run(method, seed, final, curve, gaussians=1000, wall=100.0):
    return {"method": method, "seed": seed, "metrics": {"psnr": final, "ssim": 0.9, "coverage": 0.95},
            "num_gaussians": gaussians, "train_wall_s": wall, "peak_gpu_mem_gib": float("nan"),
            "eval_curve": [{"step": s, "wall_s": w, "psnr": p, "coverage": 0.9, "num_gaussians": gaussians}
                           for s, w, p in curve]}


def test_time_to_quality_and_summary_over_seeds():
    report = _script().bench_report
    ref = [_run("ref", 42, 25.0, [(1000, 10.0, 20.0), (2000, 20.0, 25.0)]),
           _run("ref", 7, 26.0, [(1000, 11.0, 21.0), (2000, 22.0, 26.0)])]
    new = [_run("new", 42, 26.0, [(1000, 5.0, 25.3), (2000, 9.0, 26.0)]),
           _run("new", 7, 25.5, [(1000, 6.0, 24.0), (2000, 13.0, 25.5)]),
           _run("new", 123, 24.0, [(1000, 6.0, 23.0), (2000, 12.0, 24.0)])]  # never reaches 25.4
    results = ref + new
    target = report.quality_target(results, "ref")
    assert target == pytest.approx(25.4)
    assert report.time_to_quality(new[0], target) == {"step": 2000, "wall_s": 9.0, "psnr": 26.0}
    assert report.time_to_quality(new[0], 25.3) == {"step": 1000, "wall_s": 5.0, "psnr": 25.3}  # reached: >=
    assert report.time_to_quality(new[1], target) == {"step": 2000, "wall_s": 13.0, "psnr": 25.5}
    assert report.time_to_quality(new[2], target) is None and report.time_to_quality(new[0], None) is None
    rows = report.summary_table(results, "ref", iterations=2000)
    new_row = next(r for r in rows if r.startswith("| new |"))
    cells = [c.strip() for c in new_row.split("|")[1:-1]]
    assert cells[1] == "7, 42, 123" and cells[2] == "25.17 ± 1.04"  # mean ± sample std of 26.0, 25.5, 24.0
    assert cells[9] == "11 ± 3 (2/3 reached)" and cells[10] == "2,000 ± 0" and cells[11] == "n/a"
    psnr_rows = report.curve_table(results, "psnr", ".1f")
    assert psnr_rows[0] == "| method | 1,000 | 2,000 |" and "| ref | 20.5 ± 0.7 | 25.5 ± 0.7 |" in psnr_rows


def test_report_only_keeps_the_eval_points_of_runs_a_time_limit_cut(tmp_path):
    """A finished run and a run cut after its 2k eval (only partial/<run>.jsonl): both are in the report, the cut
    one without final metrics, its curve points counted at the steps it reached, and a line says where it stopped."""
    script = _script()
    out = tmp_path / "rec"
    (out / "partial").mkdir(parents=True)
    done = _run("vlm-fastgs", 42, 26.0, [(1000, 10.0, 20.0), (2000, 20.0, 26.0)])
    (out / "vlm-fastgs_s42.json").write_text(json.dumps(done))
    cut_points = [{"step": 1000, "wall_s": 12.0, "psnr": 21.0, "ssim": 0.8, "coverage": 0.9, "num_gaussians": 700},
                  {"step": 2000, "wall_s": 25.0, "psnr": 27.0, "ssim": 0.85, "coverage": 0.92, "num_gaussians": 900}]
    (out / "partial" / "vlm-fastgs-boxes_s42.jsonl").write_text("".join(json.dumps(p) + "\n" for p in cut_points))
    (out / "progress" / "vlm-fastgs-boxes_s42").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 6), (90, 120, 200)).save(out / "progress" / "vlm-fastgs-boxes_s42" / "step_002000.png")
    script.main(["--data", str(tmp_path / "desk"), "--iterations", "4000", "--out", str(out), "--report-only",
                 "--seeds", "42", "7", "--methods", "vlm-fastgs", "vlm-fastgs+boxes", "--reference", "vlm-fastgs",
                 "--boxes-file", str(tmp_path / "boxes.json")])
    report = json.loads((out / "results.json").read_text())
    cut = next(r for r in report["results"] if r["method"] == "vlm-fastgs+boxes")
    assert cut["cut_at_step"] == 2000 and cut["metrics"] == {} and cut["num_gaussians"] == 900
    assert cut["phase_ends"] == {"detail": 8000, "subject": 14000, "artifacts": 15000}  # the method's schedule
    assert cut["progress_images"] == {"2000": "progress/vlm-fastgs-boxes_s42/step_002000.png"}
    assert cut["progress_gt"] is None
    assert cut["time_to_quality"] == {"step": 2000, "wall_s": 25.0, "psnr": 27.0}  # target 25.9 from the finished run
    md = (out / "results.md").read_text()
    assert "cut after the eval at step 2,000 (25 s of training); no final metrics" in md
    boxes_row = next(line for line in md.splitlines() if line.startswith("| vlm-fastgs+boxes | 42 |"))
    assert boxes_row.split("|")[3].strip() == "n/a"  # no final PSNR for a cut run
    assert "| vlm-fastgs+boxes | 21.00 | 27.00 |" in md  # its eval curve
    assert (out / "progress.png").is_file()  # the picture shows the cut run's images too


def test_scaled_steps_method_names_and_overrides(tmp_path):
    script = _script()
    assert script.scaled_steps(script.EVAL_STEPS, 20000) == list(script.EVAL_STEPS)
    assert script.scaled_steps(script.EVAL_STEPS, 8000) == [400, 800, 1600, 2400, 3200, 4400, 5600, 6800, 8000]
    assert script.scaled_steps((1000, 2000, 4000), 10) == [1, 2]  # at least 1, duplicates dropped
    assert script.parse_method("vlm-fastgs:legacy+image-evidence@refine_every=200,absgrad=false") == {
        "name": "vlm-fastgs", "variant": "legacy", "source": "image-evidence",
        "overrides": {"refine_every": "200", "absgrad": "false"}}
    names = {script.run_name(m, s) for m in ("vlm-fastgs", "vlm-fastgs:legacy", "vlm-fastgs+image-evidence",
                                             "vlm-fastgs@refine_every=200") for s in (42, 7)}
    assert len(names) == 8 and all("/" not in n and ":" not in n and "+" not in n for n in names)
    from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig
    from vlm_instruct_gs.vlm_fastgs_pipeline import VLMFastGSPipelineConfig

    pipeline = VLMFastGSPipelineConfig(model=VLMFastGSModelConfig())
    script._override(pipeline, {"refine_every": "200", "absgrad": "false", "high_error_thresh": "0.2",
                                "score_footprint": "box", "num_downscales": "0", "sh_degree_interval": "3000",
                                "subject_grow": "true", "spawn_budget": "500", "detail_every": "0"})
    model = pipeline.model
    s = model.fastgs
    assert (s.refine_every, s.absgrad, s.high_error_thresh, s.score_footprint) == (200, False, 0.2, "box")
    assert (model.num_downscales, model.sh_degree_interval) == (0, 3000)
    assert (pipeline.guidance.subject_grow, pipeline.guidance.spawn_budget) == (True, 500)
    assert pipeline.guidance.schedule.detail_every == 0 and pipeline.guidance.schedule.subject_every > 0
    with pytest.raises(SystemExit, match="has a field 'refine_evry'"):
        script._override(VLMFastGSPipelineConfig(model=VLMFastGSModelConfig()), {"refine_evry": "1"})
    # dataparser fields, on the trainer config compare_methods builds (its datamanager holds the scene dataparser)
    args = argparse.Namespace(data="scene", downscale=2, iterations=1000, num_random=100, seed=7, init="random",
                              runs_dir=None, out=str(tmp_path), vlm_model_path=None)
    config = script.trainer_config("vlm-fastgs@random_far_share=0.3,refine_every=200", args)
    dataparser = config.pipeline.datamanager.dataparser
    assert (dataparser.random_far_share, dataparser.init_seed, config.pipeline.model.fastgs.refine_every) == (
        0.3, 7, 200)


def test_eval_curve_excludes_eval_time(monkeypatch, tmp_path):
    """With a fake clock: training time advances 10 s per step, each eval 100 s; wall_s counts training only."""
    script = _script()
    clock = [0.0]
    curves = sys.modules[script.EvalCurve.__module__]  # benchmarks/bench_eval.py, where the curve reads its clock
    monkeypatch.setattr(curves.time, "perf_counter", lambda: clock[0])

    class FakeModel:
        num_points = 123

    class FakePipeline:
        model = FakeModel()
        mode = []

        def eval(self):
            self.mode.append("eval")

        def train(self):
            self.mode.append("train")

    def fake_evaluate(pipeline, threshold, with_lpips=True, first_view=None, regions=None):
        assert pipeline.mode[-1] == "eval" and not with_lpips and regions is None
        clock[0] += 100.0
        first_view.extend([torch.full((4, 6, 3), 0.5), torch.zeros(4, 6, 3)])
        return {"psnr": 20.0, "ssim": 0.5, "coverage": 0.7, "psnr_per_view": [19.0, 21.0]}

    monkeypatch.setattr(curves, "evaluate", fake_evaluate)
    pipeline = FakePipeline()
    curve = script.EvalCurve(pipeline, [2, 4], [4], tmp_path / "img", 0.1, points_file=tmp_path / "p" / "run.jsonl")
    assert curve.callback().iters == (1, 3)  # after loop steps 1 and 3: 2 and 4 steps done
    curve.start()
    for step in range(4):
        clock[0] += 10.0
        if step in (1, 3):
            curve(step)
    assert [(p["step"], p["wall_s"], p["num_gaussians"]) for p in curve.points] == [(2, 20.0, 123), (4, 40.0, 123)]
    assert curve.train_seconds() == 40.0 and curve.eval_seconds == 200.0 and pipeline.mode[-1] == "train"
    assert list(curve.images) == [4] and Path(curve.images[4]).is_file() and Path(curve.gt).is_file()
    written = [json.loads(line) for line in (tmp_path / "p" / "run.jsonl").read_text().splitlines()]
    assert written == curve.points  # each point on disk as soon as it is measured


def _regions_module():
    sys.path.insert(0, str(SCRIPT.parent))
    import bench_regions

    return bench_regions


def test_region_psnr_against_torchmetrics_on_masked_pixels(tmp_path):
    """PSNR inside / outside the background boxes of a boxes file, pooled over two eval images, equals torchmetrics'
    PSNR of the selected pixels; an image without an entry adds nothing."""
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    regions = _regions_module()
    boxes = {"images": {"a.png": {"background": [[0, 0, 500, 1000]]}, "b.png": {"background": [[0, 0, 1000, 250]]}}}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    region = regions.load_regions(str(path))
    gen = torch.Generator().manual_seed(0)
    h, w = 8, 12
    images = {n: (torch.rand(h, w, 3, generator=gen), torch.rand(h, w, 3, generator=gen)) for n in ("a.png", "b.png",
                                                                                                   "c.png")}
    errors = regions.RegionErrors(region)
    for name, (pred, gt) in images.items():
        errors.add(name, pred, gt)
    masks = {"a.png": torch.zeros(h, w, dtype=torch.bool), "b.png": torch.zeros(h, w, dtype=torch.bool)}
    masks["a.png"][:, :6] = True  # x 0-500 of 12 columns
    masks["b.png"][:2, :] = True  # y 0-250 of 8 rows
    assert region("subject", "a.png", h, w).equal(masks["a.png"]) and region("subject", "c.png", h, w) is None
    got = errors.psnr()
    assert set(got) == {"subject"}  # the file has background entries only: the background-completion phase

    def pooled(inside: bool):
        sel = [(images[n][0][m if inside else ~m], images[n][1][m if inside else ~m]) for n, m in masks.items()]
        return float(tm_psnr(torch.cat([p for p, _ in sel]), torch.cat([g for _, g in sel]), data_range=1.0))

    assert got["subject"]["inside"] == pytest.approx(pooled(True), abs=1e-4)
    assert got["subject"]["outside"] == pytest.approx(pooled(False), abs=1e-4)
    assert got["subject"]["inside_frac"] == pytest.approx((48 + 24) / (2 * 96))


def test_region_table_reads_each_phase_end():
    regions = _regions_module()

    def run(seed, inside):
        return {"method": "m", "seed": seed, "phase_ends": {"detail": 8000, "subject": 14000},
                "eval_curve": [{"step": s, "region_psnr": {"subject": {"inside": inside + s / 1000, "outside": 30.0,
                                                                        "inside_frac": 0.4}}}
                               for s in (8000, 14000, 20000)]}

    rows = regions.region_table([run(42, 20.0), run(7, 22.0)])
    assert rows[2] == "| m | subject | 14,000 | 35.00 ± 1.41 | 30.00 ± 0.00 | 0.40 ± 0.00 | n/a |"  # 14k, not 20k
    assert len(rows) == 3 and regions.region_table([{"method": "m", "eval_curve": [{"step": 1}]}]) == []


def test_boxes_source_takes_the_boxes_file(tmp_path):
    import argparse

    script = _script()
    args = argparse.Namespace(vlm_model_path=None, data=str(tmp_path / "scene"), downscale=2, init="random",
                              num_random=100, seed=7, iterations=2000, runs_dir=None, out=str(tmp_path), boxes_file=None)
    with pytest.raises(SystemExit, match="need --boxes-file"):
        script.trainer_config("vlm-fastgs+boxes", args)
    args.boxes_file = "configs/guidance/desk_vr_background_boxes.json"
    config = script.trainer_config("vlm-fastgs+boxes", args)
    assert config.pipeline.guidance.source == "boxes" and config.machine.seed == 7
    assert config.pipeline.guidance.boxes_file == Path(args.boxes_file)
    assert script.trainer_config("vlm-fastgs", args).pipeline.guidance.source == "none"  # the registry is untouched


def test_compressed_schedule_scales_the_configured_counts(tmp_path):
    """``--compress-schedule`` scales the variant's own counts (legacy's final passes too), as the demo does."""
    import argparse

    script = _script()
    args = argparse.Namespace(vlm_model_path=None, data=str(tmp_path), downscale=2, init="random", num_random=100,
                              seed=42, iterations=2000, runs_dir=None, out=str(tmp_path), boxes_file=None,
                              compress_schedule=True)
    new, legacy = (script.trainer_config(m, args).pipeline for m in ("vlm-fastgs", "vlm-fastgs:legacy"))
    full = script.trainer_config("vlm-fastgs", argparse.Namespace(**{**vars(args), "compress_schedule": False}))
    s, f = new.model.fastgs, full.pipeline.model.fastgs
    assert (s.refine_every, s.early_refine_every, s.early_refine_stop_iter) == (f.refine_every // 10, 10, 150)
    assert legacy.model.fastgs.final_prune_every == 300 and legacy.model.fastgs.early_refine_every == 0
    assert new.guidance.schedule.detail_stop == full.pipeline.guidance.schedule.detail_stop // 10
    assert (new.model.resolution_schedule, new.model.sh_degree_interval) == (300, 100)
    with pytest.raises(SystemExit, match="vlm-fastgs methods only"):
        script.trainer_config("splatfacto", args)


def test_gaussians_inside_a_region_by_footprint():
    """Footprints [1, N, 2] px: wholly inside the left-half region, wholly outside, straddling it mostly outside,
    culled (radius 0); counted once over two views."""
    from splat_core.rendering.views import RenderedView

    regions = _regions_module()
    h, w = 16, 32
    left = torch.zeros(h, w, dtype=torch.bool)
    left[:, :16] = True
    errors = regions.RegionErrors(lambda phase, name, hh, ww: left if phase == "subject" else None)

    def view(centres, radii):
        return RenderedView(rgb=torch.zeros(h, w, 3), depth=torch.ones(h, w), alpha=torch.ones(h, w),
                            means2d=torch.tensor([centres], dtype=torch.float32),
                            radii=torch.tensor([radii], dtype=torch.int32), depths=torch.ones(1, len(radii)))

    errors.add_gaussians("a.png", view([[5, 8], [25, 8], [18, 8], [5, 8]], [[3, 3], [3, 3], [4, 4], [0, 0]]))
    assert errors.inside["subject"].tolist() == [True, False, False, False]
    errors.add_gaussians("b.png", view([[25, 8], [5, 8], [18, 8], [5, 8]], [[3, 3], [3, 3], [4, 4], [0, 0]]))
    errors.add("a.png", torch.zeros(h, w, 3), torch.full((h, w, 3), 0.1))
    got = errors.psnr()["subject"]
    assert got["gaussians_inside"] == 2 and got["inside"] == pytest.approx(20.0, abs=1e-4)


def test_result_json_puts_each_curve_on_one_line_and_round_trips():
    bench = _script()
    result = {"method": "vlm-fastgs", "metrics": {"psnr": 21.5},
              "curves": {"loss": [[0, 0.21705], [10, 0.15264]], "gaussians": [[0, 100.0], [10, 112.0]]}}
    text = bench.result_json(result)
    assert json.loads(text) == result
    lines = text.splitlines()
    assert any(line.strip() == '"loss": [[0,0.21705],[10,0.15264]],' for line in lines)
    assert '"psnr": 21.5' in text  # the rest stays indented, one value a line


def test_paired_table_subtracts_the_reference_run_of_the_same_seed():
    report = _script().bench_report

    def run(method, seed, psnrs, inside=None):
        metrics = {"psnr": psnrs[-1]}
        if inside is not None:
            metrics["region_psnr"] = {"subject": {"inside": inside, "outside": 20.0}}
        return {"method": method, "seed": seed, "metrics": metrics,
                "eval_curve": [{"step": s, "psnr": p} for s, p in zip((1000, 2000), psnrs)]}

    results = [run("ref", 7, [20.0, 21.0], 19.0), run("ref", 42, [22.0, 23.0], 21.0),
               run("new", 7, [20.5, 21.2], 19.4), run("new", 42, [22.5, 23.6], 21.0),
               run("new", 99, [30.0, 30.0], 30.0)]  # no reference run of seed 99: left out
    rows = report.paired_table(results, "ref")
    assert rows[0] == ("| method | seeds | 1,000 | 2,000 | subject region inside, final | subject region outside, final |")
    assert rows[2] == "| new | 7, 42 | +0.50 ± 0.00 | +0.40 ± 0.28 | +0.20 ± 0.28 | +0.00 ± 0.00 |"
    assert len(rows) == 3  # the reference itself gets no row
    assert report.paired_table(results, "missing") == []


@pytest.mark.slow
def test_runs_of_one_seed_train_alike(transforms_scene, tmp_path):
    """The script seeds as ns-train does: two runs of one command and seed give the same eval points on CPU, and so
    does a guided run until its first answer applies (here: boxes for phase 3 only, which starts at step 100 of 200; queries from step 5 on)."""
    boxes = tmp_path / "artifacts_only.json"
    boxes.write_text(json.dumps({"images": {f"{i:03d}.png": {"artifacts": [[0, 0, 100, 100]]} for i in range(8)}}))
    curves = []
    for name, method in (("a", "vlm-fastgs"), ("b", "vlm-fastgs"), ("c", "vlm-fastgs+boxes")):
        out = tmp_path / name
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--data", str(transforms_scene), "--downscale", "1", "--iterations", "200",
             "--compress-schedule", "--eval-steps", "20", "40", "80", "--out", str(out), "--runs-dir", str(out / "runs"),
             "--boxes-file", str(boxes), "--run-one", method, "--seed", "7"],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        row = json.loads(next(out.glob("*_s7.json")).read_text())
        curves.append([(p["step"], p["psnr"], p["num_gaussians"]) for p in row["eval_curve"] if p["step"] <= 80])
    assert len(curves[0]) == 3 and curves[0] == curves[1] == curves[2]
    assert curves[0][0][2] != curves[0][-1][2]  # the model did change over the compared steps
