"""Procedural pedestrian crops for a synthetic re-identification dataset.

An image is ``camera(identity, pose)``. An :class:`Identity` holds what a model should learn:
clothing colours and top pattern, bottom type, shoes, skin, hair, accessories and body
proportions. A :class:`Camera` holds the nuisance shared by every crop it takes: background
texture and colours, light level, colour cast, saturation, contrast, blur, noise, framing and
occluders. Per image, the generator passed in draws pose, viewpoint, framing jitter, background
offset and occlusion. Camera effects are deliberately strong, so raw colour statistics are
confounded by the camera and only the layout of identity cues is stable across cameras.

All randomness comes from the ``numpy.random.Generator`` passed in (camera textures from a seed
drawn from it), so one generator state gives byte-identical images.
"""

from __future__ import annotations

import colorsys
import math
from bisect import bisect_right
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = (128, 64)  # (height, width)
_SS = 2  # draw at twice the size and reduce: cheap anti-aliasing for the polygons
_CH, _CW = IMAGE_SIZE[0] * _SS, IMAGE_SIZE[1] * _SS
_PAD_Y, _PAD_X = 24, 96  # background texture margin that per-image offsets move within
_NOISE_PAD = 32

RGB = tuple[int, int, int]
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo", "two_tone")
BOTTOM_TYPES = ("trousers", "shorts", "skirt")
HAIR_LENGTHS = ("short", "medium", "long")
ACCESSORIES = ("backpack", "hat", "shoulder_bag")  # sorted, so tuples of them compare equal
STYLES = ("bricks", "tiles", "stripes", "foliage", "windows", "concrete")

# Palettes as (weight, (hue, saturation, value) ranges): real clothes are mostly dark, grey,
# white or blue, so many identities share a main colour and differ by the other cues.
_BLACK = ((0.0, 1.0), (0.0, 0.15), (0.04, 0.2))
_GREY = ((0.0, 1.0), (0.0, 0.1), (0.3, 0.65))
_WHITE = ((0.0, 1.0), (0.0, 0.08), (0.82, 0.97))
_NAVY = ((0.56, 0.67), (0.35, 0.8), (0.22, 0.7))
_DENIM = ((0.57, 0.62), (0.3, 0.6), (0.35, 0.65))
_BROWN = ((0.05, 0.12), (0.3, 0.65), (0.3, 0.8))
_VIVID = ((0.0, 1.0), (0.55, 0.95), (0.45, 0.95))
_PALETTES = {
    "top": ((20, _BLACK), (14, _GREY), (16, _WHITE), (14, _NAVY), (8, _BROWN), (28, _VIVID)),
    "bottom": ((30, _BLACK), (15, _GREY), (25, _DENIM), (12, _BROWN), (6, _WHITE), (12, _VIVID)),
    "shoes": ((35, _BLACK), (30, _WHITE), (10, _GREY), (15, _BROWN), (10, _VIVID)),
    "bag": ((35, _BLACK), (10, _GREY), (15, _NAVY), (15, _BROWN), (25, _VIVID)),
    "hair": (
        (45, _BLACK),
        (25, ((0.04, 0.09), (0.4, 0.7), (0.15, 0.35))),
        (12, ((0.09, 0.14), (0.35, 0.6), (0.55, 0.85))),
        (10, _GREY),
        (8, _VIVID),
    ),
    "skin": (
        (30, ((0.05, 0.09), (0.2, 0.35), (0.8, 0.95))),
        (40, ((0.05, 0.09), (0.3, 0.5), (0.6, 0.8))),
        (30, ((0.04, 0.08), (0.4, 0.6), (0.3, 0.55))),
    ),
}


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _pick(rng: np.random.Generator, items: tuple, weights: tuple[float, ...]):
    cum = np.cumsum(weights).tolist()
    return items[min(bisect_right(cum, rng.random() * cum[-1]), len(items) - 1)]


def _colour(rng: np.random.Generator, kind: str) -> RGB:
    entries = _PALETTES[kind]
    hr, sr, vr = _pick(rng, tuple(e[1] for e in entries), tuple(e[0] for e in entries))
    return _hsv(rng.uniform(*hr), rng.uniform(*sr), rng.uniform(*vr))


