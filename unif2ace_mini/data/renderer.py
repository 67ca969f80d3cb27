"""Render a face from its attributes with PIL: draw supersampled, then box-downsample.

Everything is drawn in face units: `a` is the nominal half-width of the face and `L.y(t)` maps
t in [0, 1] (face top .. chin) to canvas rows, so every part scales with the face and stays
visible at 64 px. Colours and shapes are chosen to be far apart per value (the oracle must tell
them apart); nuisance variation (position, scale, colour jitter, hat colour, wink side, tilt
angle) is random but never changes an attribute. Single parts are drawn in `parts.py` (face,
hair) and `accessories.py` (clothes, mask, glasses, hat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from . import accessories, parts
from .identities import Identity

SUPPORTED_SIZES = (32, 64, 128, 256)
KEY = (255, 0, 254)  # "transparent" colour of the tilted-head layer; no palette colour is this

SKIN = {"pale": (255, 226, 208), "light": (236, 192, 152), "medium": (206, 150, 102),
        "tan": (170, 112, 66), "brown": (122, 78, 44), "dark": (72, 46, 30)}
HAIR = {"black": (22, 22, 24), "brown": (105, 60, 25), "blonde": (238, 200, 88),
        "red": (196, 58, 22), "gray": (140, 140, 146), "white": (246, 246, 240)}
EYE = {"brown": (110, 55, 15), "blue": (30, 110, 240), "green": (30, 170, 50),
       "gray": (118, 128, 140)}   # darker than the white of the eye, unlike a pale gray
LIPSTICK = {"red": (210, 16, 40), "pink": (250, 110, 190), "purple": (120, 30, 150)}
CLOTHES = {"black": (30, 30, 32), "red": (200, 30, 30), "blue": (30, 50, 150),
           "green": (20, 120, 50), "yellow": (230, 180, 20)}
BACKGROUND = {"white": (250, 250, 250), "gray": (150, 150, 150), "blue": (150, 195, 245),
              "green": (160, 225, 160), "yellow": (250, 238, 150), "pink": (250, 190, 215)}
HAT_COLORS = ((200, 40, 40), (40, 80, 180), (40, 130, 60), (60, 60, 60), (220, 170, 40),
              (120, 60, 160), (240, 120, 30))
FACE_SHAPE = {  # half-width and half-height multipliers, superellipse exponent, chin taper
    "oval": (0.86, 1.06, 2.0, 0.0), "round": (1.1, 0.95, 2.0, 0.0),
    "square": (1.0, 0.98, 4.0, 0.0), "heart": (1.08, 1.04, 2.2, 0.62)}


def mix(c1, c2, w: float) -> tuple[int, int, int]:
    """(1-w)*c1 + w*c2, as an RGB int tuple."""
    return tuple(int(round((1 - w) * x + w * y)) for x, y in zip(c1, c2))


def _lum(c) -> float:
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


def _contrast(c, skin, min_diff: float = 70.0):
    """Darken facial hair that would vanish on this skin (dark stubble on dark skin)."""
    if abs(_lum(c) - _lum(skin)) >= min_diff:
        return c
    k = max(0.0, (_lum(skin) - min_diff) / max(_lum(c), 1.0))
    return tuple(int(v * min(k, 1.0)) for v in c) if k > 0.1 else (10, 8, 6)


def _contour(skin):
    """Line colour for the nose and the frown furrow that reads on every skin tone: darker than
    light skin, lighter than dark skin."""
    if _lum(skin) >= 110:
        return mix(skin, (30, 10, 5), 0.65)
    return mix(skin, (255, 235, 220), 0.45)


def check_size(size: int) -> int:
    if size not in SUPPORTED_SIZES:
        raise ValueError(f"unsupported image size {size!r}; supported sizes: {list(SUPPORTED_SIZES)}")
    return size


@dataclass
class Layout:
    """Where the face sits on the canvas and the colours of this one render."""
    S: int                  # canvas side (image size * supersample)
    cx: float               # face centre x
    cy: float               # face centre y
    a: float                # nominal half-width of the face
    b: float                # nominal half-height of the face
    aw: float               # half-width of this face shape (a * shape factor)
    dx: float               # horizontal shift of the features when the head is turned
    turn: int               # -1 left, 0 forward, +1 right (viewer's side)
    geo: dict               # identity offsets
    col: dict               # resolved colours
    rng: np.random.Generator

    def y(self, t: float) -> float:
        return self.cy - self.b + 2 * self.b * t

    def x(self, s: float, turned: float = 1.0) -> float:
        """s in units of a from the centre line; features follow the head turn."""
        return self.cx + s * self.a + turned * self.dx


def _layout(attrs: dict, identity: Identity, S: int, rng: np.random.Generator) -> Layout:
    j = lambda lim: float(rng.uniform(-lim, lim))
    scale = 1 + j(0.04)
    a = 0.236 * S * scale * (1 + identity.geometry["face_width"])
    b = 0.29 * S * scale * (1 + identity.geometry["face_height"])
    turn = {"forward": 0, "left": -1, "right": 1}[attrs["head_turn"]]

    def jit(c, lim=6):
        return tuple(int(np.clip(v + rng.integers(-lim, lim + 1), 0, 255)) for v in c)

    skin = jit(SKIN[attrs["skin_tone"]], 4)
    hair = jit(HAIR.get(attrs["hair_color"], (0, 0, 0)))
    facial = _contrast(mix(hair, (0, 0, 0), 0.25) if attrs["bald"] == "no" else (55, 38, 26), skin)
    brow = _contrast(mix(facial, (0, 0, 0), 0.35), skin, 80)   # brows carry the emotion
    lip = LIPSTICK.get(attrs["lipstick"]) or mix(skin, (170, 40, 60), 0.6)
    # closed eyes hide the colour (eye_color "not visible"); the identity's colour fills the gap
    eye = EYE.get(attrs["eye_color"]) or EYE.get(identity.attributes.get("eye_color"), EYE["brown"])
    col = {"skin": skin, "hair": hair, "facial": facial, "brow": brow, "lip": jit(lip, 4),
           "shade": mix(skin, (0, 0, 0), 0.3), "line": mix(skin, (20, 5, 5), 0.7),
           "contour": _contour(skin),
           "eye": jit(eye, 4), "clothes": jit(CLOTHES[attrs["clothing_color"]]),
           "bg": jit(BACKGROUND[attrs["background"]], 4),
           "hat": HAT_COLORS[rng.integers(len(HAT_COLORS))]}
    return Layout(S=S, cx=S * (0.5 + j(0.025)), cy=S * (0.5 + j(0.02)), a=a, b=b,
                  aw=a * FACE_SHAPE[attrs["face_shape"]][0], dx=turn * 0.2 * a, turn=turn,
                  geo=identity.geometry, col=col, rng=rng)


def face_outline(L: Layout, shape: str, n: int = 48) -> list[tuple[float, float]]:
    """Closed outline of the face: a superellipse, tapered to a chin for heart shapes."""
    fw, fh, p, taper = FACE_SHAPE[shape]
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(th), np.sin(th)
    x = np.sign(c) * np.abs(c) ** (2 / p)
    y = np.sign(s) * np.abs(s) ** (2 / p)
    x = x * (1 - taper * np.clip(y, 0, 1) ** 1.6)       # y > 0 is the lower half (chin)
    cy = L.cy + L.b * (fh - 1)                           # keep the forehead at t = 0
    return list(zip(L.cx + 0.3 * L.dx + x * L.a * fw, cy + y * L.b * fh))


def render(attrs: dict, identity: Identity, size: int = 64, supersample: int = 4,
           rng: np.random.Generator | None = None) -> Image.Image:
    """One face as an RGB PIL image of `size` x `size`. Same (attrs, identity, rng state) => same pixels."""
    check_size(size)
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    rng = rng if rng is not None else np.random.default_rng(0)
    S = size * supersample
    L = _layout(attrs, identity, S, rng)
    canvas = Image.new("RGB", (S, S), L.col["bg"])
    accessories.body(ImageDraw.Draw(canvas, "RGBA"), L, attrs)

    tilt = {"upright": 0.0, "left": 1.0, "right": -1.0}[attrs["head_tilt"]]
    if tilt:  # draw the head on a keyed layer, rotate it about the neck, paste it back
        layer = Image.new("RGB", (S, S), KEY)
        _head(ImageDraw.Draw(layer, "RGBA"), L, attrs)
        angle = tilt * float(rng.uniform(13, 17))
        # NEAREST keeps the key colour exact; the box downsample below antialiases the edges.
        layer = layer.rotate(angle, resample=Image.NEAREST, center=(L.cx, 0.86 * S), fillcolor=KEY)
        arr = np.asarray(layer)
        mask = Image.fromarray(((arr != KEY).any(axis=2) * 255).astype(np.uint8), "L")
        canvas.paste(layer, (0, 0), mask)
    else:
        _head(ImageDraw.Draw(canvas, "RGBA"), L, attrs)
    accessories.neck_front(ImageDraw.Draw(canvas, "RGBA"), L, attrs)
    return canvas.reduce(supersample) if supersample > 1 else canvas


def _head(d: ImageDraw.ImageDraw, L: Layout, attrs: dict) -> None:
    """Back to front: hair behind, neck, ears, face, skin details, facial hair, mouth, eyes,
    brows, hair in front, mask, glasses, hat."""
    outline = face_outline(L, attrs["face_shape"])
    parts.hair_back(d, L, attrs)
    parts.neck(d, L)
    parts.ears(d, L, attrs)
    d.polygon(outline, fill=L.col["skin"])
    parts.skin_details(d, L, attrs)
    parts.beard(d, L, attrs, outline)
    parts.sideburns(d, L, attrs)
    parts.nose(d, L, attrs)
    parts.mouth(d, L, attrs)
    parts.mustache(d, L, attrs)
    parts.eyes(d, L, attrs)
    parts.eyebrows(d, L, attrs)
    parts.hair_front(d, L, attrs)
    accessories.mask(d, L, attrs, outline)
    accessories.glasses(d, L, attrs)
    accessories.hat(d, L, attrs)
