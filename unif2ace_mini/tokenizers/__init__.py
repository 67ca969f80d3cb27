"""Image and text tokenizers and the shared Show-o vocabulary (DESIGN §5).

    image.py     ImageTokenizer interface, input checks, save/load, the plain-torch VQ-VAE
    vqmodel.py   the same interface around diffusers' VQModel (gpu, pretrained aMUSEd VQ-GAN)
    vq.py        nearest-code quantisation, straight-through gradients, k-means, dead-code restarts
    train.py     the image-tokenizer training loop and evaluation
    metrics.py   PSNR, codebook perplexity, dead-code share
    text.py      byte-level BPE text tokenizer / Phi-1.5's, with Show-o's special tokens
    vocab.py     one vocabulary: [text | special | image codes | MASK]
    config.py    per-profile settings (ImageTokenizerConfig, TOKENIZER_CONFIGS)
    cache.py     trained tokenizers in the artifact cache (train once per data + config)
    shapes.py    coloured shapes, a tiny synthetic image set for tests and benchmarks

diffusers is imported only when a VQModel backend is used (it is slow to import).
"""

from .cache import load_or_train_image_tokenizer, load_or_train_text_tokenizer
from .config import (TEXT_TOKENIZER_CONFIGS, TOKENIZER_CONFIGS, ImageTokenizerConfig,
                     TextTokenizerConfig)
from .image import (ImageTokenizer, PlainVQTokenizer, build_image_tokenizer, check_codes,
                    check_images, images_from_uint8, images_to_uint8)
from .metrics import attribute_retention, code_counts, dead_code_share, perplexity, psnr
from .shapes import coloured_shapes
from .text import (SPECIAL_TOKENS, add_special_tokens, load_text_tokenizer, special_ids,
                   train_text_tokenizer)
from .train import evaluate_image_tokenizer, fit_image_tokenizer, train_image_tokenizer
from .vocab import Vocabulary


def load_image_tokenizer(path, device="cpu") -> ImageTokenizer:
    """Load any image tokenizer written by `save_pretrained` (never downloads)."""
    return ImageTokenizer.from_pretrained(path, device=device)


__all__ = [
    "ImageTokenizerConfig", "TextTokenizerConfig", "TOKENIZER_CONFIGS", "TEXT_TOKENIZER_CONFIGS",
    "ImageTokenizer", "PlainVQTokenizer", "build_image_tokenizer", "load_image_tokenizer",
    "check_images", "check_codes", "images_from_uint8", "images_to_uint8",
    "psnr", "perplexity", "attribute_retention", "dead_code_share", "code_counts", "coloured_shapes",
    "SPECIAL_TOKENS", "train_text_tokenizer", "load_text_tokenizer", "add_special_tokens",
    "special_ids", "train_image_tokenizer", "fit_image_tokenizer", "evaluate_image_tokenizer",
    "Vocabulary",
    "load_or_train_image_tokenizer", "load_or_train_text_tokenizer",
]
