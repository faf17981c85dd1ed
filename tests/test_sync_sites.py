"""benchmarks/sync_sites.py: the host-blocking ops of a piece of code, counted per call site."""

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "sync_sites", Path(__file__).resolve().parents[1] / "benchmarks" / "sync_sites.py")
sync_sites = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_sites)


def _step(x: torch.Tensor) -> float:
    y = x * 2.0 + 1.0  # elementwise: no wait
    kept = y[y > 1.5]  # boolean-mask indexing: its size is read back
    idx = torch.nonzero(y > 2.0)
    return float(kept.sum().item()) + idx.shape[0]  # one item


def test_trace_counts_item_and_data_dependent_shapes_at_their_line(monkeypatch):
    monkeypatch.setattr(sync_sites, "ROOTS", ("tests/",))
    x = torch.linspace(0, 1, 10)
    with sync_sites.SyncTrace() as trace:
        for _ in range(3):
            _step(x)
    kinds = {}
    for row in trace.per_step(3):
        assert row["site"].split(" ")[0].rsplit(":", 1)[0].endswith("tests/test_sync_sites.py")
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + row["per_step"]
    assert kinds == {"item": 1.0, "data-dependent shape": 2.0}
    lines = sorted(int(r["site"].split(" ")[0].rsplit(":", 1)[1]) for r in trace.per_step(3))
    assert len(set(lines)) == 3  # the mask index, nonzero and item lines, each its own site
    assert trace.totals(3) == {"item": 1.0, "data-dependent shape": 2.0}


def test_elementwise_code_and_integer_indexing_wait_for_nothing():
    x = torch.rand(100)
    with sync_sites.SyncTrace() as trace:
        y = (x * 3).exp().clamp(0, 2)
        y[torch.arange(0, 100, 2)] += 1.0  # integer index: shape known on the host
        torch.where(y > 1, y, 0.0).sum()
    assert trace.counts == {}


def test_sync_kind_classifies_copies_by_direction():
    cpu = torch.zeros(2)
    assert sync_sites.sync_kind("aten._to_copy.default", (cpu,), {"device": torch.device("cuda")}) == \
        "host-to-device copy"
    assert sync_sites.sync_kind("aten._to_copy.default", (cpu,), {"device": torch.device("cpu")}) is None
    assert sync_sites.sync_kind("aten.add.Tensor", (cpu, cpu), {}) is None
