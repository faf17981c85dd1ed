"""config.yml files written before the shared core moved out of vlm_instruct_gs still load (ns-eval, ns-viewer)."""

import yaml

from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs


def test_old_config_yaml_loads_into_the_core_classes():
    text = yaml.dump(vlm_fastgs.config)
    assert "splat_core.strategy.fastgs.FastGSStrategy" in text
    old = text.replace("splat_core.strategy", "vlm_instruct_gs.strategy").replace(
        "splat_core.data", "vlm_instruct_gs.data"
    )
    assert "vlm_instruct_gs.strategy.fastgs.FastGSStrategy" in old and "splat_core.data" not in old
    config = yaml.load(old, Loader=yaml.Loader)
    assert type(config.pipeline.model.fastgs) is FastGSStrategy
    assert type(config.pipeline.datamanager.dataparser) is SceneDataParserConfig


def test_old_module_names_are_the_new_modules():
    import importlib

    old = importlib.import_module("vlm_instruct_gs.strategy.view_scores")
    assert old is importlib.import_module("splat_core.strategy.view_scores")
    assert old.__file__.endswith("splat_core/strategy/view_scores.py")
