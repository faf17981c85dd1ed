"""The spawn op (splat_core.strategy.ops) and the strategy's guided growth and spawning, tested like gsplat's ops:
params, both Adam moments and state tensors stay aligned, old rows untouched, new rows as specified."""

import math

import pytest
import torch

from splat_core.strategy import FastGSStrategy
from splat_core.strategy.ops import SH_C0, gaussian_rows, spawn, spawn_points, top_k_mask
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


def _points(m, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"means": torch.randn(m, 3, generator=gen), "colors": torch.rand(m, 3, generator=gen),
            "scales": torch.rand(m, generator=gen) * 0.1 + 0.01}


def test_spawn_appends_rows_with_zero_moments_and_pads_state():
    params, optimizers = make_scene()
    before = {k: p.detach().clone() for k, p in params.items()}
    moments = {k: optimizers[k].state[p]["exp_avg"].clone() for k, p in params.items()}
    steps = {k: optimizers[k].state[p]["step"].clone() for k, p in params.items()}
    state = {"grad2d": torch.rand(N), "count": torch.ones(N), "scene_scale": 2.0, "none": None}
    grad2d = state["grad2d"].clone()
    pts = _points(7)
    assert spawn_points(params, optimizers, state, pts) == 7
    assert_aligned(params, optimizers, state)
    assert len(params["means"]) == N + 7 and state["scene_scale"] == 2.0 and state["none"] is None
    for k, p in params.items():
        torch.testing.assert_close(p[:N].detach(), before[k])  # old rows unchanged ...
        opt_state = optimizers[k].state[p]
        torch.testing.assert_close(opt_state["exp_avg"][:N], moments[k])  # ... with their moments
        assert not opt_state["exp_avg"][N:].any() and not opt_state["exp_avg_sq"][N:].any()
        assert torch.equal(opt_state["step"], steps[k])  # Adam's step count untouched, as gsplat's ops
    torch.testing.assert_close(state["grad2d"], torch.cat([grad2d, torch.zeros(7)]))
    new = {k: p[N:].detach() for k, p in params.items()}
    torch.testing.assert_close(new["means"], pts["means"])
    torch.testing.assert_close(torch.exp(new["scales"]), pts["scales"][:, None].expand(7, 3))
    torch.testing.assert_close(torch.sigmoid(new["opacities"]), torch.full((7,), 0.1))
    torch.testing.assert_close(new["features_dc"][:, 0] * SH_C0 + 0.5, pts["colors"], atol=1e-4, rtol=0)
    assert not new["features_rest"].any()
    torch.testing.assert_close(new["quats"], torch.tensor([[1.0, 0, 0, 0]]).expand(7, 4))
    # a training step then moves the new rows as any others
    sum((p * 1.0).sum() for p in params.values()).backward()
    for opt in optimizers.values():
        opt.step()
    assert not torch.equal(params["means"][N:].detach(), pts["means"])


def test_spawn_resizes_a_frozen_param_without_optimizer_and_rejects_bad_rows():
    params, optimizers = make_scene()
    params["frozen"] = torch.nn.Parameter(torch.ones(N, 2), requires_grad=False)
    rows = gaussian_rows(*_points(3).values(), like=params)
    assert not rows["frozen"].any()  # unknown keys get zeros
    spawn(params, optimizers, {}, rows)
    assert params["frozen"].shape == (N + 3, 2) and not params["frozen"].requires_grad
    assert "frozen" not in optimizers
    with pytest.raises(ValueError, match="spawn needs rows for"):
        spawn(params, optimizers, {}, {"means": torch.zeros(1, 3)})
    bad = dict(rows, scales=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="rows of 'scales'"):
        spawn(params, optimizers, {}, bad)
    with pytest.raises(ValueError, match="expected"):
        spawn_points(params, optimizers, {}, dict(_points(3), scales=torch.ones(3, 1)))
    assert spawn(params, optimizers, {}, gaussian_rows(*_points(0).values(), like=params)) == 0


def test_gaussian_rows_store_logit_colours_without_sh_bases():
    params, _ = make_scene()
    params["features_rest"] = torch.nn.Parameter(torch.zeros(N, 0, 3))  # splatfacto's sh_degree=0
    pts = _points(4)
    rows = gaussian_rows(pts["means"], pts["colors"], pts["scales"], params, opacity=0.3)
    torch.testing.assert_close(torch.sigmoid(rows["features_dc"][:, 0]), pts["colors"], atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.sigmoid(rows["opacities"]), torch.full((4,), 0.3))  # as like: [N]


def test_top_k_mask():
    values = torch.tensor([5.0, 1.0, 9.0, 7.0, 3.0])
    eligible = torch.tensor([True, True, False, True, True])
    assert top_k_mask(values, eligible, 2).tolist() == [True, False, False, True, False]
    assert top_k_mask(values, eligible, 10).tolist() == eligible.tolist()
    assert not top_k_mask(values, eligible, 0).any()


