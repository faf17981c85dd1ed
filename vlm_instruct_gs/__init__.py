"""vlm-fastgs: VLM-guided FastGS splatting as a nerfstudio method."""

from vlm_instruct_gs.compat import allow_nerfstudio_checkpoints

allow_nerfstudio_checkpoints()
