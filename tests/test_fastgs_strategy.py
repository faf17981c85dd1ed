"""Tests for FastGSStrategy (VCD/VCP) and compute_view_scores, in the style of gsplat's tests/test_strategy.py.

100 Gaussians in a ParameterDict with one Adam per key; ``info`` is built by hand (means2d with .grad/.absgrad set,
radii, width, height, n_cameras) because gsplat's rasterization is CUDA-only. Each Gaussian carries its index in
``features_dc`` so tests can follow it through duplicate/split/remove.
"""

import math

import pytest
import torch

from splat_core.strategy import FastGSStrategy, compute_view_scores
from splat_core.strategy.testing import (
    HIGH,
    LARGE,
    REFINE_STEP,
    N,
    assert_aligned,
    ids_of,
    make_info,
    make_scene,
    run,
    scores,
)


@pytest.mark.parametrize("radii_format", ["1.4", "1.5"])
@pytest.mark.parametrize("packed", [False, True])
def test_vcd_densifies_only_multiview_inconsistent(radii_format, packed):
    params, optimizers = make_scene()
    with torch.no_grad():
        params["scales"][20:40] = LARGE
        params["scales"][50:60] = LARGE
    grad = torch.full((N,), HIGH)
    grad[60:80] = 0.0  # low gradient
    densify = torch.zeros(N)
    densify[0:40] = 10.0  # high multi-view error: 0-19 small (duplicate), 20-39 large (split)
    densify[40:60] = 5.0  # at the threshold (strict >): consistent, not densified despite the gradient
    densify[60:80] = 10.0  # high error but low gradient
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    old_scales = params["scales"].detach().clone()
    info = make_info(grad, radii_format=radii_format, packed=packed)
    run(strategy, params, optimizers, state, REFINE_STEP, info, packed=packed, view_scores=scores(densify, 0.0))

    ids = ids_of(params)
    counts = torch.bincount(ids, minlength=N)
    assert len(params["means"]) == N + 20 + 20
    assert (counts[0:40] == 2).all() and (counts[40:] == 1).all()
    for i in range(40):
        copies = params["scales"][ids == i].detach()
        expected = old_scales[i] if i < 20 else old_scales[i] - math.log(1.6)  # split children shrink by 1.6
        torch.testing.assert_close(copies, expected.expand_as(copies))
    # new Gaussians get zero Adam moments; untouched ones keep theirs
    new_rows = torch.arange(len(ids)) >= N - 20
    exp_avg = optimizers["means"].state[params["means"]]["exp_avg"]
    assert (exp_avg[new_rows] == 0).all() and (exp_avg[~new_rows] != 0).any()
    # accumulators are zeroed after the refinement, transient scores dropped
    assert (state["grad2d"] == 0).all() and (state["count"] == 0).all() and (state["grad2d_abs"] == 0).all()
    assert state["prune_score"] is None and state["guide_prune"] is None


def test_split_uses_absgrad_clone_uses_grad():
    params, optimizers = make_scene()
    with torch.no_grad():
        params["scales"][50:] = LARGE
    grad = torch.full((N,), 0.0005)  # >= grow_grad2d (0.0002)
    absgrad = torch.full((N,), 0.001)  # < grow_grad2d_abs (0.0012)
    absgrad[75:] = 0.002
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(grad, absgrad), view_scores=scores(10.0))
    counts = torch.bincount(ids_of(params), minlength=N)
    assert (counts[:50] == 2).all()  # small: duplicated on the plain gradient
    assert (counts[50:75] == 1).all() and (counts[75:] == 2).all()  # large: split only on the absolute gradient


def test_nothing_changes_outside_refine_window():
    strategy = FastGSStrategy()
    for step in [0, 499, 500, 550, 1001, 1499, 3100, 3200, 15_000, 15_500, 16_500]:
        params, optimizers = make_scene()
        with torch.no_grad():
            params["opacities"][:10] = torch.logit(torch.tensor(0.001))  # would be pruned in the window
            params["opacities"][10:20] = torch.logit(torch.tensor(0.95))  # would be clamped
        before = {k: v.detach().clone() for k, v in params.items()}
        state = strategy.initialize_state()
        info = make_info(torch.full((N,), HIGH)) if step < strategy.refine_stop_iter else {}
        if step < strategy.refine_stop_iter:
            strategy.step_pre_backward(params, optimizers, state, step, info)
        strategy.step_post_backward(params, optimizers, state, step, info, view_scores=scores(10.0, 1.0))
        assert not strategy.wants_view_scores(step), step
        for k, v in params.items():
            assert torch.equal(v.detach(), before[k]), (step, k)
        assert_aligned(params, optimizers, state)


