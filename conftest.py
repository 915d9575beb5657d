"""Repository-wide pytest set-up for the unit tests and for nbmake.

Run everything from the repository root with::

    .venv/bin/python -m pytest -n 2 --nbmake tests book

The environment variables below are set when pytest imports this file, before any test
runs. Jupyter kernels started by nbmake inherit the environment of the pytest process
(and pytest-xdist workers import this file too), so every notebook runs under the same
settings:

- ``HASHNB_FAST=1`` selects the fast profile (smaller data, fewer epochs), which is what the
  notebook tests check. Set ``HASHNB_FAST=0`` in the shell to test the full profile.
- ``HASHNB_CACHE`` is left alone: features, splits and trained runs are expensive, so tests
  reuse the user's cache (``~/.cache/hashnb`` unless ``HASHNB_CACHE`` is set). ``.ci/run``
  points it at a fresh folder inside the clone so CI never depends on the machine's cache.
- matplotlib uses the non-interactive Agg backend *in the pytest process only*, so unit tests
  never open windows. This is done with ``matplotlib.use`` rather than ``MPLBACKEND``:
  ipykernel keeps an inherited ``MPLBACKEND``, and ``Agg`` there would make every
  ``plt.show()`` in a notebook warn and draw nothing instead of using the inline backend.
"""

from __future__ import annotations

import os

os.environ.setdefault("HASHNB_FAST", "1")

try:  # matplotlib is a dependency, but keep collection working without it
    import matplotlib
except ImportError:  # pragma: no cover
    pass
else:
    matplotlib.use("Agg")


try:  # pytest is not needed to import this file from a notebook kernel
    import pytest
except ImportError:  # pragma: no cover
    pass
else:
    @pytest.fixture(scope="session")
    def digits():
        """scikit-learn's digits (offline) and its seed-0 ``digits`` split, not cached."""
        from hashnb.data import load_dataset, make_split

        ds = load_dataset("digits")
        return ds, make_split(ds, seed=0, cache=False)
