"""Training: the run directory and its entry points (``run``), the loop (``trainer``) with
its checks before it starts (``prechecks``), stop requests (``stop``), generator states
(``rng``) and DDP's replica check (``replicas``); the data loader, optimisers and
schedules, evaluation during training, and the demo."""
