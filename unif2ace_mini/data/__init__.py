"""SynthFaces: procedural faces with exact attributes, captions and VQA (DESIGN §4).

    taxonomy / groups  attribute groups, phrases, consistency rules, held-out pairs
    identities         who a person is (face shape, skin, eyes, nose, geometry)
    renderer / parts   PIL drawing, supersampled then downsampled
    text               captions, the caption parser, VQA pairs
    build / dataset    imagefolder build and loading (records, torch Dataset, tensors)
    oracle             the CNN that reads attributes back: the judge of later notebooks
    cli                `python -m unif2ace_mini data build`
"""

from __future__ import annotations

from .build import SPLITS, build, build_or_load, cache_key, split_sizes
from .dataset import SynthFacesDataset, load_split, load_taxonomy, load_tensors, to_unit_range
from .groups import COMPOSITIONAL_PAIRS, TAXONOMY
from .identities import Identity, make_identity, sample_image_attributes
from .oracle import (AttributeOracle, degrade, evaluate_oracle, gaussian_blur, load_oracle,
                     load_or_train_oracle, oracle_path, save_oracle, train_oracle)
from .renderer import SUPPORTED_SIZES, render
from .taxonomy import Group, Rule, Taxonomy
from .text import make_caption, make_vqa, parse_caption
