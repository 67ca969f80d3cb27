"""Clothes and accessories of a SynthFaces render: body, neckline, necklace, mask, glasses, hat.

Same conventions as `parts.py`: sizes in face units, widths >= ~1 output pixel at 64 px.
"""

from __future__ import annotations

import numpy as np

from .parts import FRAME, GOLD, PEARL, ellipse, mix, stroke


# --- body: drawn on the canvas, never tilted --------------------------------------------------
def body(d, L, attrs):
    S, cx = L.S, L.cx
    c = L.col["clothes"]
    ellipse(d, cx, 1.1 * S, 0.5 * S, 0.27 * S, fill=c, outline=mix(c, (0, 0, 0), 0.45),
         width=max(1, S // 64))
    kind, skin = attrs["clothing"], L.col["skin"]
    top, w = 0.83 * S, 0.11 * S
    if kind == "t-shirt":
        d.chord([cx - w, top - 0.07 * S, cx + w, top + 0.07 * S], 0, 180, fill=skin)
    elif kind == "v-neck":
        d.polygon([(cx - w, top), (cx + w, top), (cx, top + 0.15 * S)], fill=skin)
    elif kind == "collared":
        d.polygon([(cx - 0.6 * w, top), (cx + 0.6 * w, top), (cx, top + 0.09 * S)], fill=skin)
        for sgn in (-1, 1):
            d.polygon([(cx + sgn * 0.3 * w, top - 0.01 * S), (cx, top + 0.1 * S),
                       (cx + sgn * 1.5 * w, top + 0.07 * S)], fill=(246, 246, 246),
                      outline=(90, 90, 90))


def neck_front(d, L, attrs):
    """Turtleneck collar and necklaces sit in front of the neck, on the untilted body."""
    S, cx = L.S, L.cx
    if attrs["clothing"] == "turtleneck":
        c = L.col["clothes"]
        d.rounded_rectangle([cx - 0.09 * S, 0.77 * S, cx + 0.09 * S, 0.87 * S], 0.02 * S, fill=c)
        for y in (0.8, 0.835):
            d.line([(cx - 0.085 * S, y * S), (cx + 0.085 * S, y * S)],
                   fill=mix(c, (0, 0, 0), 0.4), width=max(1, S // 100))
    neck = attrs["necklace"]
    if neck == "none":
        return
    pts = [(cx + 0.1 * S * np.sin(t), 0.815 * S + 0.075 * S * np.cos(t))
           for t in np.linspace(-1.45, 1.45, 13)]
    if neck == "chain":
        d.line(pts, fill=GOLD, width=max(1, int(0.018 * S)), joint="curve")
    else:
        r = 0.017 * S
        for x, y in pts:
            ellipse(d, x, y, r, r, fill=PEARL, outline=(150, 150, 150))


# --- accessories ------------------------------------------------------------------------------
def mask(d, L, attrs, outline):
    kind = attrs["mask"]
    if kind == "none":
        return
    top = L.y(0.58)
    lower = sorted([p for p in outline if p[1] > top],
                   key=lambda p: np.arctan2(p[1] - L.cy, p[0] - L.cx))
    fill = (150, 200, 238) if kind == "surgical" else (32, 32, 38)
    pts = [(L.x(-0.98 * L.aw / L.a, 0.5), top)] + lower[::-1] + [(L.x(0.98 * L.aw / L.a, 0.5), top)]
    d.polygon(sorted(pts, key=lambda p: np.arctan2(p[1] - L.y(0.62), p[0] - L.cx)), fill=fill)
    loop = (250, 250, 250) if kind == "surgical" else (32, 32, 38)
    for sgn in (-1, 1):
        d.line([(L.cx + sgn * 0.9 * L.aw, L.y(0.62)), (L.cx + sgn * 1.0 * L.aw, L.y(0.47))],
               fill=loop, width=stroke(L, 0.04))
    if kind == "surgical":
        for t in (0.68, 0.76, 0.84):
            d.line([(L.x(-0.6), L.y(t)), (L.x(0.6), L.y(t))], fill=(100, 150, 200), width=stroke(L, 0.04))


def glasses(d, L, attrs):
    kind = attrs["glasses"]
    if kind == "none":
        return
    y = L.y(0.45 + L.geo["eye_height"])
    sx = 0.4 * (1 + L.geo["eye_spacing"])
    w = stroke(L, 0.06)
    for sgn in (-1, 1):
        x = L.x(sgn * sx)
        if kind == "rectangular":
            d.rectangle([x - 0.32 * L.a, y - 0.2 * L.a, x + 0.32 * L.a, y + 0.2 * L.a],
                        outline=FRAME, width=w)
        elif kind == "round":
            ellipse(d, x, y, 0.29 * L.a, 0.27 * L.a, outline=FRAME, width=w)
        else:   # tinted lenses: eye colour, winks and glares must stay readable behind them
            d.rounded_rectangle([x - 0.33 * L.a, y - 0.22 * L.a, x + 0.33 * L.a, y + 0.22 * L.a],
                                0.1 * L.a, fill=(10, 10, 20, 140), outline=FRAME, width=w)
        d.line([(x + sgn * 0.3 * L.a, y - 0.05 * L.a), (L.cx + sgn * 0.98 * L.aw, y - 0.08 * L.a)],
               fill=FRAME, width=w)
    inner = {"rectangular": 0.32, "round": 0.29}.get(kind, 0.33)
    d.line([(L.x(-sx) + inner * L.a, y - 0.04 * L.a), (L.x(sx) - inner * L.a, y - 0.04 * L.a)],
           fill=FRAME, width=w)


def hat(d, L, attrs):
    kind, c = attrs["hat"], L.col["hat"]
    if kind == "none":
        return
    dark = mix(c, (0, 0, 0), 0.4)
    aw = L.aw
    if kind == "cap":
        d.chord([L.cx - 1.14 * aw, L.y(0.08) - 0.45 * L.b, L.cx + 1.14 * aw, L.y(0.08) + 0.45 * L.b],
                180, 360, fill=c)
        ellipse(d, L.x(0, 0.5), L.y(0.09), 0.95 * L.a, 0.09 * L.b, fill=dark)
        ellipse(d, L.cx, L.y(0.08) - 0.45 * L.b, 0.08 * L.a, 0.05 * L.b, fill=dark)
    elif kind == "beanie":
        d.chord([L.cx - 1.16 * aw, L.y(0.1) - 0.62 * L.b, L.cx + 1.16 * aw, L.y(0.1) + 0.62 * L.b],
                180, 360, fill=c)
        for k in np.linspace(-0.8, 0.8, 7):
            d.line([(L.cx + k * aw, L.y(0.1) - 0.5 * L.b * np.sqrt(1 - k * k / 1.4)),
                    (L.cx + k * aw, L.y(0.1))], fill=dark, width=stroke(L, 0.04))
        d.rectangle([L.cx - 1.18 * aw, L.y(0.0), L.cx + 1.18 * aw, L.y(0.13)], fill=dark)
        ellipse(d, L.cx, L.y(0.1) - 0.64 * L.b, 0.2 * L.a, 0.2 * L.a, fill=c)
    else:   # top hat: tall crown, wide brim, contrasting band
        d.rectangle([L.cx - 0.78 * aw, L.y(-0.5), L.cx + 0.78 * aw, L.y(0.04)], fill=dark)
        d.rectangle([L.cx - 0.78 * aw, L.y(-0.08), L.cx + 0.78 * aw, L.y(0.0)], fill=c)
        ellipse(d, L.cx, L.y(0.05), 1.4 * aw, 0.09 * L.b, fill=dark)
