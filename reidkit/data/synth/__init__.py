"""Synthetic re-ID data, the embedded default of the demo, the tests and the benchmarks:
procedural pedestrians (:mod:`~reidkit.data.synth.images`, Market-1501's layout) and
tracklets (:mod:`~reidkit.data.synth.video`, DukeMTMC-VideoReID's) drawn by
:mod:`~reidkit.data.synth.render` (who: :mod:`~reidkit.data.synth.identity`; through which
camera: :mod:`~reidkit.data.synth.camera`) from a seed's :mod:`~reidkit.data.synth.world`, and
written by :mod:`~reidkit.data.synth.writer`."""

from __future__ import annotations

from reidkit.data.synth.writer import generate

__all__ = ["generate"]
