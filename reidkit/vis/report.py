"""The data behind the pictures: ranked.csv, and an index.html that opens without a server.

ranked.csv has one row per (query, shown gallery item), in the order of the pictures:

    ordinal, image, query_index, query_path, query_pid, query_camid, query_ap, first_match,
    position, rank, gallery_index, gallery_path, gallery_pid, gallery_camid, distance,
    match, ignored

``position`` counts tiles from 1; ``rank`` is the item's rank in the evaluation (blank for
items the protocol ignores, whose ``ignored`` says why: junk or same camera); ``match`` is
1 when the item shows the query's identity. AP is a fraction; blank for a query without a
valid match.
"""

from __future__ import annotations

import csv
import html
import os
from dataclasses import dataclass
from pathlib import Path

from reidkit.fileio import atomic_open, write_text_atomic

CSV_COLUMNS = (
    "ordinal",
    "image",
    "query_index",
    "query_path",
    "query_pid",
    "query_camid",
    "query_ap",
    "first_match",
    "position",
    "rank",
    "gallery_index",
    "gallery_path",
    "gallery_pid",
    "gallery_camid",
    "distance",
    "match",
    "ignored",
)


@dataclass
class QueryRow:
    """One rendered query, as the report lists it."""

    ordinal: int
    image: str  # relative to the output folder ("" when images were not drawn)
    index: int
    path: str
    pid: int
    camid: int
    camera: int  # as the dataset names it (camid + the files' camera_base)
    ap: float | None
    first_match: int | None
    items: list[dict]  # rank, gallery_index, gallery_path, gallery_pid, ... per shown item


def write_ranked_csv(path: str | os.PathLike[str], rows: list[QueryRow]) -> None:
    with atomic_open(Path(path), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            head = (
                row.ordinal,
                row.image,
                row.index,
                row.path,
                row.pid,
                row.camid,
                "" if row.ap is None else f"{row.ap:.6f}",
                "" if row.first_match is None else row.first_match,
            )
            for position, item in enumerate(row.items, 1):
                writer.writerow(
                    (
                        *head,
                        position,
                        item["rank"] or "",
                        item["gallery_index"],
                        item["gallery_path"],
                        item["gallery_pid"],
                        item["gallery_camid"],
                        f"{item['distance']:.6f}",
                        int(item["match"]),
                        item["ignored"],
                    )
                )


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { cursor: pointer; background: #f2f2f2; user-select: none; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.strip { max-width: 100%; height: 160px; }
.plots img { height: 280px; margin-right: 1em; }
.small { color: #666; font-size: 90%; }
"""

# Sort by a column on click; numbers compare as numbers (data-value), blanks go last.
_SCRIPT = """
document.querySelectorAll("th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var asc = !th.classList.contains("sorted-asc");
    th.closest("tr").querySelectorAll("th").forEach(function (h) {
      h.classList.remove("sorted-asc", "sorted-desc");
    });
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
    var key = function (tr) {
      var v = tr.cells[col].getAttribute("data-value");
      return v === null ? tr.cells[col].textContent : v;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }).forEach(function (tr) { body.appendChild(tr); });
  });
});
"""


def _cell(text, value=None, numeric: bool = False) -> str:
    attrs = ' class="num"' if numeric else ""
    if value is not None:
        attrs += f' data-value="{html.escape(str(value))}"'
    return f"<td{attrs}>{html.escape(str(text))}</td>"


def write_index_html(
    path: str | os.PathLike[str], rows: list[QueryRow], summary: dict, plots: list[str]
) -> None:
    """An index of the rendered queries, sortable by any column; links are relative."""
    evaluation = summary["evaluation"]
    cmc = ", ".join(f"rank-{r} {100 * v:.1f}%" for r, v in evaluation["cmc"].items())
    how = (
        f"{evaluation['metric']} distance, protocol {evaluation['protocol']}"
        f"{', re-ranked' if evaluation['rerank'] else ''}; "
        f"{evaluation['num_valid_query']} of {evaluation['num_query']} queries evaluated, "
        f"{evaluation['num_gallery']} gallery items"
    )
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>reidkit visrank</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Ranked lists</h1>",
        f"<p>mAP {100 * evaluation['mAP']:.2f}%, mINP {100 * evaluation['mINP']:.2f}%, "
        f"{html.escape(cmc)}</p>",
        f'<p class="small">{html.escape(how)}. Query: {html.escape(evaluation["query"])}; '
        f"gallery: {html.escape(evaluation['gallery'])}. {len(rows)} queries shown, "
        f"order: {html.escape(summary['order'])}. Border: green correct, red wrong, grey "
        "ignored by the protocol. Click a column to sort. "
        '<a href="ranked.csv">ranked.csv</a></p>',
    ]
    if plots:
        lines.append('<div class="plots">')
        lines += [
            f'<a href="{html.escape(p)}"><img src="{html.escape(p)}" alt="{html.escape(p)}"></a>'
            for p in plots
        ]
        lines.append("</div>")
    lines += [
        "<table><thead><tr><th>#</th><th>query</th><th>pid</th><th>camera</th><th>AP</th>"
        "<th>first match</th><th>ranked list</th></tr></thead><tbody>"
    ]
    for row in rows:
        picture = (
            f'<a href="{html.escape(row.image)}"><img class="strip" loading="lazy" '
            f'src="{html.escape(row.image)}" alt="{html.escape(row.path)}"></a>'
            if row.image
            else ""
        )
        lines.append(
            "<tr>"
            + _cell(row.ordinal, row.ordinal, numeric=True)
            + _cell(row.path)
            + _cell(row.pid, row.pid, numeric=True)
            + _cell(row.camera, row.camera, numeric=True)
            + _cell(
                "no valid match" if row.ap is None else f"{100 * row.ap:.1f}%",
                "" if row.ap is None else f"{row.ap:.6f}",
                numeric=True,
            )
            + _cell(
                "" if row.first_match is None else row.first_match,
                "" if row.first_match is None else row.first_match,
                numeric=True,
            )
            + f"<td>{picture}</td></tr>"
        )
    lines += ["</tbody></table>", f"<script>{_SCRIPT}</script>", "</body></html>", ""]
    write_text_atomic(path, "\n".join(lines))