def _shade(c: RGB, k: float) -> RGB:
    return tuple(min(int(v * k), 255) for v in c)


def _contrasting(rng: np.random.Generator, base: RGB, kind: str = "top") -> RGB:
    # a colour that barely differs from `base` is lost under the camera effects
    for _ in range(4):
        c = _colour(rng, kind)
        if sum(abs(a - b) for a, b in zip(c, base, strict=True)) >= 150:
            return c
    return (235, 235, 230) if sum(base) < 380 else (25, 25, 30)


@dataclass(frozen=True)
class Identity:
    """What a person looks like: the cues a re-ID model should learn to match."""

    top: RGB
    bottom: RGB
    shoes: RGB
    pattern: str  # one of PATTERNS
    pattern_color: RGB
    stripe_period: float  # fraction of body height
    long_sleeves: bool
    bottom_type: str  # one of BOTTOM_TYPES
    skin: RGB
    hair: RGB
    hair_length: str  # one of HAIR_LENGTHS
    accessories: tuple[tuple[str, RGB], ...]  # (kind, colour), kinds from ACCESSORIES
    height_scale: float
    shoulder_width: float  # half-width as a fraction of body height
    leg_ratio: float  # hip height as a fraction of body height


def random_identity(rng: np.random.Generator) -> Identity:
    """Draw a new person from realistic clothing palettes."""
    top = _colour(rng, "top")
    kinds = sorted(rng.permutation(len(ACCESSORIES))[: _pick(rng, (0, 1, 2), (40, 45, 15))])
    return Identity(
        top=top,
        bottom=_colour(rng, "bottom"),
        shoes=_colour(rng, "shoes"),
        pattern=_pick(rng, PATTERNS, (40, 12, 12, 12, 12, 12)),
        pattern_color=_contrasting(rng, top),
        stripe_period=rng.uniform(0.03, 0.06),
        long_sleeves=bool(rng.random() < 0.6),
        bottom_type=_pick(rng, BOTTOM_TYPES, (65, 20, 15)),
        skin=_colour(rng, "skin"),
        hair=_colour(rng, "hair"),
        hair_length=_pick(rng, HAIR_LENGTHS, (50, 25, 25)),
        accessories=tuple((ACCESSORIES[k], _colour(rng, "bag")) for k in kinds),
        height_scale=rng.uniform(0.88, 1.06),
        shoulder_width=rng.uniform(0.095, 0.14),
        leg_ratio=rng.uniform(0.44, 0.52),
    )


def _mutate(p: Identity, what: str, rng: np.random.Generator) -> Identity:
    if what == "top_hue":
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in p.top))
        if s < 0.2:  # achromatic: a nearby grey level instead of a nearby hue
            return replace(p, top=_hsv(h, s, v + rng.uniform(0.15, 0.25) * (1 if v < 0.5 else -1)))
        return replace(p, top=_hsv(h + rng.choice((-1, 1)) * rng.uniform(0.05, 0.1), s, v))
    if what == "pattern_color" and p.pattern != "solid":
        return replace(p, pattern_color=_contrasting(rng, p.pattern_color))
    if what in ("pattern", "pattern_color"):  # a solid top has no visible pattern colour
        return replace(p, pattern=PATTERNS[(PATTERNS.index(p.pattern) + rng.integers(1, 6)) % 6])
    if what in ("shoes", "bottom", "hair") and (what != "hair" or rng.random() < 0.5):
        return replace(p, **{what: _contrasting(rng, getattr(p, what), what)})
    if what == "bottom_type":
        return replace(p, bottom_type=BOTTOM_TYPES[(BOTTOM_TYPES.index(p.bottom_type) + 1) % 3])
    if what == "hair":
        return replace(p, hair_length=HAIR_LENGTHS[(HAIR_LENGTHS.index(p.hair_length) + 1) % 3])
    if what == "sleeves":
        return replace(p, long_sleeves=not p.long_sleeves)
    if what == "body":  # a clearly different build, pushed away from the nearer range limit
        return replace(
            p,
            shoulder_width=p.shoulder_width + (0.03 if p.shoulder_width < 0.118 else -0.03),
            leg_ratio=p.leg_ratio + (0.04 if p.leg_ratio < 0.48 else -0.04),
        )
    acc = list(p.accessories)  # "accessory": add one, drop one or recolour one
    have = {k for k, _ in acc}
    missing = [k for k in ACCESSORIES if k not in have]
    choice = int(rng.integers(0 if missing else 1, 3 if acc else 1))
    if choice == 0:
        acc.append((missing[int(rng.integers(len(missing)))], _colour(rng, "bag")))
    elif choice == 1:
        acc.pop(int(rng.integers(len(acc))))
    else:
        i = int(rng.integers(len(acc)))
        acc[i] = (acc[i][0], _contrasting(rng, acc[i][1], "bag"))
    return replace(p, accessories=tuple(sorted(acc)))


