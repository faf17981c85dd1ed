"""splat_core.optimizers: fused Adam per Gaussian key, against torch's default Adam through gsplat's strategy ops,
nerfstudio's Optimizers (schedulers) and checkpoint state dicts."""

from __future__ import annotations

import copy

import pytest
import torch
from gsplat.strategy.ops import duplicate, remove, reset_opa, split
from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers

from splat_core.optimizers import FusedAdamOptimizerConfig, clear_gradients, gaussian_optimizers, step_fused_adams

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEYS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")


def _params(n: int = 60, device: str = "cpu") -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(0)
    shapes = {"means": (3,), "scales": (3,), "quats": (4,), "features_dc": (3,), "features_rest": (15, 3),
              "opacities": (1,)}
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(torch.randn((n, *s), generator=g).to(device)) for k, s in shapes.items()}
    )


def _optimizers(params, fused: bool):
    config = gaussian_optimizers(1000)
    out = {}
    for k in KEYS:
        opt = config[k]["optimizer"]
        cfg = FusedAdamOptimizerConfig(lr=opt.lr, eps=opt.eps, fused=True) if fused else AdamOptimizerConfig(
            lr=opt.lr, eps=opt.eps)
        out[k] = cfg.setup([params[k]])
    return out


def _step(params, optimizers, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    loss = sum(((params[k] - torch.randn(params[k].shape, generator=g).to(params[k].device)) ** 2).sum() for k in KEYS)
    for opt in optimizers.values():
        opt.zero_grad()
    loss.backward()
    for opt in optimizers.values():
        opt.step()


def _assert_aligned(params, optimizers, ref_params, ref_optimizers, atol: float = 1e-6):
    for k in KEYS:
        p, rp = params[k], ref_params[k]
        assert optimizers[k].param_groups[0]["params"][0] is p  # the op swapped the new tensor into the group
        state, ref_state = optimizers[k].state[p], ref_optimizers[k].state[rp]
        torch.testing.assert_close(p.detach().cpu(), rp.detach().cpu(), rtol=1e-5, atol=atol)
        for moment in ("exp_avg", "exp_avg_sq"):
            assert state[moment].shape == p.shape  # moments re-indexed with the Gaussians
            torch.testing.assert_close(state[moment].cpu(), ref_state[moment].cpu(), rtol=1e-5, atol=atol)
        assert float(state["step"]) == float(ref_state["step"])


def test_setup_is_fused_where_torch_has_it():
    p = torch.nn.Parameter(torch.zeros(4, 3))
    assert FusedAdamOptimizerConfig(lr=1e-3).setup([p]).param_groups[0]["fused"] is True  # torch >= 2.4 on CPU
    assert not FusedAdamOptimizerConfig(lr=1e-3, fused=False).setup([p]).param_groups[0]["fused"]
    assert all(isinstance(v["optimizer"], FusedAdamOptimizerConfig) for v in gaussian_optimizers(10).values())


def _run_ops(device: str, atol: float = 1e-6):
    params, ref_params = _params(device=device), _params(device=device)
    optimizers, ref_optimizers = _optimizers(params, fused=True), _optimizers(ref_params, fused=False)
    assert all(o.param_groups[0]["fused"] for o in optimizers.values())
    assert not any(o.param_groups[0]["fused"] for o in ref_optimizers.values())
    state, ref_state = {"grad2d": torch.arange(60.0, device=device)}, {"grad2d": torch.arange(60.0, device=device)}
    seed = 0
    for op in ("duplicate", "split", "remove", "reset_opa"):
        for _ in range(3):
            seed += 1
            _step(params, optimizers, seed)
            _step(ref_params, ref_optimizers, seed)
        n = len(params["means"])
        mask = (torch.arange(n, device=device) % 3 == 0)
        for p, o, s in ((params, optimizers, state), (ref_params, ref_optimizers, ref_state)):
            torch.manual_seed(seed)  # split samples positions
            if op == "duplicate":
                duplicate(params=p, optimizers=o, state=s, mask=mask)
            elif op == "split":
                split(params=p, optimizers=o, state=s, mask=mask)
            elif op == "remove":
                remove(params=p, optimizers=o, state=s, mask=mask)
            else:
                reset_opa(params=p, optimizers=o, state=s, value=0.01)
        assert len(params["means"]) == len(state["grad2d"]) == len(ref_params["means"])
        _assert_aligned(params, optimizers, ref_params, ref_optimizers, atol)
    assert len(params["means"]) != 60  # the ops did change the set of Gaussians
    for _ in range(3):
        seed += 1
        _step(params, optimizers, seed)
        _step(ref_params, ref_optimizers, seed)
    _assert_aligned(params, optimizers, ref_params, ref_optimizers, atol)


def test_gsplat_ops_keep_fused_adam_aligned_like_default_adam():
    _run_ops("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_ops_keep_fused_adam_aligned_like_default_adam_cuda():
    _run_ops("cuda", atol=1e-5)


def test_nerfstudio_optimizers_schedule_and_checkpoint_layout():
    """Same lrs through nerfstudio's schedulers, and state dicts that load across fused and default Adam."""
    params, ref_params = _params(), _params()
    config = gaussian_optimizers(100)
    ref_config = copy.deepcopy(config)
    for k in KEYS:
        opt = ref_config[k]["optimizer"]
        ref_config[k]["optimizer"] = AdamOptimizerConfig(lr=opt.lr, eps=opt.eps)
    optimizers = Optimizers({k: config[k] for k in KEYS}, {k: [params[k]] for k in KEYS})
    ref = Optimizers({k: ref_config[k] for k in KEYS}, {k: [ref_params[k]] for k in KEYS})
    assert set(optimizers.schedulers) == {"means"}
    for step in range(5):
        _step(params, optimizers.optimizers, step)
        _step(ref_params, ref.optimizers, step)
        optimizers.scheduler_step_all(step)
        ref.scheduler_step_all(step)
    lr = optimizers.optimizers["means"].param_groups[0]["lr"]
    assert lr < 1.6e-4 and lr == pytest.approx(ref.optimizers["means"].param_groups[0]["lr"])
    _assert_aligned(params, optimizers.optimizers, ref_params, ref.optimizers)

    # nerfstudio's checkpoint layout {key: state_dict}; an unfused run's state resumes fused and a fused one unfused
    saved = copy.deepcopy({k: v.state_dict() for k, v in optimizers.optimizers.items()})  # as torch.save would
    assert set(saved) == set(KEYS) and all(len(v["param_groups"]) == 1 for v in saved.values())
    unfused_config = {k: {**config[k], "optimizer": FusedAdamOptimizerConfig(lr=config[k]["optimizer"].lr,
                                                                              eps=1e-15, fused=False)} for k in KEYS}
    resumed_params = copy.deepcopy(params)
    resumed = Optimizers(unfused_config, {k: [resumed_params[k]] for k in KEYS})
    resumed.load_optimizers(saved)
    fused_params = copy.deepcopy(ref_params)
    fused_again = Optimizers({k: config[k] for k in KEYS}, {k: [fused_params[k]] for k in KEYS})
    fused_again.load_optimizers(copy.deepcopy({k: v.state_dict() for k, v in ref.optimizers.items()}))
    for k in KEYS:
        assert not resumed.optimizers[k].param_groups[0]["fused"]
        assert resumed.optimizers[k].state[resumed_params[k]]["step"].device.type == "cpu"
        assert fused_again.optimizers[k].param_groups[0]["fused"]  # torch alone would keep the saved None
        assert fused_again.optimizers[k].state[fused_params[k]]["step"].device == fused_params[k].device
    for step in (99, 100):
        for p, o in ((resumed_params, resumed), (params, optimizers), (fused_params, fused_again), (ref_params, ref)):
            _step(p, o.optimizers, step)
    _assert_aligned(resumed_params, resumed.optimizers, params, optimizers.optimizers)
    _assert_aligned(fused_params, fused_again.optimizers, ref_params, ref.optimizers)
    _assert_aligned(params, optimizers.optimizers, ref_params, ref.optimizers)


def _fast_path_against_step(device: str) -> None:
    """step_fused_adams gives the parameters and Adam state of optimizer.step(), bit for bit, over steps with a
    changing learning rate; the first step (no state yet) and unfused optimizers are handed back to the caller."""
    params, ref_params = _params(device=device), _params(device=device)
    fast, ref = _optimizers(params, fused=True), _optimizers(ref_params, fused=True)
    unfused = FusedAdamOptimizerConfig(lr=0.01, eps=1e-15, fused=False)
    extra, ref_extra = (torch.nn.Parameter(torch.ones(4, device=device)) for _ in range(2))
    fast["extra"], ref["extra"] = unfused.setup([extra]), unfused.setup([ref_extra])
    for step in range(6):
        g = torch.Generator().manual_seed(step)
        targets = {k: torch.randn(params[k].shape, generator=g).to(device) for k in KEYS}
        for ps, opts, x in ((params, fast, extra), (ref_params, ref, ref_extra)):
            loss = (x ** 2).sum() + sum(((ps[k] - targets[k]) ** 2).sum() for k in KEYS if k != "quats" or step % 2)
            clear_gradients(opts.values()) if opts is fast else [o.zero_grad() for o in opts.values()]
            loss.backward()
        for opts in (fast, ref):
            opts["means"].param_groups[0]["lr"] = 1e-3 / (step + 1)  # as a scheduler changes it between steps
        rest = step_fused_adams(list(fast.values()))
        # before its first step an optimizer has no Adam state (quats, without a gradient at step 0, starts at 1)
        first = [fast[k] for k in KEYS if k != "quats"] if step == 0 else [fast["quats"]] if step == 1 else []
        assert rest == first + [fast["extra"]]
        for opt in rest:
            opt.step()
        for opt in ref.values():
            opt.step()
        assert params["quats"].grad is None or step % 2  # quats got no gradient on even steps: left alone
    for k in KEYS:
        assert torch.equal(params[k], ref_params[k]), k
        state, ref_state = fast[k].state[params[k]], ref[k].state[ref_params[k]]
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[key], ref_state[key]), (k, key)
    assert float(fast["quats"].state[params["quats"]]["step"]) == 3  # stepped only when it had a gradient
    assert torch.equal(extra, ref_extra)


def test_fast_fused_step_equals_optimizer_step():
    _fast_path_against_step("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_fused_step_equals_optimizer_step_cuda():
    _fast_path_against_step("cuda")
