"""``reidkit datasets``: list, summarise, combine and synthesise datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reidkit.cli import output
from reidkit.cli.options import (
    DEFAULT_ROOT,
    DatasetArg,
    ForceOpt,
    JsonOpt,
    QuietOpt,
    RootOpt,
    ThreadsOpt,
    VerboseOpt,
    WaitForLockOpt,
    WorkersOpt,
    complete_dataset,
)
from reidkit.threads import configure as configure_threads

app = typer.Typer(
    help="List, download, summarise, combine and synthesise datasets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def list_(
    root: RootOpt = DEFAULT_ROOT,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the known datasets, whether each is present under the root, and how to get it."""
    from reidkit.data import list_datasets

    output.setup(quiet, verbose)
    output.render({"root": str(root), "datasets": list_datasets(root)}, as_json, datasets_table)


def datasets_table(listing: dict):
    """Known datasets: name, present under the root or not, how to get it."""
    from rich.table import Table

    table = Table(title=f"datasets under {listing['root']}")
    for column in ("name", "present", "how to get it"):
        table.add_column(column)
    first_with: dict[str, str] = {}  # variants of one download (CUHK03) say it once
    for row in listing["datasets"]:
        present = "[green]yes[/]" if row["present"] else "[red]no[/]"
        obtain = row["obtain"]
        if obtain in first_with:
            obtain = f"as {first_with[obtain]}"
        else:
            first_with[obtain] = row["name"]
        table.add_row(row["name"], present, obtain)
    return table


def summary_table(summary: dict):
    """The familiar subset | # ids | # images | # cameras table; for a video dataset,
    subset | # ids | # tracklets | # frames | frames per tracklet | # cameras."""
    from rich.table import Table

    video = summary.get("kind") == "tracklet"
    columns = (
        ("# ids", "# tracklets", "# frames", "frames min/med/max")
        if video
        else ("# ids", "# images")
    )
    table = Table(title=f"{summary['dataset']} ({summary['root']})")
    for column in ("subset", *columns, "# cameras"):
        table.add_column(
            column,
            justify="left" if column == "subset" else "right",
            style="cyan" if column == "subset" else None,
        )
    for subset, c in summary["subsets"].items():
        if video:
            spread = f"{c['min_frames']} / {c['median_frames']} / {c['max_frames']}"
            cells = (c["ids"], c["tracklets"], c["frames"], spread)
        else:
            cells = (c["ids"], c["images"])
        table.add_row(subset, *(str(x) for x in cells), str(c["cameras"]))
    junk = (
        f"junk tracklets: {summary['junk_tracklets']}"
        if video
        else f"junk images: {summary['junk_images']}"
    )
    table.caption = f"{junk}, unparsed files: {summary['unparsed_files']}"
    return table