_MUTATIONS = (
    "top_hue",
    "pattern",
    "pattern_color",
    "shoes",
    "bottom",
    "bottom_type",
    "accessory",
    "hair",
    "sleeves",
    "body",
)


def similar_identity(base: Identity, rng: np.random.Generator) -> Identity:
    """A hard negative: copies `base` and changes one or two attributes.

    Changes are e.g. only the pattern, only the shoe colour, only the bag, or a nearby hue of
    the top; the result always differs from `base`.
    """
    out = base
    for k in rng.permutation(len(_MUTATIONS))[: 1 + int(rng.random() < 0.4)]:
        out = _mutate(out, _MUTATIONS[int(k)], rng)
    return out if out != base else _mutate(base, "pattern", rng)


@dataclass(frozen=True)
class Camera:
    """What one camera does to every crop it takes: scene, optics and framing."""

    index: int
    style: str  # one of STYLES
    wall: RGB
    floor: RGB
    accent: RGB
    horizon: float  # where the wall meets the floor, as a fraction of the crop height
    texture_seed: int
    light: float
    gains: tuple[float, float, float]  # colour cast as per-channel gains
    saturation: float
    gamma: float
    blur: float  # Gaussian blur radius in output pixels
    noise_sigma: float
    scale_range: tuple[float, float]  # body height as a fraction of the crop height
    jitter: float  # position jitter as a fraction of the crop size
    occlusion_prob: float
    occluder_colors: tuple[RGB, ...]


def random_camera(index: int, rng: np.random.Generator) -> Camera:
    """Draw camera `index`; consecutive indices get different styles, hues and casts."""
    # irrational steps in the index spread hues, casts and light levels of neighbouring cameras
    style = STYLES[index % len(STYLES)]
    wall_h = rng.uniform(0.2, 0.4) if style == "foliage" else index * 0.618 + rng.uniform(0, 0.15)
    cast_h, amp = 0.5 + index * 0.382 + rng.uniform(-0.08, 0.08), rng.uniform(0.06, 0.16)
    gains = tuple(1 + amp * math.cos(2 * math.pi * (cast_h - c / 3)) for c in range(3))
    lo = rng.uniform(0.72, 0.86)
    return Camera(
        index=index,
        style=style,
        wall=_hsv(wall_h, rng.uniform(0.15, 0.65), rng.uniform(0.3, 0.85)),
        floor=_hsv(wall_h + rng.uniform(-0.2, 0.2), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.7)),
        accent=_hsv(wall_h + rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.95)),
        horizon=rng.uniform(0.55, 0.8),
        texture_seed=int(rng.integers(2**31)),
        light=0.75 + 0.45 * ((index * 0.414214 + rng.uniform(0, 0.2)) % 1.0),
        gains=gains,
        saturation=rng.uniform(0.8, 1.15),
        gamma=rng.uniform(0.85, 1.15),
        blur=rng.uniform(0.0, 1.5),
        noise_sigma=rng.uniform(0.0, 12.0),
        scale_range=(lo, lo + rng.uniform(0.06, 0.14)),
        jitter=rng.uniform(0.03, 0.1),
        occlusion_prob=rng.uniform(0.05, 0.3),
        occluder_colors=tuple(_colour(rng, "bag") for _ in range(3)),
    )


