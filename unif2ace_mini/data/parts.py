"""The face parts of a SynthFaces render, one function per part (called in order by renderer._head);
clothes and accessories are in `accessories.py`.

Sizes are in face units (L.a, L.b; rows via L.y(t)) so a part covers the same share of the face
at every resolution. Widths are kept >= ~1 output pixel at 64 px (a is ~15 px there).
"""

from __future__ import annotations

import numpy as np

GOLD, PEARL, FRAME = (235, 185, 30), (248, 246, 236), (18, 18, 22)   # shared with accessories
TEETH, MOUTH_IN, TONGUE = (250, 250, 245), (40, 5, 15), (240, 95, 125)
TEAR = (70, 165, 255)


def mix(c1, c2, w):
    return tuple(int(round((1 - w) * x + w * y)) for x, y in zip(c1, c2))


def ellipse(d, cx, cy, rx, ry, **kw):
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


def stroke(L, k: float) -> int:
    return max(1, int(round(k * L.a)))


def curve(L, x0, x1, y, depth, n=9, turned=1.0):
    """A parabola from x0 to x1 (units of a) at row y; depth > 0 bows downward (a smile)."""
    xs = np.linspace(x0, x1, n)
    u = (xs - (x0 + x1) / 2) / ((x1 - x0) / 2)
    return [(L.x(x, turned), y + depth * (1 - uu * uu)) for x, uu in zip(xs, u)]


# --- hair ---------------------------------------------------------------------------------------
def _hair_mass(L, attrs):
    """Outline of the hair behind the head: an ellipse round the skull, plus a curtain down to
    the chin (medium) or the shoulders (long)."""
    rx, ry, yc = 1.12 * L.aw, 0.78 * L.b, L.y(0.3)
    if attrs["hair_length"] == "short":
        return [(L.cx + rx * np.cos(t), yc - ry * np.sin(t))
                for t in np.linspace(0, 2 * np.pi, 40, endpoint=False)]
    top = [(L.cx + rx * np.cos(t), yc - ry * np.sin(t)) for t in np.linspace(np.pi, 0, 25)]
    medium = attrs["hair_length"] == "medium"
    if medium:
        half, bottom = 1.2 * L.aw, L.y(1.0)
        return [(L.cx - half, bottom), (L.cx - half, yc)] + top + [(L.cx + half, yc),
                                                                   (L.cx + half, bottom)]
    # long: locks down to the bottom edge on both sides, a notch in the middle so the
    # neckline of the clothes stays visible
    half, inner, bottom = 1.32 * L.aw, 0.72 * L.aw, 1.0 * L.S
    return [(L.cx - inner, bottom), (L.cx - half, bottom), (L.cx - half, yc)] + top + \
        [(L.cx + half, yc), (L.cx + half, bottom), (L.cx + inner, bottom),
         (L.cx + inner, L.y(1.0)), (L.cx - inner, L.y(1.0))]


def hair_back(d, L, attrs):
    if attrs["bald"] == "yes":
        return
    pts = _densify(_hair_mass(L, attrs), 0.12 * L.a)
    kind, c = attrs["hair_type"], L.col["hair"]
    if kind == "wavy":
        pts = _wiggle(pts, 0.07 * L.a, 0.55 * L.a)
    d.polygon(pts, fill=c)
    if kind == "curly":
        r = 0.13 * L.a
        for x, y in pts[::2]:
            ellipse(d, x, y, r, r, fill=c)
    _strands(d, L, attrs, pts)


def _densify(pts, step, closed=True):
    """Points every `step` along the outline (closed: including the edge from last to first)."""
    out = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1] if closed else pts[1:]):
        n = max(1, int(np.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(n)]
    return out if closed else out + [pts[-1]]


def _wiggle(pts, amp, period):
    """Push each outline point along its normal by a sine of the arc length: wavy hair edges."""
    p = np.array(pts)
    seg = np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)
    normal = np.stack([seg[:, 1], -seg[:, 0]], 1) / (np.linalg.norm(seg, axis=1, keepdims=True) + 1e-9)
    s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    return [tuple(q) for q in p + amp * np.sin(2 * np.pi * s / period)[:, None] * normal]


def _strands(d, L, attrs, pts):
    """Texture lines in the side hair: straight lines, sine waves or little curls."""
    c = L.col["hair"]
    tone = mix(c, (255, 255, 255), 0.35) if sum(c) < 200 else mix(c, (0, 0, 0), 0.35)
    kind, w = attrs["hair_type"], stroke(L, 0.05)
    y0 = L.y(0.05)
    y1 = max(y for _, y in pts) - 0.1 * L.a
    for sgn in (-1, 1):
        for k in (0.9, 1.02):
            x = L.cx + sgn * k * L.aw
            if kind == "straight":
                d.line([(x, y0 + 0.15 * L.b), (x, y1)], fill=tone, width=w)
            elif kind == "wavy":
                ys = np.linspace(y0 + 0.15 * L.b, y1, 12)
                d.line([(x + 0.06 * L.a * np.sin(i * 1.6), y) for i, y in enumerate(ys)],
                       fill=tone, width=w)
            else:
                for y in np.arange(y0 + 0.2 * L.b, y1, 0.16 * L.a):
                    r = 0.06 * L.a
                    ellipse(d, x, y, r, r, outline=tone, width=w)


