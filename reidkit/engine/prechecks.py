"""What a training run checks before it writes anything or trains a step: that a batch fits
the identities there are, and that every image it will read can be decoded."""

from __future__ import annotations

from reidkit.config import Config
from reidkit.errors import DataError, UsageError


def check_batch_fits(config: Config, identities: int, samples: int) -> None:
    """A PK batch takes batch_size / num_instances identities, a random one batch_size
    samples: refuse, before anything is written, a batch that needs more than the training
    set has, saying what would fit."""
    d = config.data
    if d.sampler == "random":
        if d.batch_size > samples:
            raise UsageError(
                f"data.batch_size={d.batch_size} with data.sampler=random needs as many "
                f"training samples, but {d.dataset} has {samples}",
                hint=f"use --batch-size {samples} (or less)",
            )
        return
    if d.batch_size // d.num_instances <= identities:
        return
    fits = identities * d.num_instances
    instances = -(-d.batch_size // identities)
    while d.batch_size % instances:
        instances += 1
    held = (
        f" ({identities + d.val_ids} less the {d.val_ids} that data.val_ids holds out)"
        if d.val_ids
        else ""
    )
    raise UsageError(
        f"data.batch_size={d.batch_size} with data.num_instances={d.num_instances} needs "
        f"{d.batch_size // d.num_instances} training identities per batch, but "
        f"{d.dataset} has {identities}{held}",
        hint=f"use --batch-size {fits} (or less), or data.num_instances={instances}"
        + (", or hold out fewer identities" if d.val_ids else ""),
    )


def check_images(dataset, eval_sets: list, config: Config, rank: int, world: int):
    """Decode every image the run will read, once, before training: a bad one stops the
    run now (naming it) instead of in some epoch or at its evaluation, or with
    data.skip_bad is left out of every subset. Under torchrun each process decodes its
    share and all learn every finding, so that they leave out the same images.

    Returns:
        the dataset and evaluation sets without the unreadable images, and a message for
        each image left out.
    """
    import dataclasses

    from reidkit.data.images import find_unreadable
    from reidkit.data.sample import frame_paths, without_paths
    from reidkit.device import gather

    ds, c = dataset, config
    evaluated = [(s.query, s.gallery) for s in eval_sets] if c.eval.every else []
    paths = frame_paths(ds.train) + [p for pair in evaluated for y in pair for p in frame_paths(y)]
    share = list(dict.fromkeys(paths))[rank::world]
    found = gather(find_unreadable(share))
    bad = sorted((exc for part in found for exc in part), key=lambda e: (e.path, e.reason))
    if not bad:
        return dataset, eval_sets, []
    if not c.data.skip_bad:
        raise DataError(
            f"{len(bad)} image(s) of {ds.name} cannot be read; the first: {bad[0].message}",
            hint="--skip-bad leaves them out (and lists them in train.log)",
        )
    unreadable = {exc.path for exc in bad}

    def readable(items):
        return without_paths(items, unreadable)

    dataset = dataclasses.replace(ds, train=readable(ds.train))
    eval_sets = [
        dataclasses.replace(s, query=readable(s.query), gallery=readable(s.gallery))
        for s in eval_sets
    ]
    if not dataset.train:
        raise DataError(f"no training image of {ds.name} can be read")
    return dataset, eval_sets, [exc.message for exc in bad]