def test_schedule():
    s = FastGSStrategy()
    refine = [st for st in range(0, 31_000, 100) if s.is_refine_step(st)]
    # every 100 steps up to 1500 (10 refinements), then every 500 (2000 ... 14500: 26)
    assert refine[:3] == [600, 700, 800] and refine[9:12] == [1500, 2000, 2500] and refine[-1] == 14_500
    assert len(refine) == 10 + 26
    assert [st for st in range(0, 31_000, 100) if s.is_final_prune_step(st)] == [16_000, 17_000, 18_000, 19_000]
    assert s.wants_view_scores(600) and s.wants_view_scores(19_000) and not s.wants_view_scores(20_000)
    legacy = FastGSStrategy.legacy()
    refine = [st for st in range(0, 31_000, 100) if legacy.is_refine_step(st)]
    assert refine[0] == 1000 and refine[-1] == 14_500 and len(refine) == 28
    assert [st for st in range(0, 31_000, 100) if legacy.is_final_prune_step(st)] == [18_000, 21_000, 24_000, 27_000]
    assert (legacy.score_footprint, legacy.score_resolution) == ("box", "training-unscaled")
    assert FastGSStrategy.legacy(refine_every=200).refine_every == 200
    # an early cadence slower than refine_every never slows refinement (schedules compressed for short runs)
    fast = FastGSStrategy(refine_start_iter=10, refine_every=40, refine_stop_iter=1000)
    assert [st for st in range(0, 200) if fast.is_refine_step(st)] == [40, 80, 120, 160]
    overlapping = FastGSStrategy(refine_stop_iter=20_000)  # a refine step is never also a final-prune step
    assert overlapping.is_refine_step(18_000) and not overlapping.is_final_prune_step(18_000)


def test_opacity_reset_and_clamp():
    strategy = FastGSStrategy()
    for step, cap in [(1000, 0.8), (3000, 0.01)]:
        params, optimizers = make_scene()
        with torch.no_grad():
            params["opacities"][:50] = torch.logit(torch.tensor(0.95))
        state = strategy.initialize_state()
        run(strategy, params, optimizers, state, step, make_info(torch.zeros(N)), view_scores=scores())
        assert len(params["means"]) == N
        assert torch.sigmoid(params["opacities"]).max().item() <= cap + 1e-6
        assert (optimizers["opacities"].state[params["opacities"]]["exp_avg"] == 0).all()


def _low_opacity_scene(n_low: int = 60):
    params, optimizers = make_scene()
    with torch.no_grad():
        params["opacities"][:n_low] = torch.logit(torch.tensor(0.001))
    return params, optimizers


def test_prune_budget_prefers_high_score():
    params, optimizers = _low_opacity_scene(60)  # 60 candidates -> budget 30
    prune = torch.zeros(N)
    prune[:30] = 1.0  # weight 1e6: drawn first
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(torch.zeros(N)), view_scores=scores(0.0, prune))
    assert sorted(set(range(N)) - set(ids_of(params).tolist())) == list(range(30))


def test_prune_budget_fastgs_sampling_removes_only_candidates():
    params, optimizers = _low_opacity_scene(60)
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(torch.zeros(N)), view_scores=scores(0.0, 0.0))
    removed = set(range(N)) - set(ids_of(params).tolist())
    assert 0 < len(removed) <= 30 and removed <= set(range(60))


