"""One ranked list drawn as one image: a header line, the query, then the gallery items.

    +----------------------------------------------------------------------+
    | header: query name, pid, camera, AP, first-match rank                |
    | [query]   [#1] [#2] [  ] [#3] ...                                    |
    |  label     label per tile: rank (or why ignored), distance, pid/cam  |
    +----------------------------------------------------------------------+

Each tile has a coloured border of ``Layout.border`` pixels: blue for the query, green for
a correct match, red for a wrong one, grey for an item the protocol ignores. A missing
image is drawn as a dark placeholder tile. Geometry lives in :class:`Layout`, so tests can
find every tile and border pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

from reidkit.data.images import read_rgb
from reidkit.errors import DataError

QUERY_COLOUR = (40, 90, 210)
MATCH_COLOUR = (0, 170, 0)
WRONG_COLOUR = (220, 20, 20)
IGNORED_COLOUR = (150, 150, 150)
BACKGROUND = (255, 255, 255)
PLACEHOLDER = (60, 60, 60)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a ranked-list image (all sizes in pixels)."""

    tile_width: int = 128
    tile_height: int = 256
    border: int = 5
    pad: int = 8
    gap: int = 24  # extra space between the query and the gallery items
    header: int = 30
    label: int = 52  # three lines of text under each tile
    font_size: int = 14

    def tile_box(self, position: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of tile ``position``; 0 is the query. Right and bottom
        are exclusive."""
        left = self.pad + position * (self.tile_width + self.pad) + (self.gap if position else 0)
        top = self.header
        return left, top, left + self.tile_width, top + self.tile_height

    def size(self, gallery_tiles: int) -> tuple[int, int]:
        """(width, height) of an image with the query and ``gallery_tiles`` items."""
        right = self.tile_box(gallery_tiles)[2] if gallery_tiles else self.tile_box(0)[2]
        return right + self.pad, self.header + self.tile_height + self.label + self.pad


@dataclass
class Tile:
    """One picture of a ranked list: an image file (None: unknown), its border colour and
    the text lines under it."""

    path: str | None
    colour: tuple[int, int, int]
    lines: tuple[str, ...]


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size)


def _picture(path: str | None, width: int, height: int):
    """The image at ``path`` resized to width x height, or None when it cannot be read."""
    if path is None:
        return None
    try:
        return read_rgb(path, (width, height))
    except DataError:
        return None


def draw_strip(header: str, tiles: list[Tile], layout: Layout = Layout()):
    """Draw a ranked list; tiles[0] is the query.

    Returns:
        The PIL image, and the paths of tiles whose image could not be read.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", layout.size(len(tiles) - 1), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(layout.font_size)
    draw.text((layout.pad, (layout.header - layout.font_size) // 2), header, fill=TEXT, font=font)
    b = layout.border
    inner = (layout.tile_width - 2 * b, layout.tile_height - 2 * b)
    missing = []
    for position, tile in enumerate(tiles):
        left, top, right, bottom = layout.tile_box(position)
        picture = _picture(tile.path, *inner)
        if picture is None:
            missing.append(tile.path)
            draw.rectangle((left, top, right - 1, bottom - 1), fill=PLACEHOLDER)
            draw.text(
                (left + 2 * b, top + layout.tile_height // 2),
                "image missing",
                fill=BACKGROUND,
                font=font,
            )
        else:
            image.paste(picture, (left + b, top + b))
        draw.rectangle((left, top, right - 1, bottom - 1), outline=tile.colour, width=b)
        y = bottom + 3
        for line in tile.lines:
            draw.text((left, y), line, fill=TEXT, font=font)
            y += layout.font_size + 2
    return image, missing
