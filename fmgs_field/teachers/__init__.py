"""Frozen 2D teachers whose dense features FMGS distils: OpenCLIP (hybrid tile maps) and DINO (patch descriptors)."""

from fmgs_field.teachers.base import FeatureTeacher, FeatureTeacherConfig, MissingWeightsError, resize_feature_map
from fmgs_field.teachers.clip_teacher import CLIPTeacher, CLIPTeacherConfig
from fmgs_field.teachers.dino_teacher import DINOTeacher, DINOTeacherConfig, dino_feature_map
from fmgs_field.teachers.feature_cache import FeatureCache, cached_teacher_features, image_key
from fmgs_field.teachers.pyramid import hybrid_clip_map

__all__ = [
    "CLIPTeacher",
    "CLIPTeacherConfig",
    "DINOTeacher",
    "DINOTeacherConfig",
    "FeatureCache",
    "FeatureTeacher",
    "FeatureTeacherConfig",
    "MissingWeightsError",
    "cached_teacher_features",
    "dino_feature_map",
    "hybrid_clip_map",
    "image_key",
    "resize_feature_map",
]
