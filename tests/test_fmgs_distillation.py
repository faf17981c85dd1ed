"""Distil a tiny random teacher's features into a small FMGSField on a synthetic scene; check held-out points.

Scene: four coloured boxes, one of them outside the unit ball (exercising the contraction). Each box's target features
are the tiny teachers' features of a solid image of its colour: the CLIP teacher's unit embedding (hybrid map, averaged)
and the DINO teacher's mean descriptor. The field is fitted on random points of the boxes with the FMGS losses and must
reproduce the targets at fresh points: mean CLIP cosine > 0.99 and mean DINO cosine > 0.98 (the random tiny CLIP gives
similar embeddings to all colours, pairwise cosines about 0.9-0.99, so a constant prediction would already score about
0.96 on CLIP); hence also: the nearest box target, and the LERF relevancy to each box's own CLIP embedding against the
others, must pick the right box for at least 95% of the held-out points.
"""

import json

import open_clip
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from fmgs_field.field import FMGSFieldConfig, FMGSFieldHeadNames
from fmgs_field.losses import clip_huber_loss, dino_mse_loss, total_feature_loss
from fmgs_field.relevancy import relevancy
from fmgs_field.teachers import CLIPTeacherConfig, DINOTeacher, DINOTeacherConfig

BOXES = torch.tensor(
    [  # centre xyz, half size
        [-0.5, -0.5, 0.0, 0.25],
        [0.5, -0.4, 0.2, 0.25],
        [0.0, 0.5, -0.3, 0.25],
        [2.5, 0.0, 0.0, 0.6],  # outside the unit ball
    ]
)
COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.2, 1.0], [0.9, 0.9, 0.2]])


def _sample(n_per_box, generator):
    pts, ids = [], []
    for i, box in enumerate(BOXES):
        u = torch.rand(n_per_box, 3, generator=generator) * 2 - 1
        pts.append(box[:3] + u * box[3])
        ids.append(torch.full((n_per_box,), i))
    return torch.cat(pts), torch.cat(ids)


def _teacher_targets(tmp_path):
    name = "fmgs-distil-tiny-clip"
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    torch.save(open_clip.create_model(name).state_dict(), tmp_path / "clip.pt")
    clip = CLIPTeacherConfig(
        model_name=name, pretrained=str(tmp_path / "clip.pt"), num_scales=2, min_tile=0.25, out_stride=8
    ).setup()
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_classes=0)
    dino = DINOTeacher(DINOTeacherConfig(layer=-1, load_size=32), network=vit)
    clip_t, dino_t = [], []
    for colour in COLOURS:
        image = colour.expand(32, 32, 3)
        clip_t.append(F.normalize(clip.image_features(image).mean(dim=(0, 1)), dim=-1))
        dino_t.append(dino.image_features(image).mean(dim=(0, 1)))
    dino_t = torch.stack(dino_t)
    return torch.stack(clip_t), dino_t / dino_t.norm(dim=-1).mean()  # DINO scale ~1 for a quick fit


def test_field_distils_teacher_features_to_held_out_points(tmp_path):
    clip_t, dino_t = _teacher_targets(tmp_path)
    assert clip_t.shape == (4, 16) and dino_t.shape == (4, 24)
    torch.manual_seed(0)
    field = FMGSFieldConfig(
        grid_levels=(4, 4),
        grid_resolutions=((4, 16), (16, 32)),
        log2_hashmap_sizes=(12, 12),
        features_per_level=4,
        hidden_width=64,
        clip_hidden_layers=2,
        clip_dim=16,
        dino_dim=24,
        hash_init_scale=0.1,
        implementation="torch",
    ).setup()
    gen = torch.Generator().manual_seed(0)
    train_x, train_id = _sample(200, gen)
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-2)
    for _ in range(80):
        out = field(train_x)
        clip_loss = clip_huber_loss(out[FMGSFieldHeadNames.CLIP], clip_t[train_id])
        dino_loss = dino_mse_loss(out[FMGSFieldHeadNames.DINO], dino_t[train_id])
        loss = total_feature_loss(clip_loss, dino_loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    test_x, test_id = _sample(150, torch.Generator().manual_seed(123))
    with torch.no_grad():
        out = field(test_x, chunk_size=256)
    clip_cos = F.cosine_similarity(out[FMGSFieldHeadNames.CLIP], clip_t[test_id], dim=-1).mean()
    dino_cos = F.cosine_similarity(out[FMGSFieldHeadNames.DINO], dino_t[test_id], dim=-1).mean()
    assert clip_cos > 0.99, clip_cos
    assert dino_cos > 0.98, dino_cos
    nearest = (F.normalize(out[FMGSFieldHeadNames.CLIP], dim=-1) @ clip_t.T).argmax(dim=-1)
    assert (nearest == test_id).float().mean() >= 0.95
    # relevancy of each box's own embedding (against the other boxes' as negatives) peaks on that box
    clip = out[FMGSFieldHeadNames.CLIP]
    scores = torch.stack([relevancy(clip, clip_t[i : i + 1], clip_t[torch.arange(4) != i])[:, 0] for i in range(4)], -1)
    accuracy = (scores.argmax(dim=-1) == test_id).float().mean()
    assert accuracy >= 0.95, accuracy