def _blotches(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = (rng.random((h // cell + 2, w // cell + 2)) * 255).astype(np.uint8)
    up = Image.fromarray(small).resize((w + 2 * cell, h + 2 * cell), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32)[cell : cell + h, cell : cell + w, None] / 255.0


@lru_cache(maxsize=256)
def _assets(cam: Camera) -> tuple[Image.Image, np.ndarray, list[int]]:
    """Background texture, noise tile and gamma table of a camera, built once."""
    rng = np.random.default_rng(cam.texture_seed)
    th, tw = _CH + _PAD_Y, _CW + _PAD_X
    y = np.arange(th, dtype=np.float32)[:, None]
    x = np.arange(tw, dtype=np.float32)[None, :]
    hz = int(cam.horizon * _CH) + _PAD_Y // 2
    wall, floor, acc = (np.array(c, np.float32) for c in (cam.wall, cam.floor, cam.accent))
    img = np.empty((th, tw, 3), np.float32)
    img[:hz] = wall * (0.8 + 0.3 * y[:hz, :, None] / hz)
    img[hz:] = floor * (0.8 + 0.35 * (y[hz:, :, None] - hz) / (th - hz))
    on_wall = (y < hz)[..., None]
    mix = np.zeros((th, tw, 1), np.float32)  # where the accent colour replaces the wall
    if cam.style == "bricks":
        bh, bw = int(rng.integers(10, 16)), int(rng.integers(24, 36))
        row = (y // bh).astype(int)
        shift = (row % 2) * (bw // 2)
        col = ((x + shift) // bw).astype(int)
        img *= np.where(
            on_wall, rng.uniform(0.75, 1.2, (th // bh + 1, tw // bw + 2))[row, col][..., None], 1.0
        )
        mix[:] = (((y % bh) < 2) | (((x + shift) % bw) < 2))[..., None]
    elif cam.style == "tiles":
        t = int(rng.integers(16, 30))
        checker = ((x // t + y // t) % 2)[..., None]
        img *= np.where(on_wall, 1.0, 0.8 + 0.3 * checker)
        mix[:] = (((x % (2 * t)) < 2) | ((y % (2 * t)) < 2))[..., None] * 0.8
    elif cam.style == "stripes":
        p = int(rng.integers(8, 22))
        mix[:] = (((x + y * rng.uniform(-0.6, 0.6)) // p) % 2)[..., None]
    elif cam.style == "foliage":
        leaves = 0.6 * _blotches(rng, th, tw, 12) + 0.4 * _blotches(rng, th, tw, 4)
        mix[:] = leaves > 0.5
        img *= 0.55 + 0.9 * leaves
    elif cam.style == "windows":
        p, q = int(rng.integers(30, 50)), int(rng.integers(30, 60))
        pane = ((x % p) > 5) & ((y % q) > 5)
        mix[:] = (pane * (0.6 + 0.4 * ((x + y) % 40 < 20)))[..., None]
    img = np.where(on_wall, img * (1 - mix) + acc * mix, img)
    img *= 0.8 + 0.4 * _blotches(rng, th, tw, 24 if cam.style == "concrete" else 48)
    img[hz - 2 : hz + 2] = acc * 0.6  # kerb line
    img += rng.normal(0.0, 5.0, img.shape)
    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(bg)
    for _ in range(int(rng.integers(2, 6))):  # clutter: doors, signs and bins at fixed places
        x0, y0 = rng.uniform(0, tw), rng.uniform(0, hz)
        colour = _shade(cam.accent if rng.random() < 0.5 else cam.wall, rng.uniform(0.4, 1.5))
        d.rectangle((x0, y0, x0 + rng.uniform(10, 40), y0 + rng.uniform(10, 60)), fill=colour)
    noise = np.rint(
        rng.normal(
            0.0, cam.noise_sigma, (IMAGE_SIZE[0] + _NOISE_PAD, IMAGE_SIZE[1] + _NOISE_PAD, 3)
        )
    )
    ramp = 255.0 * (np.arange(256) / 255.0) ** cam.gamma
    return bg, noise.astype(np.int16), np.tile(np.rint(ramp).astype(np.int64), 3).tolist()


def _limb(d: ImageDraw.ImageDraw, a: tuple, b: tuple, w0: float, w1: float, fill: RGB) -> None:
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    px, py = -dy / n / 2, dx / n / 2
    d.polygon(
        [
            (a[0] + px * w0, a[1] + py * w0),
            (b[0] + px * w1, b[1] + py * w1),
            (b[0] - px * w1, b[1] - py * w1),
            (a[0] - px * w0, a[1] - py * w0),
        ],
        fill=fill,
    )


def _draw_person(
    d: ImageDraw.ImageDraw,
    p: Identity,
    cx: float,
    foot: float,
    u: float,
    view: str,
    f: int,
    stride: float,
    swing: float,
) -> None:
    """Draw `p` with feet at (cx, foot), body height `u`, facing `f` (+1 right) when side-on."""
    side, back = view == "side", view == "back"
    acc = dict(p.accessories)
    sw = p.shoulder_width * u * (0.6 if side else 1.0)
    hw = sw * (0.95 if side else 0.8)
    top, sy, hip = foot - u, foot - 0.825 * u, foot - p.leg_ratio * u
    ank, yb, skin = foot - 0.03 * u, hip + 0.01 * u, p.skin
    knee, ft = (hip + ank) / 2, f if side else 0  # ft: facing, only where it shows
    hx = cx + 0.015 * u * ft

    def arm(s: int, k: float) -> None:
        x0, y0 = cx - 0.01 * u * f if side else cx + s * (sw - 0.025 * u), sy + 0.03 * u
        a = swing * s if side else 0.0
        el = (
            (x0 + f * math.sin(a) * 0.18 * u, y0 + math.cos(a) * 0.18 * u)
            if side
            else (x0 + s * 0.015 * u, y0 + 0.18 * u * math.cos(swing))
        )
        b = a + 0.2 + abs(a) * 0.5
        hand = (
            (el[0] + f * math.sin(b) * 0.16 * u, el[1] + math.cos(b) * 0.16 * u)
            if side
            else (el[0] + s * 0.01 * u, el[1] + 0.16 * u * math.cos(swing * 1.3))
        )
        _limb(d, el, hand, 0.05 * u, 0.042 * u, _shade(p.top if p.long_sleeves else skin, k))
        _limb(d, (x0, y0), el, 0.06 * u, 0.052 * u, _shade(p.top, k))
        r = 0.022 * u
        d.ellipse((hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r), fill=_shade(skin, k))

    def leg(x0: float, x1: float, k: float) -> None:
        km, bot = ((x0 + x1) / 2 + 0.02 * u * ft, knee), _shade(p.bottom, k)
        cover, w = (bot, u) if p.bottom_type == "trousers" else (_shade(skin, k), 0.82 * u)
        _limb(d, (x0, hip), km, 0.085 * w, 0.068 * w, cover)
        _limb(d, km, (x1, ank), 0.068 * w, 0.055 * w, cover)
        if p.bottom_type == "shorts":
            _limb(d, (x0, hip), (km[0], knee - 0.03 * u), 0.095 * u, 0.085 * u, bot)
        sx, sl = x1 + 0.02 * u * ft, 0.05 * u if side else 0.035 * u
        d.ellipse((sx - sl, foot - 0.04 * u, sx + sl, foot), fill=_shade(p.shoes, k))

    def bag_box(x: float, y: float, w: float, h: float, colour: RGB) -> None:
        d.rounded_rectangle((x - w / 2, y, x + w / 2, y + h), radius=0.015 * u, fill=colour)
        d.rectangle((x - w / 2, y + h * 0.3, x + w / 2, y + h * 0.36), fill=_shade(colour, 0.6))

    # painter's order: far limbs and the side-on backpack first, then body, then near parts
    if side:
        arm(-1, 0.72)
        if "backpack" in acc:
            bag_box(cx - f * (sw + 0.045 * u), sy + 0.03 * u, 0.1 * u, 0.24 * u, acc["backpack"])
        leg(cx, cx - f * stride * 0.2 * u, 0.75)
        leg(cx, cx + f * stride * 0.2 * u, 1.0)
    else:
        spread = 0.012 * u + stride * 0.03 * u
        for s in (-1, 1):
            leg(cx + s * hw * 0.5, cx + s * (hw * 0.5 + spread), 1.0)
    flare, hem = (1.6, knee + 0.03 * u) if p.bottom_type == "skirt" else (1.05, hip + 0.06 * u)
    d.polygon(
        [
            (cx - hw, hip - 0.04 * u),
            (cx + hw, hip - 0.04 * u),
            (cx + hw * flare, hem),
            (cx - hw * flare, hem),
        ],
        fill=p.bottom,
    )
    d.polygon(
        [
            (cx - sw, sy + 0.025 * u),
            (cx - sw * 0.8, sy),
            (cx + sw * 0.8, sy),
            (cx + sw, sy + 0.025 * u),
            (cx + hw, yb),
            (cx - hw, yb),
        ],
        fill=p.top,
    )

    def band(y0: float, y1: float, f0: float = -1.0, f1: float = 1.0) -> None:
        h0 = sw + (hw - sw) * (y0 - sy) / (yb - sy)
        h1 = sw + (hw - sw) * (y1 - sy) / (yb - sy)
        d.polygon(
            [(cx + f0 * h0, y0), (cx + f1 * h0, y0), (cx + f1 * h1, y1), (cx + f0 * h1, y1)],
            fill=p.pattern_color,
        )

    per = p.stripe_period * u
    if p.pattern in ("hstripes", "checks"):
        for y0 in np.arange(sy + per * 0.5, yb - per * 0.4, per):
            band(float(y0), float(y0) + per * 0.5)
    if p.pattern in ("vstripes", "checks"):
        n = max(2, round(2 * sw / per))
        for i in range(0, n, 2):
            band(sy, yb, -1 + 2 * (i + 0.5) / n, -1 + 2 * (i + 1.0) / n)
    if p.pattern == "two_tone":
        band(sy + 0.45 * (yb - sy), yb)
    if p.pattern == "logo" and view == "front":
        r = 0.4 * sw
        d.rounded_rectangle(
            (cx - r, sy + 0.07 * u, cx + r, sy + 0.07 * u + 1.4 * r),
            radius=r * 0.3,
            fill=p.pattern_color,
        )
    if "backpack" in acc and view == "front":
        for s in (-1, 1):
            _limb(
                d,
                (cx + s * sw * 0.6, sy),
                (cx + s * sw * 0.5, sy + 0.22 * u),
                0.03 * u,
                0.025 * u,
                _shade(acc["backpack"], 0.85),
            )
    for s in (1,) if side else (-1, 1):
        arm(s, 1.0)
    if "shoulder_bag" in acc:
        s = -f if side else (1 if back else -1)
        _limb(
            d,
            (cx - s * sw * 0.7, sy + 0.01 * u),
            (cx + s * hw, hip - 0.02 * u),
            0.02 * u,
            0.02 * u,
            _shade(acc["shoulder_bag"], 0.7),
        )
        bag_box(cx + s * (hw + 0.02 * u), hip - 0.04 * u, 0.12 * u, 0.11 * u, acc["shoulder_bag"])
    rx, ry = 0.056 * u, 0.066 * u
    hcy = top + ry
    d.rectangle((hx - 0.022 * u, top + 0.1 * u, hx + 0.022 * u, sy + 0.01 * u), fill=skin)
    hair_end = {"short": None, "medium": top + 0.16 * u, "long": sy + 0.16 * u}[p.hair_length]
    if hair_end is not None:  # back: a curtain; side: behind the ear; front: two locks
        spans = (
            [(-1.05, 1.05)]
            if back
            else [sorted((-1.02 * f, -0.1 * f))]
            if side
            else [(-1.1, -0.65), (0.65, 1.1)]
        )
        for a, b in spans:
            d.rectangle((hx + a * rx, hcy, hx + b * rx, hair_end), fill=p.hair)
    head = (hx - rx, top, hx + rx, top + 2 * ry)
    hb = (hx - rx * 1.08, top - 0.006 * u, hx + rx * 1.08, top + 2 * ry)
    if back:
        d.ellipse(hb, fill=p.hair)
    else:
        d.ellipse(head, fill=skin)
        if side:
            start, end = (110, 345) if f > 0 else (195, 70)  # hair covers the back of the head
            d.pieslice(hb, start, end, fill=p.hair)
        else:
            d.chord(hb, 165, 375, fill=p.hair)
    if "backpack" in acc and back:
        bag_box(cx, sy + 0.03 * u, 1.45 * sw, yb - sy - 0.05 * u, acc["backpack"])
    if "hat" in acc:
        hat = acc["hat"]
        d.chord(
            (hx - rx * 1.12, top - 0.018 * u, hx + rx * 1.12, top + 0.11 * u), 180, 360, fill=hat
        )
        if side:
            _limb(
                d,
                (hx, hcy - 0.012 * u),
                (hx + f * rx * 1.9, hcy - 0.012 * u),
                0.016 * u,
                0.016 * u,
                hat,
            )
        elif not back:
            d.ellipse((hx - rx * 1.2, hcy - 0.03 * u, hx + rx * 1.2, hcy), fill=_shade(hat, 0.8))


def _pose(rng: np.random.Generator) -> tuple[str, int, float, float]:
    view = _pick(rng, ("front", "back", "side"), (40, 35, 25))
    return view, (1 if rng.random() < 0.5 else -1), rng.uniform(0, 0.45), rng.uniform(-0.5, 0.5)


def _canvas(cam: Camera, rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    return canvas_at(cam, int(rng.integers(_PAD_Y + 1)), int(rng.integers(_PAD_X + 1)))


def canvas_at(cam: Camera, oy: int, ox: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """The camera's background at offset (``oy``, ``ox``) within its margins (clipped to
    them), as a supersampled canvas to draw on."""
    oy, ox = min(max(oy, 0), _PAD_Y), min(max(ox, 0), _PAD_X)
    img = _assets(cam)[0].crop((ox, oy, ox + _CW, oy + _CH))
    return img, ImageDraw.Draw(img)


def draw_look(cam: Camera, rng: np.random.Generator) -> tuple[float, float]:
    """The blur radius and light level of one shot (one image, or a whole tracklet)."""
    return cam.blur * rng.uniform(0.7, 1.3), cam.light * rng.uniform(0.88, 1.12)


def _finish(
    img: Image.Image,
    cam: Camera,
    rng: np.random.Generator,
    look: tuple[float, float] | None = None,
) -> Image.Image:
    """Apply the camera's optics and sensor response to a supersampled canvas; ``look``
    (from :func:`draw_look`) keeps blur and light fixed over a tracklet's frames."""
    img = img.reduce(_SS)
    radius, k = look or draw_look(cam, rng)
    if radius > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    s = cam.saturation
    # light, cast and saturation (a mix with luma) folded into one colour matrix
    m = [
        k * g * ((1 - s) * w + s * (c == j)) if j < 3 else 0.0
        for c, g in enumerate(cam.gains)
        for j, w in enumerate((0.3, 0.59, 0.11, 0.0))
    ]
    _, noise, lut = _assets(cam)
    img = img.convert("RGB", tuple(m)).point(lut)
    if cam.noise_sigma >= 1.0:
        oy, ox = int(rng.integers(_NOISE_PAD + 1)), int(rng.integers(_NOISE_PAD + 1))
        arr = np.asarray(img).astype(np.int16)
        arr += noise[oy : oy + IMAGE_SIZE[0], ox : ox + IMAGE_SIZE[1]]
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _occlude(
    d: ImageDraw.ImageDraw,
    cam: Camera,
    rng: np.random.Generator,
    cx: float,
    foot: float,
    u: float,
    shift: float = 0.0,
) -> None:
    """Draw an occluder; ``shift`` (a fraction of the crop width) moves it sideways, so the
    same occluder (the same ``rng`` state) can sweep across a tracklet."""
    colour = cam.occluder_colors[int(rng.integers(len(cam.occluder_colors)))]
    dx = shift * _CW
    if (kind := int(rng.integers(3))) == 0:  # pole or pillar
        x, w = rng.uniform(0.1, 0.9) * _CW + dx, rng.uniform(0.05, 0.15) * _CW
        d.rectangle((x - w / 2, 0, x + w / 2, _CH), fill=colour)
        d.rectangle((x - w / 2, 0, x - w / 4, _CH), fill=_shade(colour, 1.3))
    elif kind == 1:  # car-like box in front of the legs
        y0, x0 = _CH * rng.uniform(0.6, 0.82), _CW * rng.uniform(-0.6, 0.3) + dx
        x1 = x0 + _CW * rng.uniform(0.9, 1.5)
        d.rounded_rectangle((x0, y0, x1, _CH + 20), radius=14, fill=colour)
        d.rectangle((x0 + 8, y0 + 6, x1 - 8, y0 + 0.3 * (_CH - y0)), fill=_shade(colour, 0.35))
        d.ellipse((x0 + 10, _CH - 22, x0 + 50, _CH + 18), fill=(20, 20, 22))
    else:  # another pedestrian passing in front
        s = 1 if rng.random() < 0.5 else -1
        _draw_person(
            d,
            random_identity(rng),
            cx + s * rng.uniform(0.5, 0.8) * _CW + dx,
            foot + rng.uniform(0, 0.06) * _CH,
            u * rng.uniform(0.95, 1.15),
            *_pose(rng),
        )


def render_person(identity: Identity, camera: Camera, rng: np.random.Generator) -> Image.Image:
    """One crop of `identity` seen by `camera`.

    Per image, from `rng`: pose (leg stride, arm swing), viewpoint (front shows the face, back
    shows the backpack, side is narrower), position and scale jitter within the camera's range,
    background offset and, with the camera's probability, an occluder (a pole, a car-like box or
    another person's partial body). Then the camera effects: light, colour cast, blur, noise.
    """
    img, d = _canvas(camera, rng)
    u = min(_CH * rng.uniform(*camera.scale_range) * identity.height_scale, 0.99 * _CH)
    cx = _CW * (0.5 + rng.uniform(-camera.jitter, camera.jitter))
    foot = min(_CH * (0.985 + rng.uniform(-camera.jitter, camera.jitter) * 0.5), _CH)
    foot = max(foot, u + 0.01 * _CH)
    _draw_person(d, identity, cx, foot, u, *_pose(rng))
    if rng.random() < camera.occlusion_prob:
        _occlude(d, camera, rng, cx, foot, u)
    return _finish(img, camera, rng)


def render_junk(camera: Camera, rng: np.random.Generator) -> Image.Image:
    """A bad detection as in Market-1501's junk (pid -1): background or a fragment of a body."""
    img, d = _canvas(camera, rng)
    if (r := rng.random()) < 0.3:  # empty background, sometimes with a pole or a car
        if rng.random() < 0.5:
            _occlude(d, camera, rng, _CW / 2, _CH, 0.9 * _CH)
    elif r < 0.75:  # zoomed-in fragment: a leg, an arm, a shoulder
        u = _CH * rng.uniform(1.8, 3.5)
        _draw_person(
            d,
            random_identity(rng),
            _CW * rng.uniform(-0.3, 1.3),
            _CH * rng.uniform(0.6, 0.4 + u / _CH),
            u,
            *_pose(rng),
        )
    else:  # a body mostly outside the box
        u = _CH * rng.uniform(0.5, 1.0)
        x = _CW * (rng.uniform(-0.35, -0.1) if rng.random() < 0.5 else rng.uniform(1.1, 1.35))
        _draw_person(d, random_identity(rng), x, _CH * rng.uniform(0.6, 1.0), u, *_pose(rng))
    return _finish(img, camera, rng)


def render_distractor(camera: Camera, rng: np.random.Generator) -> Image.Image:
    """A person who is nobody of the dataset (pid 0): often badly cropped or off-centre."""
    img, d = _canvas(camera, rng)
    r, cx = rng.random(), _CW * (0.5 + rng.uniform(-0.3, 0.3))
    if r < 0.3:
        u, foot = _CH * rng.uniform(0.65, 0.95), _CH * rng.uniform(0.85, 1.0)
    else:  # only the upper or the lower half
        u = _CH * rng.uniform(1.4, 2.0)
        foot = u + _CH * rng.uniform(-0.05, 0.08) if r < 0.65 else _CH * rng.uniform(0.9, 1.0)
    _draw_person(d, random_identity(rng), cx, foot, u, *_pose(rng))
    return _finish(img, camera, rng)
