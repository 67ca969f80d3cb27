"""Identities: a person fixes face shape, skin tone, eye colour, nose and small geometry offsets.

Each image of that person then draws everything else (hair, accessories, expression, pose), so
the same identity appears with different looks: what the face (identity) expert and the identity
metrics need. An identity is a pure function of (seed, identity_id), so every split and every
worker process agrees on who person 17 is without sharing state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .groups import TAXONOMY
from .taxonomy import Taxonomy

_IDENTITY_STREAM = 7919  # keeps identity draws independent of the per-image streams


@dataclass(frozen=True)
class Identity:
    identity_id: int
    attributes: dict            # identity groups -> value (face_shape, skin_tone, eye_color, nose)
    geometry: dict              # small offsets, as fractions of the face half-width / height


def make_identity(seed: int, identity_id: int, taxonomy: Taxonomy = TAXONOMY) -> Identity:
    rng = np.random.default_rng([seed, _IDENTITY_STREAM, identity_id])
    attrs = {}
    for g in taxonomy.groups:
        if g.identity:
            p = np.array(g.weights) / sum(g.weights)
            attrs[g.name] = g.values[rng.choice(len(g.values), p=p)]
    # Offsets are small on purpose: they make people recognisable without ever changing which
    # attribute value a face shows (a wide oval must still read as oval).
    u = lambda lim: float(rng.uniform(-lim, lim))
    geometry = {"face_width": u(0.05), "face_height": u(0.03), "eye_spacing": u(0.06),
                "eye_height": u(0.02), "brow_height": u(0.015), "mouth_width": u(0.12),
                "nose_length": u(0.1)}
    return Identity(identity_id, attrs, geometry)


def sample_image_attributes(rng: np.random.Generator, identity: Identity,
                            pair: int | None = None, taxonomy: Taxonomy = TAXONOMY,
                            max_tries: int = 200) -> dict[str, str]:
    """Attributes of one image of `identity`.

    pair=None: a regular image, which must not contain any held-out compositional pair.
    pair=k:    a compositional image that shows held-out pair k (and no other held-out pair).
    Identity groups keep the identity's value unless the image hides it (closed eyes give
    eye_color "not visible").
    """
    # An identity value that a later group can hide (eye colour behind closed eyes) is not
    # pinned: the sampler decides visibility first, then the identity's value fills it in.
    hideable = {r.then_group for r in taxonomy.rules} & set(identity.attributes)
    fixed = {k: v for k, v in identity.attributes.items() if k not in hideable}
    if pair is not None:
        fixed.update(dict(taxonomy.compositional_pairs[pair]))
    for _ in range(max_tries):
        attrs = taxonomy.sample(rng, fixed)
        for name in hideable:
            if identity.attributes[name] in taxonomy.allowed(name, attrs):
                attrs[name] = identity.attributes[name]
        held = taxonomy.held_out_pairs(attrs)
        if held == ([] if pair is None else [pair]):
            return attrs
    raise RuntimeError(f"could not sample an image for identity {identity.identity_id}, pair {pair}")
