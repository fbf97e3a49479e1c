"""ONNX exports made two at a time: one in this process, one in a worker process beside it.

An export is single-threaded Python for most of its time (torch's tracer and decompositions,
onnxscript's passes: 6-9 s a model here), so on 2 cores a second process halves the time of
a list of them. Both sides run torch on one thread while they export: two processes of two
threads each on 2 cores spin against each other and run many times slower.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
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
    :func:`export_registered`; {key: (file, result)}. This process and the worker take the
    next one from one queue as soon as each is free (a thread here feeds the worker), in
    MODELS' order: put the longest first, so that neither side is left with a long one
    while the other has finished."""
    import threading

    import torch

    pending = list(models)
    jobs = {
        key: (*models[key], size, str(data_root), str(folder / f"{i}.onnx"))
        for i, key in enumerate(models)
    }
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def take() -> str | None:
        with lock:
            return pending.pop(0) if pending else None

    def feed(worker: ProcessPoolExecutor, failures: list[BaseException]) -> None:
        try:
            while (key := take()) is not None:
                results[key] = worker.submit(export_registered, *jobs[key]).result()
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)

    threads = torch.get_num_threads()
    context = multiprocessing.get_context("spawn")  # a fork would inherit torch's threads
    failures: list[BaseException] = []
    with ProcessPoolExecutor(1, mp_context=context, initializer=_one_thread) as worker:
        feeder = threading.Thread(target=feed, args=(worker, failures))
        torch.set_num_threads(1)
        feeder.start()
        try:
            while (key := take()) is not None:
                results[key] = export_registered(*jobs[key])
        finally:
            with lock:
                pending.clear()  # after a failure here, the worker stops after its current one
            feeder.join()
            torch.set_num_threads(threads)
    if failures:
        raise failures[0]
    return {key: (Path(jobs[key][-1]), results[key]) for key in models}
