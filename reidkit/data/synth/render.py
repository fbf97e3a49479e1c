"""Procedural pedestrian crops for a synthetic re-identification dataset.

An image is ``camera(identity, pose)``. An :class:`Identity` holds what a model should learn:
clothing colours and top pattern, bottom type, shoes, skin, hair, accessories and body
proportions (:mod:`reidkit.data.synth.identity`). A :class:`Camera` holds the nuisance
shared by every crop it takes (:mod:`reidkit.data.synth.camera`). This module draws the
person: per image, the generator passed in draws pose, viewpoint, framing jitter,
background offset and occlusion.

All randomness comes from the ``numpy.random.Generator`` passed in (camera textures from a seed
drawn from it), so one generator state gives byte-identical images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from reidkit.data.synth.camera import CH, CW, Camera, canvas, finish
from reidkit.data.synth.identity import RGB, WARDROBES, Identity, pick, random_identity, shade


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


def draw_person(
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
        _limb(d, el, hand, 0.05 * u, 0.042 * u, shade(p.top if p.long_sleeves else skin, k))
        _limb(d, (x0, y0), el, 0.06 * u, 0.052 * u, shade(p.top, k))
        r = 0.022 * u
        d.ellipse((hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r), fill=shade(skin, k))

    def leg(x0: float, x1: float, k: float) -> None:
        km, bot = ((x0 + x1) / 2 + 0.02 * u * ft, knee), shade(p.bottom, k)
        cover, w = (bot, u) if p.bottom_type == "trousers" else (shade(skin, k), 0.82 * u)
        _limb(d, (x0, hip), km, 0.085 * w, 0.068 * w, cover)
        _limb(d, km, (x1, ank), 0.068 * w, 0.055 * w, cover)
        if p.bottom_type == "shorts":
            _limb(d, (x0, hip), (km[0], knee - 0.03 * u), 0.095 * u, 0.085 * u, bot)
        sx, sl = x1 + 0.02 * u * ft, 0.05 * u if side else 0.035 * u
        d.ellipse((sx - sl, foot - 0.04 * u, sx + sl, foot), fill=shade(p.shoes, k))

    def bag_box(x: float, y: float, w: float, h: float, colour: RGB) -> None:
        d.rounded_rectangle((x - w / 2, y, x + w / 2, y + h), radius=0.015 * u, fill=colour)
        d.rectangle((x - w / 2, y + h * 0.3, x + w / 2, y + h * 0.36), fill=shade(colour, 0.6))

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
                shade(acc["backpack"], 0.85),
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
            shade(acc["shoulder_bag"], 0.7),
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
            d.ellipse((hx - rx * 1.2, hcy - 0.03 * u, hx + rx * 1.2, hcy), fill=shade(hat, 0.8))


def pose(rng: np.random.Generator) -> tuple[str, int, float, float]:
    view = pick(rng, ("front", "back", "side"), (40, 35, 25))
    return view, (1 if rng.random() < 0.5 else -1), rng.uniform(0, 0.45), rng.uniform(-0.5, 0.5)


def occlude(
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
    dx = shift * CW
    if (kind := int(rng.integers(3))) == 0:  # pole or pillar
        x, w = rng.uniform(0.1, 0.9) * CW + dx, rng.uniform(0.05, 0.15) * CW
        d.rectangle((x - w / 2, 0, x + w / 2, CH), fill=colour)
        d.rectangle((x - w / 2, 0, x - w / 4, CH), fill=shade(colour, 1.3))
    elif kind == 1:  # car-like box in front of the legs
        y0, x0 = CH * rng.uniform(0.6, 0.82), CW * rng.uniform(-0.6, 0.3) + dx
        x1 = x0 + CW * rng.uniform(0.9, 1.5)
        d.rounded_rectangle((x0, y0, x1, CH + 20), radius=14, fill=colour)
        d.rectangle((x0 + 8, y0 + 6, x1 - 8, y0 + 0.3 * (CH - y0)), fill=shade(colour, 0.35))
        d.ellipse((x0 + 10, CH - 22, x0 + 50, CH + 18), fill=(20, 20, 22))
    else:  # another pedestrian passing in front
        s = 1 if rng.random() < 0.5 else -1
        draw_person(
            d,
            random_identity(rng, WARDROBES[cam.network]),
            cx + s * rng.uniform(0.5, 0.8) * CW + dx,
            foot + rng.uniform(0, 0.06) * CH,
            u * rng.uniform(0.95, 1.15),
            *pose(rng),
        )


def render_person(identity: Identity, camera: Camera, rng: np.random.Generator) -> Image.Image:
    """One crop of `identity` seen by `camera`.

    Per image, from `rng`: pose (leg stride, arm swing), viewpoint (front shows the face, back
    shows the backpack, side is narrower), position and scale jitter within the camera's range,
    background offset and, with the camera's probability, an occluder (a pole, a car-like box or
    another person's partial body). Then the camera effects: light, colour cast, blur, noise.
    """
    img, d = canvas(camera, rng)
    u = min(CH * rng.uniform(*camera.scale_range) * identity.height_scale, 0.99 * CH)
    cx = CW * (0.5 + rng.uniform(-camera.jitter, camera.jitter))
    foot = min(CH * (0.985 + rng.uniform(-camera.jitter, camera.jitter) * 0.5), CH)
    foot = max(foot, u + 0.01 * CH)
    draw_person(d, identity, cx, foot, u, *pose(rng))
    if rng.random() < camera.occlusion_prob:
        occlude(d, camera, rng, cx, foot, u)
    return finish(img, camera, rng)


def render_junk(camera: Camera, rng: np.random.Generator) -> Image.Image:
    """A bad detection as in Market-1501's junk (pid -1): background or a fragment of a body."""
    img, d = canvas(camera, rng)
    if (r := rng.random()) < 0.3:  # empty background, sometimes with a pole or a car
        if rng.random() < 0.5:
            occlude(d, camera, rng, CW / 2, CH, 0.9 * CH)
    elif r < 0.75:  # zoomed-in fragment: a leg, an arm, a shoulder
        u = CH * rng.uniform(1.8, 3.5)
        draw_person(
            d,
            random_identity(rng, WARDROBES[camera.network]),
            CW * rng.uniform(-0.3, 1.3),
            CH * rng.uniform(0.6, 0.4 + u / CH),
            u,
            *pose(rng),
        )
    else:  # a body mostly outside the box
        u = CH * rng.uniform(0.5, 1.0)
        x = CW * (rng.uniform(-0.35, -0.1) if rng.random() < 0.5 else rng.uniform(1.1, 1.35))
        draw_person(
            d,
            random_identity(rng, WARDROBES[camera.network]),
            x,
            CH * rng.uniform(0.6, 1.0),
            u,
            *pose(rng),
        )
    return finish(img, camera, rng)


def render_distractor(camera: Camera, rng: np.random.Generator) -> Image.Image:
    """A person who is nobody of the dataset (pid 0): often badly cropped or off-centre."""
    img, d = canvas(camera, rng)
    r, cx = rng.random(), CW * (0.5 + rng.uniform(-0.3, 0.3))
    if r < 0.3:
        u, foot = CH * rng.uniform(0.65, 0.95), CH * rng.uniform(0.85, 1.0)
    else:  # only the upper or the lower half
        u = CH * rng.uniform(1.4, 2.0)
        foot = u + CH * rng.uniform(-0.05, 0.08) if r < 0.65 else CH * rng.uniform(0.9, 1.0)
    draw_person(d, random_identity(rng, WARDROBES[camera.network]), cx, foot, u, *pose(rng))
    return finish(img, camera, rng)
