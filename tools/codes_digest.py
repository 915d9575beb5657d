"""Print a digest of every registered method's codes on digits, to check that a refactor
changes no behaviour: run it before and after, and compare the output.

    OMP_NUM_THREADS=1 .venv/bin/python tools/codes_digest.py [--bits 16] [--epochs 3] > digest.txt

Each line: method, bits, seed, sha1 of the query and database codes, validation mAP
history. Training is seeded (``run_method`` with ``seed``), not cached, on one thread.
"""
from __future__ import annotations

import argparse
import hashlib

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = ap.parse_args()
    torch.set_num_threads(1)

    from hashnb.data import load_dataset, make_split
    from hashnb.methods import list_methods
    from hashnb.train import run_method

    ds = load_dataset("digits")
    quick = {"adsh": {"num_samples": 300}, "mah": {"num_samples": 300}}
    for seed in a.seeds:
        split = make_split(ds, seed=seed, cache=False)
        for name in list_methods():
            run = run_method(name, ds, split, bits=a.bits, seed=seed, epochs=a.epochs,
                             cache=False, progress=False, val_every=1,
                             method_kwargs=quick.get(name))
            h = hashlib.sha1()
            for part in ("query", "database"):
                h.update(run.codes(part).numpy().astype(np.int8).tobytes())
            vals = [round(r["val_map"], 6) for r in run.history if "val_map" in r]
            print(f"{name:10s} {a.bits:3d}b s{seed} {h.hexdigest()[:16]} best={run.best_epoch} "
                  f"val={vals}", flush=True)


if __name__ == "__main__":
    main()
