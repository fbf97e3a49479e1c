"""What a synthetic camera adds to every crop it takes: background texture and colours,
light level, colour cast, saturation, contrast, blur, noise, framing and occluders. Camera
effects are deliberately strong, so raw colour statistics are confounded by the camera and
only the layout of identity cues is stable across cameras.

Each camera network draws its cameras from its own :class:`Optics` (``OPTICS``): network a
(synthreid) is a street by day; network b (synthreid-b) a city at night, seen by cheaper
cameras farther away."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidkit.data.synth.identity import RGB, WARDROBES, hsv, random_colour, shade

IMAGE_SIZE = (128, 64)  # (height, width)
_SS = 2  # draw at twice the size and reduce: cheap anti-aliasing for the polygons
CH, CW = IMAGE_SIZE[0] * _SS, IMAGE_SIZE[1] * _SS
PAD_Y, PAD_X = 24, 96  # background texture margin that per-image offsets move within
_NOISE_PAD = 32
STYLES = ("bricks", "tiles", "stripes", "foliage", "windows", "concrete")


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
    network: str = "a"  # whose wardrobe passers-by and distractors wear (identity.WARDROBES)
    resolution: float = 1.0  # below 1: the sensor sees the crop at this scale, then upscaled


Range = tuple[float, float]


@dataclass(frozen=True)
class Optics:
    """The ranges one camera network draws its cameras from. Hues step through the cameras
    by irrational fractions, so neighbouring cameras differ."""

    styles: tuple[str, ...]  # background styles, in camera order
    wall_hue: tuple[float, float, float]  # hue = a + index * b + uniform(0, c)
    wall: tuple[Range, Range]  # saturation, value
    floor: tuple[Range, Range]
    accent: tuple[Range, Range]
    light: tuple[float, float]  # light = a + b * ((index * 0.414214 + uniform(0, 0.2)) % 1)
    cast_hue: tuple[float, float]  # colour cast hue = a + index * b +- 0.08
    cast: Range  # its strength
    saturation: Range
    gamma: Range
    blur: Range
    noise: Range
    scale: tuple[Range, Range]  # body height: the range's low end, its width
    jitter: Range
    occlusion: Range
    resolution: Range | None = None  # None: full resolution (nothing drawn)


OPTICS = {
    # network a (synthreid): a street by day, varied backgrounds, mild casts
    "a": Optics(
        styles=STYLES,
        wall_hue=(0.0, 0.618, 0.15),
        wall=((0.15, 0.65), (0.3, 0.85)),
        floor=((0.0, 0.35), (0.25, 0.7)),
        accent=((0.2, 0.8), (0.3, 0.95)),
        light=(0.75, 0.45),
        cast_hue=(0.5, 0.382),
        cast=(0.06, 0.16),
        saturation=(0.8, 1.15),
        gamma=(0.85, 1.15),
        blur=(0.0, 1.5),
        noise=(0.0, 12.0),
        scale=((0.72, 0.86), (0.06, 0.14)),
        jitter=(0.03, 0.1),
        occlusion=(0.05, 0.3),
    ),
    # network b (synthreid-b): a city in the evening: darker walls of concrete, glass and tile,
    # sodium-orange and LED-blue casts, less saturated colour; people a little smaller and
    # less centred in the crop (cameras farther away), more often occluded, and seen by
    # lower-resolution sensors
    "b": Optics(
        styles=("concrete", "windows", "tiles", "stripes"),
        wall_hue=(0.55, 0.09, 0.1),
        wall=((0.1, 0.5), (0.28, 0.72)),
        floor=((0.0, 0.3), (0.22, 0.6)),
        accent=((0.25, 0.85), (0.4, 0.95)),
        light=(0.72, 0.4),
        cast_hue=(0.08, 0.5),
        cast=(0.09, 0.18),
        saturation=(0.7, 1.0),
        gamma=(0.9, 1.18),
        blur=(0.2, 1.55),
        noise=(1.0, 11.0),
        scale=((0.68, 0.81), (0.06, 0.13)),
        jitter=(0.04, 0.11),
        occlusion=(0.1, 0.32),
        resolution=(0.8, 0.92),
    ),
}


def random_camera(index: int, rng: np.random.Generator, network: str = "a") -> Camera:
    """Draw camera `index` of a network; consecutive indices get different styles, hues
    and casts."""
    o = OPTICS[network]
    style = o.styles[index % len(o.styles)]
    h0, step, spread = o.wall_hue
    wall_h = (
        rng.uniform(0.2, 0.4) if style == "foliage" else h0 + index * step + rng.uniform(0, spread)
    )
    cast_h = o.cast_hue[0] + index * o.cast_hue[1] + rng.uniform(-0.08, 0.08)
    amp = rng.uniform(*o.cast)
    gains = tuple(1 + amp * math.cos(2 * math.pi * (cast_h - c / 3)) for c in range(3))
    lo = rng.uniform(*o.scale[0])
    return Camera(
        index=index,
        style=style,
        wall=hsv(wall_h, rng.uniform(*o.wall[0]), rng.uniform(*o.wall[1])),
        floor=hsv(
            wall_h + rng.uniform(-0.2, 0.2), rng.uniform(*o.floor[0]), rng.uniform(*o.floor[1])
        ),
        accent=hsv(
            wall_h + rng.uniform(0.3, 0.7), rng.uniform(*o.accent[0]), rng.uniform(*o.accent[1])
        ),
        horizon=rng.uniform(0.55, 0.8),
        texture_seed=int(rng.integers(2**31)),
        light=o.light[0] + o.light[1] * ((index * 0.414214 + rng.uniform(0, 0.2)) % 1.0),
        gains=gains,
        saturation=rng.uniform(*o.saturation),
        gamma=rng.uniform(*o.gamma),
        blur=rng.uniform(*o.blur),
        noise_sigma=rng.uniform(*o.noise),
        scale_range=(lo, lo + rng.uniform(*o.scale[1])),
        jitter=rng.uniform(*o.jitter),
        occlusion_prob=rng.uniform(*o.occlusion),
        occluder_colors=tuple(random_colour(rng, "bag", WARDROBES[network]) for _ in range(3)),
        network=network,
        resolution=rng.uniform(*o.resolution) if o.resolution else 1.0,
    )


def _blotches(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = (rng.random((h // cell + 2, w // cell + 2)) * 255).astype(np.uint8)
    up = Image.fromarray(small).resize((w + 2 * cell, h + 2 * cell), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32)[cell : cell + h, cell : cell + w, None] / 255.0


@lru_cache(maxsize=256)
def _assets(cam: Camera) -> tuple[Image.Image, np.ndarray, list[int]]:
    """Background texture, noise tile and gamma table of a camera, built once."""
    rng = np.random.default_rng(cam.texture_seed)
    th, tw = CH + PAD_Y, CW + PAD_X
    y = np.arange(th, dtype=np.float32)[:, None]
    x = np.arange(tw, dtype=np.float32)[None, :]
    hz = int(cam.horizon * CH) + PAD_Y // 2
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
        colour = shade(cam.accent if rng.random() < 0.5 else cam.wall, rng.uniform(0.4, 1.5))
        d.rectangle((x0, y0, x0 + rng.uniform(10, 40), y0 + rng.uniform(10, 60)), fill=colour)
    noise = np.rint(
        rng.normal(
            0.0, cam.noise_sigma, (IMAGE_SIZE[0] + _NOISE_PAD, IMAGE_SIZE[1] + _NOISE_PAD, 3)
        )
    )
    ramp = 255.0 * (np.arange(256) / 255.0) ** cam.gamma
    return bg, noise.astype(np.int16), np.tile(np.rint(ramp).astype(np.int64), 3).tolist()


def canvas(cam: Camera, rng: np.random.Generator) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    return canvas_at(cam, int(rng.integers(PAD_Y + 1)), int(rng.integers(PAD_X + 1)))


def canvas_at(cam: Camera, oy: int, ox: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """The camera's background at offset (``oy``, ``ox``) within its margins (clipped to
    them), as a supersampled canvas to draw on."""
    oy, ox = min(max(oy, 0), PAD_Y), min(max(ox, 0), PAD_X)
    img = _assets(cam)[0].crop((ox, oy, ox + CW, oy + CH))
    return img, ImageDraw.Draw(img)


def draw_look(cam: Camera, rng: np.random.Generator) -> tuple[float, float]:
    """The blur radius and light level of one shot (one image, or a whole tracklet)."""
    return cam.blur * rng.uniform(0.7, 1.3), cam.light * rng.uniform(0.88, 1.12)


def finish(
    img: Image.Image,
    cam: Camera,
    rng: np.random.Generator,
    look: tuple[float, float] | None = None,
) -> Image.Image:
    """Apply the camera's optics and sensor response to a supersampled canvas; ``look``
    (from :func:`draw_look`) keeps blur and light fixed over a tracklet's frames."""
    img = img.reduce(_SS)
    if cam.resolution < 1.0:  # a low-resolution sensor: detail lost, then upscaled
        small = (
            max(1, round(img.width * cam.resolution)),
            max(1, round(img.height * cam.resolution)),
        )
        img = img.resize(small, Image.BILINEAR).resize(img.size, Image.BILINEAR)
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
