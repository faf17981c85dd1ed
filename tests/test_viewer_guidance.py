"""ns-viewer on a finished guided run shows the recorded phase and verdicts (from the checkpoint), not 'off'."""

from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerText

from splat_core.testing import write_transforms_scene
from vlm_instruct_gs.guidance.records import short_verdict
from vlm_instruct_gs.testing.guided_runs import STEPS
from vlm_instruct_gs.testing.guided_runs import guided_pipeline as _pipeline
from vlm_instruct_gs.testing.guided_runs import train_steps as _train


def test_a_finished_guided_run_shows_its_last_phase_and_whole_verdict(tmp_path):
    scene = write_transforms_scene(tmp_path / "scene")
    trained = _pipeline(scene, "image-evidence")
    _train(trained)
    last = trained.guidance.applied[-1]
    assert trained.guidance_verdict.value == trained.guidance.last_verdict  # live during training too
    viewer = _pipeline(scene, "image-evidence", test_mode="inference")  # what ns-viewer builds: no controller
    assert viewer.guidance is None and viewer.guidance_status.value == "off"
    viewer.load_pipeline(trained.state_dict(), STEPS)
    assert viewer.guidance_status.value == f"refinement @{STEPS}"
    assert viewer.guidance_last.value == short_verdict(last)
    assert viewer.guidance_verdict.value == trained.guidance.last_verdict and "densify" in viewer.guidance_verdict.value
    elements = dict(parse_object(viewer, ViewerText, "Custom Elements"))
    assert elements["Custom Elements/guidance_verdict"].value == trained.guidance.last_verdict

    unguided = _pipeline(scene, "none")
    _train(unguided, steps=2)
    viewer = _pipeline(scene, "image-evidence", test_mode="inference")
    viewer.load_pipeline(unguided.state_dict(), 2)
    assert viewer.guidance_status.value == "off" and viewer.guidance_last.value == "none yet"