HAIRLINE = {  # (x in units of aw, t) from the right temple to the centre; mirrored to the left
    "normal": [(1.0, 0.42), (0.85, 0.24), (0.5, 0.19), (0.0, 0.18)],
    "receding": [(1.0, 0.42), (0.9, 0.18), (0.55, 0.0), (0.25, 0.06), (0.0, 0.07)],
    "widow's peak": [(1.0, 0.42), (0.85, 0.24), (0.45, 0.18), (0.22, 0.2), (0.0, 0.32)],
}


def hair_front(d, L, attrs):
    """The hair over the forehead: the hairline cut out of the hair cap, then the bangs."""
    if attrs["bald"] == "yes":
        return
    c, aw = L.col["hair"], L.aw
    right = [(L.cx + x * aw, L.y(t)) for x, t in HAIRLINE[attrs["hairline"]]]
    left = [(2 * L.cx - x, y) for x, y in right[::-1][1:]]
    rx, ry, yc = 1.12 * aw, 0.78 * L.b, L.y(0.3)
    top = [(L.cx + rx * np.cos(t), yc - ry * np.sin(t)) for t in np.linspace(np.pi, 0, 21)]
    # open: a closing edge would run across the eyes (and grow curls there)
    cap = _densify([(L.cx - 1.12 * aw, L.y(0.42))] + top + [(L.cx + 1.12 * aw, L.y(0.42))],
                   0.12 * L.a, closed=False)
    if attrs["hair_type"] == "wavy":
        cap = _wiggle(cap, 0.07 * L.a, 0.55 * L.a)
    d.polygon(cap + right + left, fill=c)
    if attrs["hair_type"] == "curly":
        for x, y in cap[1:-1:2]:
            ellipse(d, x, y, 0.13 * L.a, 0.13 * L.a, fill=c)
    bangs = attrs["bangs"]
    if bangs == "straight":
        d.polygon([(L.cx - 0.95 * aw, L.y(0.1)), (L.cx + 0.95 * aw, L.y(0.1)),
                   (L.cx + 0.9 * aw, L.y(0.25)), (L.cx - 0.9 * aw, L.y(0.25))], fill=c)
    elif bangs == "side-swept":   # both kinds end above the brows: they carry the emotion
        d.polygon([(L.cx - 0.95 * aw, L.y(0.08)), (L.cx + 0.95 * aw, L.y(0.08)),
                   (L.cx + 0.95 * aw, L.y(0.12)), (L.cx - 0.2 * aw, L.y(0.2)),
                   (L.cx - 0.95 * aw, L.y(0.29))], fill=c)


def sideburns(d, L, attrs):
    if attrs["sideburns"] == "no":
        return
    for sgn in (-1, 1):
        xo = L.cx + sgn * 0.97 * L.aw
        xi = L.cx + sgn * 0.74 * L.aw
        d.polygon([(xo, L.y(0.3)), (xi, L.y(0.3)), (xi, L.y(0.64)), (xo, L.y(0.6))],
                  fill=L.col["facial"])


# --- head and skin --------------------------------------------------------------------------
def neck(d, L):
    w = 0.42 * L.a
    d.rectangle([L.cx - w, L.y(0.8), L.cx + w, 0.92 * L.S], fill=mix(L.col["skin"], (0, 0, 0), 0.12))


def ears(d, L, attrs):
    for sgn in (-1, 1):
        x = L.cx + sgn * 1.0 * L.aw - 0.3 * L.dx
        rx = 0.15 * L.a * (0.55 if sgn == L.turn else 1.0)   # the ear we turn toward hides
        ellipse(d, x, L.y(0.47), rx, 0.2 * L.b, fill=L.col["skin"], outline=L.col["shade"],
             width=stroke(L, 0.03))
        if attrs["earrings"] == "studs":
            r = 0.1 * L.a
            ellipse(d, x, L.y(0.57), r, r, fill=GOLD)
        elif attrs["earrings"] == "hoops":
            r = 0.17 * L.a
            ellipse(d, x, L.y(0.56) + r, r, r, outline=GOLD, width=stroke(L, 0.08))


