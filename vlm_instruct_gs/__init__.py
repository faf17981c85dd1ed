"""vlm-fastgs: VLM-guided FastGS splatting as a nerfstudio method.

Kept import-light: ``vlm_instruct_gs.strategy`` and ``vlm_instruct_gs.rendering`` need only torch and gsplat.
"""