def test_strategy_spawns_guided_points_at_a_refine_step_and_never_prunes_them_there():
    strategy = FastGSStrategy(refine_opa_clamp=1.0, prune_opa=0.2, prune_sample_candidates_only=True)
    params, optimizers = make_scene()
    with torch.no_grad():
        params["opacities"][:50] = torch.logit(torch.tensor(0.1))  # candidates; the spawned ones are 0.1 too
    state = strategy.initialize_state()
    info = make_info(torch.zeros(N))
    run(strategy, params, optimizers, state, REFINE_STEP, info, view_scores=scores(0.0, 0.5),
        guidance={"spawn": _points(9)})
    ids = ids_of(params)
    # the budget is half of all 59 candidates (the new ones count), drawn among the 50 old ones only
    assert len(ids) == N - math.floor(0.5 * 59) + 9
    torch.testing.assert_close(params["means"][-9:].detach(), _points(9)["means"])
    # outside the refine window nothing is spawned
    n = len(params["means"])
    run(strategy, params, optimizers, state, REFINE_STEP + 1, make_info(torch.zeros(n)), guidance={"spawn": _points(3)})
    assert len(params["means"]) == n


def test_guided_growth_picks_the_highest_gradients_inside_the_region_only():
    strategy = FastGSStrategy(densify_min_count=1e9, guidance_grow_budget=3, refine_opa_clamp=1.0)
    params, optimizers = make_scene()
    with torch.no_grad():
        params["scales"][50:] = LARGE  # the second half is split, the first duplicated
    grad = torch.linspace(HIGH, 2 * HIGH, N)  # the higher the index, the higher the gradient
    grow = torch.zeros(N)
    grow[[10, 20, 30, 60, 70]] = 1.0  # region: three small, two large
    grow[99] = 0.4  # below 0.5: outside the region despite the highest gradient
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(grad), view_scores=scores(0.0), guidance={"grow": grow})
    counts = torch.bincount(ids_of(params), minlength=N)
    # VCD picks nothing (threshold 1e9); the budget of 3 goes to 70, 60 (split: children only) and 30 (duplicated)
    assert counts[30] == 2 and counts[60] == 2 and counts[70] == 2
    assert counts[10] == 1 and counts[20] == 1 and counts[99] == 1
    assert len(params["means"]) == N + 1 + 2
    # unguided, the same step grows nothing
    params2, optimizers2 = make_scene()
    state2 = strategy.initialize_state()
    run(strategy, params2, optimizers2, state2, REFINE_STEP, make_info(grad), view_scores=scores(0.0))
    assert len(params2["means"]) == N


def test_swap_mode_moves_densification_into_the_region_without_adding_to_it():
    grad = torch.linspace(HIGH, 2 * HIGH, N)  # the higher the index, the higher the gradient
    densify = torch.zeros(N)
    densify[80:90] = 10.0  # VCD alone picks 80-89 (all small: duplicated)
    grow = torch.zeros(N)
    grow[[10, 20, 30, 40]] = 1.0  # the guided region: low multi-view score, lower gradients than VCD's picks
    guidance = {"grow": grow, "densify": grow}
    added = {}
    for mode in ("add", "swap"):
        strategy = FastGSStrategy(guidance_grow_budget=3, guidance_grow_mode=mode, refine_opa_clamp=1.0)
        params, optimizers = make_scene()
        state = strategy.initialize_state()
        run(strategy, params, optimizers, state, REFINE_STEP, make_info(grad), view_scores=scores(densify, 0.0),
            guidance=guidance)
        assert_aligned(params, optimizers, state)
        added[mode] = torch.bincount(ids_of(params), minlength=N) - 1
    # add: VCD's 10 plus the region's 3 highest gradients (40, 30, 20)
    assert added["add"][80:90].tolist() == [1] * 10 and added["add"][[20, 30, 40]].tolist() == [1, 1, 1]
    assert int(added["add"].sum()) == 13
    # swap: as many as VCD alone (10): the 3 region picks stay, VCD's 3 lowest-gradient picks (80-82) give way
    assert int(added["swap"].sum()) == 10
    assert added["swap"][[20, 30, 40]].tolist() == [1, 1, 1] and added["swap"][10] == 0
    assert added["swap"][80:83].tolist() == [0, 0, 0] and added["swap"][83:90].tolist() == [1] * 7
    # without guidance swap changes nothing
    strategy = FastGSStrategy(guidance_grow_mode="swap", refine_opa_clamp=1.0)
    params, optimizers = make_scene()
    run(strategy, params, optimizers, strategy.initialize_state(), REFINE_STEP, make_info(grad),
        view_scores=scores(densify, 0.0))
    assert len(params["means"]) == N + 10


def test_unknown_guidance_keys_are_rejected():
    strategy = FastGSStrategy()
    params, optimizers = make_scene()
    with pytest.raises(ValueError, match="Unknown guidance keys"):
        run(strategy, params, optimizers, strategy.initialize_state(), REFINE_STEP, make_info(torch.zeros(N)),
            view_scores=scores(0.0), guidance={"grown": torch.zeros(N)})
    assert math.isclose(SH_C0, 0.28209479177387814)