def skin_details(d, L, attrs):
    skin = L.col["skin"]
    if attrs["rosy_cheeks"] == "yes":
        for sgn in (-1, 1):
            ellipse(d, L.x(sgn * 0.52), L.y(0.6), 0.2 * L.a, 0.09 * L.b, fill=(240, 70, 100, 150))
    if attrs["freckles"] == "yes":
        dot = mix(skin, (25, 8, 0), 0.7)   # dark enough to show on every skin tone
        r = 0.055 * L.a
        for sx, t in ((0.3, 0.54), (0.45, 0.58), (0.6, 0.54), (0.38, 0.63), (0.55, 0.64),
                      (0.15, 0.55)):
            for sgn in (-1, 1):
                ellipse(d, L.x(sgn * sx), L.y(t), r, r, fill=dot)
    if attrs["wrinkles"] == "yes":
        c, w = L.col["line"], stroke(L, 0.05)
        for t in (0.2, 0.25, 0.3):   # forehead (bangs may hide these, the rest stays visible)
            d.line(curve(L, -0.4, 0.4, L.y(t), -0.02 * L.b), fill=c, width=w)
        for sgn in (-1, 1):
            ex = sgn * 0.72
            for dy in (-0.05, 0.0, 0.05):   # crow's feet
                d.line([(L.x(ex), L.y(0.45)), (L.x(ex + sgn * 0.14), L.y(0.45 + dy))], fill=c, width=w)
            d.line([(L.x(sgn * 0.42), L.y(0.64)), (L.x(sgn * 0.52), L.y(0.72)),
                    (L.x(sgn * 0.54), L.y(0.82))], fill=c, width=w)   # smile lines, clear of the nose


def nose(d, L, attrs):
    """Small: a button (two nostrils, a short tip arc). Large: a long, wide wedge outlined in the
    contrast colour from just under the eyes, so its upper half still shows above a mask."""
    c = L.col["contour"]
    tip = L.y(0.63)
    nx = lambda s: L.x(s, turned=1.5)
    if attrs["nose"] == "small":
        d.line(curve(L, -0.08, 0.08, tip + 0.01 * L.b, 0.03 * L.b, n=5, turned=1.5), fill=c,
               width=stroke(L, 0.05))
        for sgn in (-1, 1):
            ellipse(d, nx(sgn * 0.06), tip, 0.035 * L.a, 0.025 * L.b, fill=c)
        return
    top = L.y(0.42 - 0.03 * L.geo["nose_length"])
    base = tip + 0.03 * L.b
    d.polygon([(nx(-0.07), top), (nx(0.07), top), (nx(0.26), base), (nx(-0.26), base)],
              fill=mix(L.col["skin"], c, 0.55), outline=c, width=stroke(L, 0.06))
    for sgn in (-1, 1):
        ellipse(d, nx(sgn * 0.13), base - 0.02 * L.b, 0.075 * L.a, 0.045 * L.b, fill=c)


def beard(d, L, attrs, outline):
    kind, c = attrs["beard"], L.col["facial"]
    if kind == "none":
        return
    if kind == "5 o'clock shadow":   # translucent, so the skin shows through
        jaw = [p for p in outline if p[1] > L.y(0.64)]
        d.polygon(sorted(jaw, key=lambda p: np.arctan2(p[1] - L.cy, p[0] - L.cx)),
                  fill=c + (170,))
    elif kind == "goatee":
        d.polygon([(L.x(-0.26), L.y(0.86)), (L.x(0.26), L.y(0.86)), (L.x(0.2), L.y(1.0)),
                   (L.x(0), L.y(1.06)), (L.x(-0.2), L.y(1.0))], fill=c)
    else:
        jaw = [p for p in outline if p[1] > L.y(0.56)]
        jaw = sorted(jaw, key=lambda p: np.arctan2(p[1] - L.cy, p[0] - L.cx))
        chin = [(x, y + 0.1 * L.b * max(0.0, 1 - abs(x - L.cx) / L.aw)) for x, y in jaw]
        d.polygon(chin, fill=c)


def mouth(d, L, attrs):
    kind, lip = attrs["mouth"], L.col["lip"]
    if kind == "covered":
        return
    y = L.y(0.79)
    mw = 0.34 * (1 + L.geo["mouth_width"])
    w = stroke(L, 0.12)
    if kind in ("closed", "tongue out"):
        if kind == "tongue out":
            ellipse(d, L.x(0), y + 0.11 * L.b, 0.16 * L.a, 0.13 * L.b, fill=TONGUE)
        d.line(curve(L, -mw, mw, y, 0.0), fill=lip, width=w, joint="curve")
    elif kind in ("smile", "frown"):   # deep curves: a flat closed mouth is the third option
        depth = 0.13 * L.b if kind == "smile" else -0.13 * L.b
        d.line(curve(L, -mw, mw, y - depth / 2, depth), fill=lip, width=w, joint="curve")
    elif kind == "laugh":
        pts = curve(L, -mw * 1.05, mw * 1.05, y - 0.04 * L.b, 0.2 * L.b)
        d.polygon(pts, fill=MOUTH_IN, outline=lip, width=w)
        d.rectangle([L.x(-0.6 * mw), y - 0.035 * L.b, L.x(0.6 * mw), y + 0.02 * L.b], fill=TEETH)
    else:   # open: a round O
        ellipse(d, L.x(0), y + 0.02 * L.b, 0.17 * L.a, 0.15 * L.b, fill=MOUTH_IN, outline=lip, width=w)


