"""Who a synthetic pedestrian is: what a model should learn. An :class:`Identity` holds
clothing colours and top pattern, bottom type, shoes, skin, hair, accessories and body
proportions, drawn from a :class:`Wardrobe`'s palettes, which make many identities share a
main colour; similar identities (one or two attributes changed) are the hard negatives.
Each camera network dresses its people from its own wardrobe (``WARDROBES``)."""

from __future__ import annotations

import colorsys
from bisect import bisect_right
from dataclasses import dataclass, replace

import numpy as np

RGB = tuple[int, int, int]
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo", "two_tone")
BOTTOM_TYPES = ("trousers", "shorts", "skirt")
HAIR_LENGTHS = ("short", "medium", "long")
ACCESSORIES = ("backpack", "hat", "shoulder_bag")  # sorted, so tuples of them compare equal

# Palettes as (weight, (hue, saturation, value) ranges): real clothes are mostly dark, grey,
# white or blue, so many identities share a main colour and differ by the other cues.
_BLACK = ((0.0, 1.0), (0.0, 0.15), (0.04, 0.2))
_GREY = ((0.0, 1.0), (0.0, 0.1), (0.3, 0.65))
_WHITE = ((0.0, 1.0), (0.0, 0.08), (0.82, 0.97))
_NAVY = ((0.56, 0.67), (0.35, 0.8), (0.22, 0.7))
_DENIM = ((0.57, 0.62), (0.3, 0.6), (0.35, 0.65))
_BROWN = ((0.05, 0.12), (0.3, 0.65), (0.3, 0.8))
_VIVID = ((0.0, 1.0), (0.55, 0.95), (0.45, 0.95))
_HAIR = (
    (45, _BLACK),
    (25, ((0.04, 0.09), (0.4, 0.7), (0.15, 0.35))),
    (12, ((0.09, 0.14), (0.35, 0.6), (0.55, 0.85))),
    (10, _GREY),
    (8, _VIVID),
)
_SKIN = (
    (30, ((0.05, 0.09), (0.2, 0.35), (0.8, 0.95))),
    (40, ((0.05, 0.09), (0.3, 0.5), (0.6, 0.8))),
    (30, ((0.04, 0.08), (0.4, 0.6), (0.3, 0.55))),
)


@dataclass(frozen=True)
class Wardrobe:
    """How the people of one camera network dress: colour palettes per garment (weighted
    hue, saturation and value ranges) and the odds of each pattern, bottom type, number of
    accessories and long sleeves."""

    palettes: dict
    patterns: tuple[float, ...]  # weights of PATTERNS
    bottoms: tuple[float, ...]  # weights of BOTTOM_TYPES
    accessories: tuple[float, ...]  # weights of 0, 1 and 2 accessories
    long_sleeves: float  # probability


WARDROBES = {
    # network a (synthreid): a city street in the mild season
    "a": Wardrobe(
        palettes={
            "top": (
                (20, _BLACK),
                (14, _GREY),
                (16, _WHITE),
                (14, _NAVY),
                (8, _BROWN),
                (28, _VIVID),
            ),
            "bottom": (
                (30, _BLACK),
                (15, _GREY),
                (25, _DENIM),
                (12, _BROWN),
                (6, _WHITE),
                (12, _VIVID),
            ),
            "shoes": ((35, _BLACK), (30, _WHITE), (10, _GREY), (15, _BROWN), (10, _VIVID)),
            "bag": ((35, _BLACK), (10, _GREY), (15, _NAVY), (15, _BROWN), (25, _VIVID)),
            "hair": _HAIR,
            "skin": _SKIN,
        },
        patterns=(40, 12, 12, 12, 12, 12),
        bottoms=(65, 20, 15),
        accessories=(40, 45, 15),
        long_sleeves=0.6,
    ),
    # network b (synthreid-b): winter: dark and plain coats, trousers, hats and bags
    "b": Wardrobe(
        palettes={
            "top": ((32, _BLACK), (22, _GREY), (5, _WHITE), (20, _NAVY), (14, _BROWN), (7, _VIVID)),
            "bottom": (
                (42, _BLACK),
                (20, _GREY),
                (24, _DENIM),
                (10, _BROWN),
                (2, _WHITE),
                (2, _VIVID),
            ),
            "shoes": ((50, _BLACK), (8, _WHITE), (17, _GREY), (22, _BROWN), (3, _VIVID)),
            "bag": ((45, _BLACK), (15, _GREY), (15, _NAVY), (17, _BROWN), (8, _VIVID)),
            "hair": _HAIR,
            "skin": _SKIN,
        },
        patterns=(64, 6, 8, 10, 6, 6),
        bottoms=(88, 2, 10),
        accessories=(20, 48, 32),
        long_sleeves=0.95,
    ),
}
MILD = WARDROBES["a"]


def hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def pick(rng: np.random.Generator, items: tuple, weights: tuple[float, ...]):
    cum = np.cumsum(weights).tolist()
    return items[min(bisect_right(cum, rng.random() * cum[-1]), len(items) - 1)]


def random_colour(rng: np.random.Generator, kind: str, wardrobe: Wardrobe = MILD) -> RGB:
    entries = wardrobe.palettes[kind]
    hr, sr, vr = pick(rng, tuple(e[1] for e in entries), tuple(e[0] for e in entries))
    return hsv(rng.uniform(*hr), rng.uniform(*sr), rng.uniform(*vr))


def shade(c: RGB, k: float) -> RGB:
    return tuple(min(int(v * k), 255) for v in c)


def _contrasting(
    rng: np.random.Generator, base: RGB, kind: str = "top", wardrobe: Wardrobe = MILD
) -> RGB:
    # a colour that barely differs from `base` is lost under the camera effects
    for _ in range(4):
        c = random_colour(rng, kind, wardrobe)
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


def random_identity(rng: np.random.Generator, wardrobe: Wardrobe = MILD) -> Identity:
    """Draw a new person from a wardrobe's palettes (default: network a's)."""
    w = wardrobe
    top = random_colour(rng, "top", w)
    kinds = sorted(rng.permutation(len(ACCESSORIES))[: pick(rng, (0, 1, 2), w.accessories)])
    return Identity(
        top=top,
        bottom=random_colour(rng, "bottom", w),
        shoes=random_colour(rng, "shoes", w),
        pattern=pick(rng, PATTERNS, w.patterns),
        pattern_color=_contrasting(rng, top, "top", w),
        stripe_period=rng.uniform(0.03, 0.06),
        long_sleeves=bool(rng.random() < w.long_sleeves),
        bottom_type=pick(rng, BOTTOM_TYPES, w.bottoms),
        skin=random_colour(rng, "skin", w),
        hair=random_colour(rng, "hair", w),
        hair_length=pick(rng, HAIR_LENGTHS, (50, 25, 25)),
        accessories=tuple((ACCESSORIES[k], random_colour(rng, "bag", w)) for k in kinds),
        height_scale=rng.uniform(0.88, 1.06),
        shoulder_width=rng.uniform(0.095, 0.14),
        leg_ratio=rng.uniform(0.44, 0.52),
    )


def _mutate(p: Identity, what: str, rng: np.random.Generator, w: Wardrobe) -> Identity:
    if what == "top_hue":
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in p.top))
        if s < 0.2:  # achromatic: a nearby grey level instead of a nearby hue
            return replace(p, top=hsv(h, s, v + rng.uniform(0.15, 0.25) * (1 if v < 0.5 else -1)))
        return replace(p, top=hsv(h + rng.choice((-1, 1)) * rng.uniform(0.05, 0.1), s, v))
    if what == "pattern_color" and p.pattern != "solid":
        return replace(p, pattern_color=_contrasting(rng, p.pattern_color, "top", w))
    if what in ("pattern", "pattern_color"):  # a solid top has no visible pattern colour
        return replace(p, pattern=PATTERNS[(PATTERNS.index(p.pattern) + rng.integers(1, 6)) % 6])
    if what in ("shoes", "bottom", "hair") and (what != "hair" or rng.random() < 0.5):
        return replace(p, **{what: _contrasting(rng, getattr(p, what), what, w)})
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
        acc.append((missing[int(rng.integers(len(missing)))], random_colour(rng, "bag", w)))
    elif choice == 1:
        acc.pop(int(rng.integers(len(acc))))
    else:
        i = int(rng.integers(len(acc)))
        acc[i] = (acc[i][0], _contrasting(rng, acc[i][1], "bag", w))
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


def similar_identity(
    base: Identity, rng: np.random.Generator, wardrobe: Wardrobe = MILD
) -> Identity:
    """A hard negative: copies `base` and changes one or two attributes (new colours from
    ``wardrobe``).

    Changes are e.g. only the pattern, only the shoe colour, only the bag, or a nearby hue of
    the top; the result always differs from `base`.
    """
    out = base
    for k in rng.permutation(len(_MUTATIONS))[: 1 + int(rng.random() < 0.4)]:
        out = _mutate(out, _MUTATIONS[int(k)], rng, wardrobe)
    return out if out != base else _mutate(base, "pattern", rng, wardrobe)