def test_prune_budget_candidates_only_and_oversized():
    params, optimizers = _low_opacity_scene(10)
    with torch.no_grad():
        params["scales"][90:] = math.log(0.5)  # > prune_scale3d (0.1): candidates only after the first reset
    strategy = FastGSStrategy(prune_sample_candidates_only=True, prune_budget_frac=0.5)
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(torch.zeros(N)), view_scores=scores())
    assert len(params["means"]) == N - 5  # 10 candidates, budget 5
    params, optimizers = _low_opacity_scene(10)
    with torch.no_grad():
        params["scales"][90:] = math.log(0.5)
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, 3500, make_info(torch.zeros(N)), view_scores=scores())
    assert len(params["means"]) == N - 10  # 20 candidates, budget 10


def test_new_gaussians_are_not_pruned_in_their_refinement():
    params, optimizers = _low_opacity_scene(10)  # low opacity, but high gradient and multi-view error: cloned
    grad = torch.zeros(N)
    grad[:10] = HIGH
    densify = torch.zeros(N)
    densify[:10] = 10.0
    strategy = FastGSStrategy(prune_sample_candidates_only=True)
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(grad), view_scores=scores(densify, 0.0))
    # 20 candidates (10 parents + 10 clones) -> budget 10, all spent on the parents; the clones (at the tail) survive
    assert len(params["means"]) == N
    assert torch.equal(ids_of(params)[-10:], torch.arange(10))


def test_split_children_are_not_pruned_in_their_refinement():
    params, optimizers = _low_opacity_scene(20)  # 0-9 cloned, 10-19 split: all low-opacity prune candidates
    with torch.no_grad():
        params["scales"][10:20] = LARGE
    grad = torch.zeros(N)
    grad[:20] = HIGH
    densify = torch.zeros(N)
    densify[:20] = 10.0
    strategy = FastGSStrategy(prune_sample_candidates_only=True)
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(grad), view_scores=scores(densify, 0.0))
    # 40 candidates (10 parents, 10 clones, 20 split children) -> budget 20, but only the 10 clone parents are drawable
    ids = ids_of(params)
    assert len(ids) == N + 10 + 10 - 10
    assert torch.bincount(ids, minlength=N)[10:20].tolist() == [2] * 10  # both children of every split survive
    assert torch.bincount(ids, minlength=N)[:10].tolist() == [1] * 10  # clones kept, their parents pruned


def test_guidance_densify_relaxes_and_raises_threshold():
    params, optimizers = make_scene()
    densify = torch.zeros(N)
    densify[:20] = 3.0  # below 5: only densified where guidance relaxes the threshold to 2.5
    densify[20:40] = 8.0  # above 5: not densified where guidance raises it to 10
    guide = torch.zeros(N)
    guide[:10] = 1.0
    guide[20:30] = -1.0
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    run(
        strategy,
        params,
        optimizers,
        state,
        REFINE_STEP,
        make_info(torch.full((N,), HIGH)),
        view_scores=scores(densify, 0.0),
        guidance={"densify": guide},
    )
    counts = torch.bincount(ids_of(params), minlength=N)
    assert counts[:10].tolist() == [2] * 10 and counts[10:20].tolist() == [1] * 10
    assert counts[20:30].tolist() == [1] * 10 and counts[30:40].tolist() == [2] * 10


def test_guidance_prune_adds_candidates_and_blocks_densify():
    params, optimizers = make_scene()  # opacity 0.5: no ordinary candidates
    guide = torch.zeros(N, dtype=torch.bool)
    guide[:20] = True
    strategy = FastGSStrategy(prune_sample_candidates_only=True)
    state = strategy.initialize_state()
    run(
        strategy,
        params,
        optimizers,
        state,
        REFINE_STEP,
        make_info(torch.full((N,), HIGH)),
        view_scores=scores(10.0, 0.0),
        guidance={"prune": guide},
    )
    counts = torch.bincount(ids_of(params), minlength=N)
    assert (counts[:20] <= 1).all() and counts[:20].sum() == 10  # not densified; budget 0.5 * 20 removed
    assert (counts[20:] == 2).all()  # everything else duplicated