@app.command()
def download(
    name: Annotated[
        str,
        typer.Argument(
            help="Dataset to install (see 'reidkit datasets list').",
            autocompletion=complete_dataset,
            show_default=False,
        ),
    ],
    root: RootOpt = DEFAULT_ROOT,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Download from this URL (a mirror) instead.", show_default=False
        ),
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="The archive must have this sha256.", show_default=False),
    ] = None,
    md5: Annotated[
        str | None,
        typer.Option("--md5", help="The archive must have this md5.", show_default=False),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            help="Install from an archive obtained by hand (zip or tar).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Download (or take --archive), verify, extract safely and install a dataset."""
    from reidkit.data.fetch.install import install_dataset

    output.setup(quiet, verbose)
    with output.progress(f"download {name}") as progress:
        result = install_dataset(
            name, root, url=url, sha256=sha256, md5=md5, archive=archive, force=force,
            progress=progress,
        )  # fmt: skip
    output.render(result, as_json, download_report)


def download_report(result: dict) -> str:
    if result["up_to_date"]:
        check = "sha256 verified" if result["verified"] else "sha256 recorded"
        return (
            f"{result['path']} is installed ({check}, from {result['source']}); --force redoes it"
        )
    how = "resumed" if result["resumed"] else "downloaded" if result["transferred"] else "copied"
    check = "sha256 verified" if result["verified"] else "no published checksum"
    return (
        f"installed {result['dataset']} into {result['path']} ({how}, {result['size']:,} bytes, "
        f"{check}: {result['sha256'][:16]}...) in {result['seconds']:.1f} s\n"
        f"terms: {result['terms']}"
    )


@app.command()
def summary(
    dataset: DatasetArg,
    root: RootOpt = DEFAULT_ROOT,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Count identities, images and cameras per subset of a dataset."""
    from reidkit.data import load_dataset

    output.setup(quiet, verbose)
    output.render(load_dataset(dataset, root).summary(), as_json, summary_table)


@app.command()
def combine(
    datasets: Annotated[
        list[str],
        typer.Argument(
            help="Datasets to combine: names, Market-style folders or manifests.",
            autocompletion=complete_dataset,
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="The manifest to write (.csv).", dir_okay=False, show_default=False
        ),
    ],
    root: RootOpt = DEFAULT_ROOT,
    combineall: Annotated[
        bool,
        typer.Option(
            "--combineall", help="Also train on each dataset's query and gallery identities."
        ),
    ] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write one manifest that trains on several datasets at once (no copying)."""
    from reidkit.data import load_dataset
    from reidkit.data.combine import combine_datasets

    output.setup(quiet, verbose)
    result = combine_datasets([load_dataset(d, root) for d in datasets], out, combineall=combineall)
    output.render(
        result,
        as_json,
        lambda r: (
            f"wrote {r['rows']} rows, {r['train_ids']} training identities, to {r['manifest']}"
        ),
    )


@app.command()
def synth(
    root: RootOpt = DEFAULT_ROOT,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Size: tiny (tests), small (demo) or market (Market-1501's counts); "
            "video-tiny or video-small render tracklets into ROOT/synthreid-video.",
            envvar="REIDKIT_PRESET",
            autocompletion=lambda: ["tiny", "small", "market", "video-tiny", "video-small"],
        ),
    ] = "small",
    seed: Annotated[
        int, typer.Option("--seed", help="Same seed, byte-identical images.", envvar="REIDKIT_SEED")
    ] = 0,
    network: Annotated[
        str,
        typer.Option(
            "--network",
            help="Camera network: a (a street by day: ROOT/synthreid) or b (night, "
            "low-resolution cameras farther away, winter clothes: ROOT/synthreid-b, a domain "
            "shift from a for adaptation). Images only.",
            autocompletion=lambda: ["a", "b"],
        ),
    ] = "a",
    workers: WorkersOpt = 0,
    force: ForceOpt = False,
    wait_for_lock: WaitForLockOpt = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Render the synthetic pedestrian dataset into ROOT/synthreid (Market-1501 layout), its
    second camera network into ROOT/synthreid-b (--network b), or its tracklets into
    ROOT/synthreid-video (DukeMTMC-VideoReID layout)."""
    from reidkit.data import load_dataset
    from reidkit.data.synth import generate

    output.setup(quiet, verbose)
    configure_threads(threads)
    from reidkit.data.synth.images import NAMES

    with output.progress(NAMES.get(network, "synthreid")) as progress:
        result = generate(
            root,
            preset,
            seed,
            network=network,
            workers=workers or None,
            force=force,
            wait_for_lock=wait_for_lock,
            progress=progress,
        )
    result["summary"] = load_dataset(result["dataset"], root).summary()
    output.render(result, as_json, synth_report)


def synth_report(result: dict):
    """What ``datasets synth`` did, then the dataset's summary table."""
    from rich.console import Group

    if result["up_to_date"]:
        line = (
            f"{result['path']} is up to date (preset {result['preset']}, "
            f"seed {result['seed']}); --force redoes it"
        )
    else:
        rate = result["rendered"] / result["seconds"] if result["seconds"] else 0.0
        what = f"{result['images']} images"
        if result["summary"].get("kind") == "tracklet":
            tracklets = sum(c["tracklets"] for c in result["summary"]["subsets"].values())
            what = f"{tracklets} tracklets ({result['images']} frames)"
        line = (
            f"wrote {what} to {result['path']} in {result['seconds']:.1f} s ({rate:.0f} images/s)"
        )
    return Group(line, summary_table(result["summary"]))