def mustache(d, L, attrs):
    kind, c = attrs["mustache"], L.col["facial"]
    if kind == "thin":
        d.line([(L.x(-0.32), L.y(0.74)), (L.x(0), L.y(0.705)), (L.x(0.32), L.y(0.74))], fill=c,
               width=stroke(L, 0.08))
    elif kind == "thick":
        d.polygon([(L.x(-0.42), L.y(0.78)), (L.x(-0.2), L.y(0.68)), (L.x(0), L.y(0.69)),
                   (L.x(0.2), L.y(0.68)), (L.x(0.42), L.y(0.78)), (L.x(0.2), L.y(0.75)),
                   (L.x(0), L.y(0.75)), (L.x(-0.2), L.y(0.75))], fill=c)


# --- eyes and brows ---------------------------------------------------------------------------
EYE_DARK = (35, 25, 25)


def eyes(d, L, attrs):
    """Open eyes are mostly iris (the colour must read at 64 px); glare halves the opening under
    a heavy lid; closed eyes are a thick lash line; surprise widens the eyes."""
    kind = attrs["eyes"]
    wide = attrs["emotion"] == "surprised"
    y = L.y(0.45 + L.geo["eye_height"])
    sx = 0.4 * (1 + L.geo["eye_spacing"])
    ew, eh = 0.25 * L.a, (0.2 if wide else 0.15) * L.a
    wink_side = int(L.rng.integers(2)) * 2 - 1 if kind == "wink" else 0
    for sgn in (-1, 1):
        x = L.x(sgn * sx)
        if kind == "closed" or sgn == wink_side:
            d.line(curve(L, sgn * sx - 0.25, sgn * sx + 0.25, y, 0.05 * L.b), fill=EYE_DARK,
                   width=stroke(L, 0.09), joint="curve")
            continue
        h = eh * (0.55 if kind == "glare" else 1.0)
        ellipse(d, x, y, ew, h, fill=(252, 252, 252), outline=EYE_DARK, width=stroke(L, 0.035))
        r = 0.15 * L.a
        ellipse(d, x + 0.3 * L.dx, y, r, min(r, h), fill=L.col["eye"])
        ellipse(d, x + 0.3 * L.dx, y, 0.045 * L.a, min(0.045 * L.a, h), fill=(5, 5, 5))
        if kind == "glare":   # heavy lids slanting down toward the nose
            inner, outer = x - sgn * ew, x + sgn * ew
            d.line([(inner, y - 0.3 * h), (outer, y - 1.4 * h)], fill=EYE_DARK, width=stroke(L, 0.1))


BROW_SHAPE = {  # offsets in t (negative = up) of the inner, middle and outer brow points
    "neutral": (0.01, 0.01, 0.01), "happy": (0.01, -0.06, 0.015),
    "surprised": (-0.035, -0.06, -0.035), "angry": (0.055, 0.005, -0.035),
    "sad": (-0.04, 0.0, 0.045)}


def eyebrows(d, L, attrs):
    """Brows carry most of the emotion once a mask hides the mouth: each emotion has its own
    shape, angry adds a frown furrow and sad a tear."""
    emotion = attrs["emotion"]
    inner, mid, outer = BROW_SHAPE[emotion]
    t = 0.33 + L.geo["brow_height"]
    w = stroke(L, 0.07 if attrs["eyebrows"] == "thin" else 0.16)
    for sgn in (-1, 1):
        pts = [(L.x(sgn * 0.14), L.y(t + inner)), (L.x(sgn * 0.4), L.y(t + mid)),
               (L.x(sgn * 0.66), L.y(t + outer))]
        d.line(pts, fill=L.col["brow"], width=w, joint="curve")
    if emotion == "angry":
        for sgn in (-1, 1):
            d.line([(L.x(sgn * 0.05), L.y(t + 0.04)), (L.x(sgn * 0.07), L.y(t + 0.1))],
                   fill=L.col["contour"], width=stroke(L, 0.06))
    elif emotion == "sad":
        x, ty = L.x(0.5 * (1 + L.geo["eye_spacing"])), L.y(0.565)
        d.polygon([(x, ty - 0.12 * L.a), (x - 0.075 * L.a, ty), (x + 0.075 * L.a, ty)], fill=TEAR)
        ellipse(d, x, ty, 0.075 * L.a, 0.075 * L.a, fill=TEAR)
