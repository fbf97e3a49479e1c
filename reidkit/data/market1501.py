"""Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).

Layout: ``<root>/market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}``
(the same folders directly under ``<root>/market1501/`` are accepted too). 1501 identities,
6 cameras; pid -1 is junk, pid 0 distractors.
"""

from __future__ import annotations

from pathlib import Path

from reidkit.data.market_style import NamingRule, parse_market_layout
from reidkit.data.sample import Dataset, DatasetSpec

RELEASE = "Market-1501-v15.09.15"
RULE = NamingRule(num_cameras=6, max_pid=1501)


def parse(folder: Path) -> Dataset:
    """Parse Market-1501 from ``<root>/market1501``."""
    base = folder / RELEASE if (folder / RELEASE).is_dir() else folder
    return parse_market_layout(
        "market1501", base, RULE, hint=f"extract {RELEASE}.zip so that {folder / RELEASE} exists"
    )


SPEC = DatasetSpec(
    name="market1501",
    folder="market1501",
    description="Market-1501: 1501 ids, 6 cameras, 32668 images",
    obtain="reidkit datasets download market1501 --root {root} "
    f"(or extract {RELEASE}.zip into {{root}}/market1501/)",
    parse=parse,
)
