"""Image encoders for the sequence-level MoE's CLIP and face experts (DESIGN §8), trained here.

    config.py        ClipConfig / FaceEncoderConfig, per-profile CLIP_CONFIGS / FACE_ENCODER_CONFIGS
    data.py          image-caption pairs, identity-labelled faces, held-out people
    clip.py          a small transformers CLIPModel on our BPE tokenizer, contrastive training
    zeroshot.py      zero-shot attribute accuracy and caption retrieval
    identity.py      IResNet backbone, ArcFace margin head, identity training
    verification.py  same-person verification on held-out people (2-fold accuracy, ROC AUC)
    features.py      one FeatureExtractor interface; pretrained CLIP / local face-model adapters
    cache.py         load_or_train_clip / load_or_train_face_encoder / extract_features

Quick start:

    from unif2ace_mini import encoders
    clip, report = encoders.load_or_train_clip("quick")
    feats = encoders.extract_features("quick", "train")    # {"clip": (N,T,D), "face": (N,1,D)}
"""

from .cache import (clip_dir, clip_extractor, evaluate_clip, evaluate_face_encoder,
                    extract_features, face_encoder_path, face_extractor, features_path, load_clip,
                    load_feature_extractors, load_or_train_clip, load_or_train_face_encoder)
from .clip import TextBatcher, build_clip_model, encode_images, encode_texts, train_clip
from .config import (CLIP_CONFIGS, FACE_ENCODER_CONFIGS, ClipConfig, FaceEncoderConfig,
                     clip_config, face_encoder_config)
from .data import (CaptionSampler, clip_training_set, held_out_identities, identity_training_set,
                   pool_identity_ids, verification_set)
from .features import (ClipImageFeatures, FaceIdentityFeatures, FeatureExtractor,
                       convert_insightface_checkpoint, load_face_backbone, load_face_model,
                       load_pretrained_clip, save_face_model)
from .identity import (ArcFaceHead, IResNet, arcface_logits, build_face_encoder, embed_faces,
                       train_face_encoder)
from .verification import (best_threshold, pixel_embeddings, roc_auc, verification_pairs,
                           verification_report)
from .zeroshot import attribute_prompts, retrieval_recall, zero_shot_accuracy

__all__ = [
    "ClipConfig", "FaceEncoderConfig", "CLIP_CONFIGS", "FACE_ENCODER_CONFIGS", "clip_config",
    "face_encoder_config",
    "build_clip_model", "TextBatcher", "train_clip", "encode_images", "encode_texts",
    "attribute_prompts", "zero_shot_accuracy", "retrieval_recall",
    "IResNet", "ArcFaceHead", "arcface_logits", "build_face_encoder", "train_face_encoder",
    "embed_faces", "verification_pairs", "verification_report", "best_threshold", "roc_auc",
    "pixel_embeddings",
    "FeatureExtractor", "ClipImageFeatures", "FaceIdentityFeatures", "load_pretrained_clip",
    "load_face_model", "load_face_backbone", "save_face_model", "convert_insightface_checkpoint",
    "CaptionSampler", "clip_training_set", "identity_training_set", "verification_set",
    "held_out_identities", "pool_identity_ids",
    "load_or_train_clip", "load_or_train_face_encoder", "evaluate_clip", "evaluate_face_encoder",
    "clip_extractor", "face_extractor", "load_feature_extractors", "extract_features",
    "clip_dir", "face_encoder_path", "features_path", "load_clip",
]