def test_final_prune():
    params, optimizers = make_scene()
    with torch.no_grad():
        params["opacities"][:10] = torch.logit(torch.tensor(0.05))  # < final_prune_opa (0.1)
    prune = torch.zeros(N)
    prune[10:20] = 0.95  # > final_prune_score (0.9)
    prune[20:30] = 0.9  # not above
    guide = torch.zeros(N)
    guide[30:35] = 1.0
    strategy = FastGSStrategy(prune_near_camera=0.0)  # hand-built scores hold no cameras
    state = strategy.initialize_state()
    strategy.step_post_backward(
        params, optimizers, state, 18_000, {}, view_scores={"prune_score": prune}, guidance={"prune": guide}
    )
    assert_aligned(params, optimizers, state)
    assert sorted(set(range(N)) - set(ids_of(params).tolist())) == list(range(20)) + list(range(30, 35))


def test_errors():
    params, optimizers = make_scene()
    strategy = FastGSStrategy()
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state()
    info = make_info(torch.zeros(N))
    with pytest.raises(ValueError, match="view_scores"):
        strategy.step_post_backward(params, optimizers, state, REFINE_STEP, info)
    with pytest.raises(ValueError, match="entries"):
        strategy.step_post_backward(params, optimizers, state, REFINE_STEP, info, view_scores=scores(n=N - 1))
    with pytest.raises(ValueError, match="Unknown guidance"):
        strategy.step_post_backward(
            params, optimizers, state, REFINE_STEP, info, view_scores=scores(), guidance={"densfy": torch.ones(N)}
        )
    del params["quats"]
    with pytest.raises(AssertionError):
        strategy.check_sanity(params, {k: v for k, v in optimizers.items() if k != "quats"})


def test_compute_view_scores_hand_case():
    # 2 views of 20x20; block [0:10, 0:10] has error 1, the rest 0 (view 1 also has a 0.05 floor: below 0.1)
    err = torch.zeros(2, 20, 20)
    err[:, :10, :10] = 1.0
    err[1, 10:, 10:] = 0.05
    means2d = torch.tensor([[[4.5, 4.5], [14.5, 14.5], [4.5, 4.5]], [[4.5, 4.5], [4.5, 4.5], [4.5, 4.5]]])
    radii = torch.tensor([[2, 2, 0], [2, 2, 0]], dtype=torch.int32)  # 5x5 boxes; the third is culled
    out = compute_view_scores(err, means2d, radii, high_error_thresh=0.1, view_losses=torch.tensor([1.0, 3.0]))
    # counts: G0 25 + 25, G1 0 + 25, G2 0
    assert out["densify_score"].tolist() == [25.0, 12.0, 0.0]
    # raw = 1*25 + 3*25 = 100, 0 + 3*25 = 75, 0 -> min-max
    torch.testing.assert_close(out["prune_score"], torch.tensor([1.0, 0.75, 0.0]))
    flat = compute_view_scores(torch.ones(2, 20, 20), means2d, radii)  # constant error: nothing is high-error
    assert flat["densify_score"].sum() == 0 and flat["prune_score"].sum() == 0


def test_end_to_end_multiview_consistency():
    """Gaussians under high error in all 10 views are densified; under high error in one view only, not."""
    V, n = 10, N
    err = torch.rand(V, 40, 40) * 0.05
    err[:, :20, :] = 1.0  # top half has high error in every view
    err[0, 20:, 10:30] = 1.0  # view 0 also has high error in (part of) the bottom half
    means2d = torch.empty(V, n, 2)
    means2d[..., 0] = 20.5
    means2d[:, :50, 1] = 9.5  # Gaussians 0-49 project into the top half in every view
    means2d[:, 50:, 1] = 30.5  # Gaussians 50-99 project into the bottom half
    radii = torch.full((V, n, 2), 3, dtype=torch.int32)  # 7x7 = 49 pixels
    view_scores = compute_view_scores(err, means2d, radii)
    assert (view_scores["densify_score"][:50] == 49).all() and (view_scores["densify_score"][50:] == 4).all()

    params, optimizers = make_scene()
    strategy = FastGSStrategy(prune_near_camera=0.0)  # compute_view_scores gives no cameras
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(torch.full((n,), HIGH)), view_scores=view_scores)
    counts = torch.bincount(ids_of(params), minlength=n)
    assert (counts[:50] == 2).all() and (counts[50:] == 1).all()
