"""ONNX exports made two at a time: one in this process, one in a worker process beside it.

An export is single-threaded Python for most of its time (torch's tracer and decompositions,
onnxscript's passes: 6-9 s a model here), so on 2 cores a second process halves the time of
a list of them. Both sides run torch on one thread while they export: two processes of two
threads each on 2 cores spin against each other and run many times slower.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any


def export_registered(
    name: str, options: dict, size: tuple[int, int], data_root: str, out: str
) -> dict[str, Any]:
    """``export_model`` of the registered model NAME built with OPTIONS and its seeded random
    weights at SIZE (height, width), verified on synthreid's images under DATA_ROOT: the
    result ``reidkit export`` prints."""
    from reidkit.deploy.export import ExportOptions, export_model
    from reidkit.deploy.verify import verification_images
    from reidkit.features.source import load_model_source

    source = load_model_source(
        None, name, height=size[0], width=size[1], model_options=options or None
    )
    paths, _ = verification_images(dataset="synthreid", root=data_root)
    return export_model(source, out, ExportOptions(), verify_on=paths)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def export_all(
    models: dict[str, tuple[str, dict]], size: tuple[int, int], data_root: Path, folder: Path
) -> dict[str, tuple[Path, dict]]:
    """Each of MODELS ({key: (name, options)}) exported at SIZE to FOLDER/<i>.onnx by
    :func:`export_registered`, the worker taking the next one whenever it is free and this
    process the others; {key: (file, result)}."""
    import torch

    pending = list(models)
    jobs = {
        key: (*models[key], size, str(data_root), str(folder / f"{i}.onnx"))
        for i, key in enumerate(models)
    }
    results: dict[str, dict[str, Any]] = {}
    threads = torch.get_num_threads()
    context = multiprocessing.get_context("spawn")  # a fork would inherit torch's threads
    with ProcessPoolExecutor(1, mp_context=context, initializer=_one_thread) as worker:
        running: tuple[str, Future] | None = None
        torch.set_num_threads(1)
        try:
            while pending or running:
                if running and (running[1].done() or not pending):
                    results[running[0]] = running[1].result()
                    running = None
                if running is None and pending:
                    name = pending.pop(0)
                    running = (name, worker.submit(export_registered, *jobs[name]))
                elif pending:
                    name = pending.pop(0)
                    results[name] = export_registered(*jobs[name])
        finally:
            torch.set_num_threads(threads)
    return {key: (Path(jobs[key][-1]), results[key]) for key in models}
