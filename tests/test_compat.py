import io

import pytest
import torch
import torchvision

from splat_core.compat import OptionalLPIPS, allow_nerfstudio_checkpoints, offline_safe_lpips


def test_checkpoint_types_load_with_weights_only():
    import numpy as np

    buf = io.BytesIO()
    # nerfstudio 1.1.5 checkpoints hold numpy scalars (e.g. in the schedulers' state)
    torch.save({"step": 3, "scalar": np.float64(1.5), "t": torch.ones(2)}, buf)
    allow_nerfstudio_checkpoints()
    buf.seek(0)
    loaded = torch.load(buf)  # torch's default weights_only=True
    assert loaded["scalar"] == 1.5 and loaded["step"] == 3


def test_lpips_reports_unavailable_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache, and no network here or in CI

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    metric = OptionalLPIPS(normalize=True)
    assert not metric.available
    assert metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)) is None


def test_lpips_computed_when_weights_are_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.AlexNet_Weights.DEFAULT.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), cache / url.split("/")[-1])  # stands in for the download
    metric = OptionalLPIPS(normalize=True)
    assert metric.available
    a = torch.rand(1, 3, 64, 64)
    assert float(metric(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(metric(a, torch.rand(1, 3, 64, 64))) > 0.0


def test_offline_safe_lpips_only_patches_inside_block():
    import torchmetrics.image.lpip as lpip_module

    original = lpip_module.LearnedPerceptualImagePatchSimilarity
    with offline_safe_lpips():
        assert lpip_module.LearnedPerceptualImagePatchSimilarity is OptionalLPIPS
    assert lpip_module.LearnedPerceptualImagePatchSimilarity is original


@pytest.mark.parametrize("saved_by", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_checkpoints_from_either_numpy_major_load(saved_by):
    """A run trained under numpy 2 (numpy._core) is evaluated under numpy 1.x (numpy.core), and the other way round."""
    import numpy as np

    buf = io.BytesIO()
    # the legacy format keeps the pickle uncompressed in the stream, so the module path can be rewritten in place
    torch.save({"scalar": np.float64(2.5), "t": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    here = next(m for m in (b"numpy._core.multiarray", b"numpy.core.multiarray") if m in data)
    data = data.replace(here, saved_by.encode())
    assert saved_by.encode() in data
    allow_nerfstudio_checkpoints()
    loaded = torch.load(io.BytesIO(data))
    assert loaded["scalar"] == 2.5 and torch.equal(loaded["t"], torch.ones(2))
