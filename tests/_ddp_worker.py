"""Worker for tests/test_train.py::test_ddp_two_cpu_processes (run under torchrun, gloo)."""
import json
import sys

import torch
import torch.distributed as dist

from hashnb.data import load_dataset, make_split
from hashnb.train import fit, method_from_dataset

out = sys.argv[1]
ds = load_dataset("digits")
split = make_split(ds, seed=0, cache=False)
torch.manual_seed(0)
m = method_from_dataset("csq", ds, bits=16)
run = fit(m, ds, split, epochs=3, batch_size=64, seed=0, progress=False, val_every=1,
          run_dir=sys.argv[2], device="cpu")
rank = dist.get_rank()
flat = torch.cat([p.detach().flatten() for p in m.parameters()])
json.dump({"rank": rank, "world": dist.get_world_size(), "checksum": float(flat.sum()),
           "first": flat[:5].tolist(), "history": run.history},
          open(f"{out}/rank{rank}.json", "w"))
dist.destroy_process_group()
