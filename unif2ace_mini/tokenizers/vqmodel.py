"""The image-tokenizer interface around diffusers' `VQModel`: trained from a small config (gpu
profile) or loaded pretrained (paper profile: aMUSEd's VQ-GAN, 8192 codes, 16x downsampling).

We use VQModel's encoder (+ quant_conv), codebook (`quantize.embedding`) and decoder
(post_quant_conv + decoder) but quantise with our own vq.quantize, so both backends share one
nearest-code rule, loss and codebook-health code. (diffusers' own VectorQuantizer, in its default
`legacy=True` mode, puts beta on the codebook term instead of the commitment term.)

Lean-config findings on a 2-core CPU (benchmarks/bench_tokenizer.py, 32 px -> 8x8, batch 64):
going from diffusers-default-style blocks (2 ResNets per level, mid-block attention, 32 groups,
64-128 channels; 11-13 img/s) to the lean config (1 ResNet per level, no attention, 16 groups,
32-64 channels; 48-61 img/s) is a 4-5x gain; channels_last made no difference beyond noise.
Still, the decoder always runs layers_per_block + 1 GroupNorm'd ResNets per level plus a mid block,
and the plain VQ-VAE trains 5-9x faster again, which is why it is the CPU choice.
"""

from __future__ import annotations

import os

import torch
from diffusers import VQModel

from .config import ImageTokenizerConfig
from .image import ImageTokenizer

# The VQ-GAN shipped with aMUSEd (amused/amused-256, subfolder "vqvae"), as diffusers'
# scripts/convert_amused.py builds it: 5 levels -> 16x downsampling, 64-dim codes, 8192 codes.
AMUSED_VQ_CONFIG = dict(
    act_fn="silu", block_out_channels=(128, 256, 256, 512, 768),
    down_block_types=("DownEncoderBlock2D",) * 5, up_block_types=("UpDecoderBlock2D",) * 5,
    in_channels=3, out_channels=3, latent_channels=64, layers_per_block=2, norm_num_groups=32,
    num_vq_embeddings=8192, sample_size=32, mid_block_add_attention=False,
    lookup_from_codebook=True,
)


def vqmodel_kwargs(config: ImageTokenizerConfig) -> dict:
    """VQModel constructor arguments for a (small) trainable config."""
    n = len(config.block_out_channels)
    return dict(
        in_channels=3, out_channels=3, act_fn="silu",
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups,
        latent_channels=config.code_dim, vq_embed_dim=config.code_dim,
        num_vq_embeddings=config.codebook_size, sample_size=config.image_size,
        mid_block_add_attention=config.mid_block_attention, lookup_from_codebook=True,
    )


class DiffusersVQTokenizer(ImageTokenizer):
    """A diffusers VQModel behind the ImageTokenizer interface."""

    backend = "diffusers"

    def __init__(self, config: ImageTokenizerConfig, vqmodel: VQModel | None = None):
        super().__init__(config)
        self.vqmodel = vqmodel if vqmodel is not None else VQModel(**vqmodel_kwargs(config))
        if config.channels_last:
            self.vqmodel.to(memory_format=torch.channels_last)

    def encode_latents(self, images):                       # (B, 3, H, W) -> (B, D, h, w)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.vqmodel.encode(images).latents          # encoder + quant_conv

    def decode_latents(self, z_q):                          # (B, D, h, w) -> (B, 3, H, W)
        m = self.vqmodel
        h = m.post_quant_conv(z_q)
        # "spatial" norm (MoVQ-style) conditions the decoder's norms on the quantised latents.
        return m.decoder(h, z_q if m.config.norm_type == "spatial" else None)

    @property
    def codebook(self):
        return self.vqmodel.quantize.embedding.weight

    def extra_config(self) -> dict:
        # The VQModel's own config, so from_pretrained can rebuild pretrained architectures too.
        cfg = {k: v for k, v in dict(self.vqmodel.config).items() if not k.startswith("_")}
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}  # JSON-able
        return {"vqmodel_config": cfg}

    @classmethod
    def _from_meta(cls, config, meta):
        return cls(config, VQModel.from_config(meta["vqmodel_config"]))

    @classmethod
    def from_vqmodel(cls, path_or_id: str | os.PathLike, subfolder: str | None = None,
                     image_size: int = 256, **hf_kwargs) -> "DiffusersVQTokenizer":
        """Wrap a pretrained diffusers VQModel from a local folder (no network) or a hub id (may
        download, paper profile only), e.g. from_vqmodel("amused/amused-256", subfolder="vqvae")."""
        try:
            vq = VQModel.from_pretrained(path_or_id, subfolder=subfolder, **hf_kwargs)
        except (OSError, ValueError) as err:
            where = f"{path_or_id!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
            raise ValueError(f"could not load a diffusers VQModel from {where}: {err}") from err
        return cls(config_from_vqmodel(vq, image_size, pretrained=str(path_or_id),
                                       subfolder=subfolder), vq).eval()


def config_from_vqmodel(vq: VQModel, image_size: int, pretrained: str | None = None,
                        subfolder: str | None = None) -> ImageTokenizerConfig:
    """Describe an existing VQModel as an ImageTokenizerConfig (backend 'pretrained')."""
    c = vq.config
    return ImageTokenizerConfig(
        backend="pretrained", image_size=image_size,
        downsample=2 ** (len(c.block_out_channels) - 1),
        codebook_size=c.num_vq_embeddings, code_dim=c.vq_embed_dim or c.latent_channels,
        block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
        norm_num_groups=c.norm_num_groups, mid_block_attention=c.mid_block_add_attention,
        channels_last=False, pretrained=pretrained or "<in-memory>",
        pretrained_subfolder=subfolder, max_steps=0, max_seconds=0.0,
    )
