"""Reusable modules the recipes are built from, importable on their own:

    from torch_cookbook.nn import MultiHeadAttention, UNet, gram_matrix, pgd_linf

Names resolve lazily (PEP 562), so importing one does not import every dependency (gymnasium, torchvision...).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AdditiveAttention": "attention",
    "ATTACKS": "attacks",
    "attend": "attention",
    "ATTENTION_KINDS": "attention",
    "AttentionPooling": "attention",
    "backbone_parameters": "resnet",
    "BagOfEmbeddings": "text",
    "beam_candidates": "seq2seq",
    "beam_search": "seq2seq",
    "cached_classifier": "fmnist_features",
    "causal_mask": "attention",
    "CharVocab": "seq2seq",
    "check_eps": "attacks",
    "content_loss": "style",
    "ConvAutoEncoder": "autoencoder",
    "dcgan_init": "gan",
    "Decoder": "seq2seq",
    "dice_loss": "unet",
    "Discriminator": "gan",
    "DotProductAttention": "attention",
    "Encoder": "seq2seq",
    "episode_seed": "rl",
    "FashionClassifier": "fmnist_features",
    "FeatureExtractor": "fmnist_features",
    "fgsm": "attacks",
    "final_state": "lstm",
    "freeze_backbone": "resnet",
    "GeneralAttention": "attention",
    "Generator": "gan",
    "gram_matrix": "style",
    "greedy_decode": "seq2seq",
    "grey_state_dict": "resnet",
    "head_parameters": "resnet",
    "Hypothesis": "seq2seq",
    "imagenet_weights_path": "resnet",
    "KimCNN": "text",
    "kl_divergence": "autoencoder",
    "last_valid_output": "lstm",
    "lengths_from_padding": "lstm",
    "linear_epsilon": "rl",
    "load_classifier": "fmnist_features",
    "load_imagenet_resnet18": "resnet",
    "LSTMClassifier": "lstm",
    "LSTMForecaster": "lstm",
    "make_attention": "attention",
    "make_env": "rl",
    "make_vgg16_features": "style",
    "masked_softmax": "attention",
    "MultiHeadAttention": "attention",
    "next_state_value": "rl",
    "padding_mask": "attention",
    "pgd_linf": "attacks",
    "pipeline_step_p2p": "pipeline",
    "polyak_update": "rl",
    "QNetwork": "rl",
    "rank_hypotheses": "seq2seq",
    "replace_head": "resnet",
    "ReplayBuffer": "rl",
    "resnet18_grey": "resnet",
    "save_classifier": "fmnist_features",
    "scaled_dot_product_attention": "attention",
    "ScaledDotProductAttention": "attention",
    "SeedAutoEncoder": "autoencoder",
    "Seq2Seq": "seq2seq",
    "split_stages": "pipeline",
    "style_loss": "style",
    "td_target": "rl",
    "total_variation": "style",
    "train_classifier": "fmnist_features",
    "TwoDevicePipeline": "pipeline",
    "UNet": "unet",
    "VAE": "autoencoder",
    "vae_loss": "autoencoder",
    "VGG16_LAYERS": "style",
    "VGGFeatures": "style",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return __all__
