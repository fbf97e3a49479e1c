"""The fault-injection fixtures, defined with their helpers in faults.py."""

from faults import (  # noqa: F401  (pytest finds fixtures by name here)
    download_case,
    extract_case,
    http_server,
    sigint_reaches_children,
    synth_case,
    train_case,
    visrank_case,
)
