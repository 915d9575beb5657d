"""The training loop, method registry, LSH/ITQ/CSQ, runs (load, resume) and DDP."""
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hashnb.data import make_split
from hashnb.methods import create_method, list_methods
from hashnb.train import fit, method_from_dataset, run_method


def test_registry_lists_and_rejects():
    assert {"lsh", "itq", "csq"} <= set(list_methods())
    with pytest.raises(ValueError, match="registered methods: .*csq"):
        create_method("nope", bits=16)
    with pytest.raises(ValueError, match="positive integer"):
        create_method("csq", bits=0, num_classes=10, in_dim=64)
    with pytest.raises(ValueError, match="must be <= the input dimension"):
        create_method("itq", bits=128, in_dim=64)
    with pytest.raises(ValueError, match="unknown argument"):
        create_method("lsh", bits=8, in_dim=4, lr=3)


def test_itq_quantization_error_never_increases_and_beats_lsh(digits):
    ds, split = digits
    itq = fit(method_from_dataset("itq", ds, bits=16), ds, split, progress=False)
    errs = np.array(itq.method.quantization_errors)
    assert len(errs) == 50 and (np.diff(errs) <= 1e-9).all() and errs[-1] < errs[0]
    lsh = fit(method_from_dataset("lsh", ds, bits=16), ds, split, progress=False)
    assert itq.evaluate()["map"] > lsh.evaluate()["map"]


def test_lsh_seeded(digits):
    ds, split = digits
    a = fit(method_from_dataset("lsh", ds, bits=16), ds, split, seed=1).codes("query")
    b = fit(method_from_dataset("lsh", ds, bits=16), ds, split, seed=1).codes("query")
    c = fit(method_from_dataset("lsh", ds, bits=16), ds, split, seed=2).codes("query")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {-1.0, 1.0}


def test_closed_form_requires_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        create_method("itq", bits=8, in_dim=16).encode(torch.zeros(2, 16))


def test_csq_learns_and_selects_on_validation(digits):
    ds, split = digits
    torch.manual_seed(0)
    run = fit(method_from_dataset("csq", ds, bits=16), ds, split, epochs=12, val_every=2,
              seed=0, progress=False)
    vals = [(h["epoch"], h["val_map"]) for h in run.history if "val_map" in h]
    assert len(vals) == 6
    assert run.best_epoch == max(vals, key=lambda t: t[1])[0]
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    res = run.evaluate()
    lsh = fit(method_from_dataset("lsh", ds, bits=16), ds, split).evaluate()
    assert res["map"] > lsh["map"] + 0.2
    assert set(res) >= {"map", "map@1000", "p@1000", "p@r2"}


def test_query_and_database_labels_never_used_in_training(digits):
    """Scramble the labels of query/database items that are not in train/val: same run."""
    ds, split = digits
    labels = ds.labels.copy()
    held = np.setdiff1d(np.arange(len(labels)), np.concatenate([split.train, split.val]))
    labels[held] = np.roll(labels[held], 3, axis=1)
    ds2 = dataclasses.replace(ds, labels=labels)

    def train(d):
        torch.manual_seed(0)
        return fit(method_from_dataset("csq", d, bits=8), d, split, epochs=4, val_every=1,
                   seed=0, progress=False)

    a, b = train(ds), train(ds2)
    assert [h["val_map"] for h in a.history] == [h["val_map"] for h in b.history]
    for (k, v), (_, w) in zip(a.method.state_dict().items(), b.method.state_dict().items()):
        assert torch.equal(v, w), k


def test_encode_does_not_depend_on_batch(digits):
    ds, split = digits
    torch.manual_seed(0)
    m = method_from_dataset("csq", ds, bits=32, head_batchnorm=True)
    fit(m, ds, split, epochs=2, progress=False)
    x = torch.as_tensor(ds.x[split.database[:256]])
    one = torch.cat([m.encode(x[i:i + 1], batch_size=1) for i in range(len(x))])
    assert torch.equal(one, m.encode(x, batch_size=256))


def test_run_dir_load_if_present_and_config_mismatch(digits, tmp_path):
    ds, split = digits
    torch.manual_seed(0)
    a = fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=3, run_dir=tmp_path / "r",
            progress=False)
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"config.json", "history.json", "model.pt"}
    m = method_from_dataset("csq", ds, bits=8)
    m.loss = None  # loading must not train
    b = fit(m, ds, split, epochs=3, run_dir=tmp_path / "r", progress=False)
    assert b.history == a.history
    assert torch.equal(a.codes("query"), b.codes("query"))
    with pytest.raises(ValueError, match="different config"):
        fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=4, run_dir=tmp_path / "r")


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_result(digits, tmp_path):
    ds, split = digits

    def make():
        torch.manual_seed(0)
        return method_from_dataset("csq", ds, bits=16)

    full = fit(make(), ds, split, epochs=6, seed=3, val_every=2, progress=False)

    def stop_at_3(ctx):
        if ctx.epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(make(), ds, split, epochs=6, seed=3, val_every=2, run_dir=tmp_path / "r",
            callbacks=[stop_at_3], progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").exists()
    resumed = fit(make(), ds, split, epochs=6, seed=3, val_every=2, run_dir=tmp_path / "r",
                  progress=False)
    assert [h["epoch"] for h in resumed.history] == list(range(1, 7))
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history])
    assert torch.equal(resumed.codes("query"), full.codes("query"))
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_run_method_caches(digits, tmp_path):
    ds, split = digits
    a = run_method("itq", ds, split, bits=8, root=tmp_path)
    b = run_method("itq", ds, split, bits=8, root=tmp_path)
    assert a.run_dir == b.run_dir and torch.equal(a.codes("query"), b.codes("query"))
    c = run_method("itq", ds, split, bits=8, seed=1, root=tmp_path)
    assert c.run_dir != a.run_dir


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """torchrun with 2 gloo processes: ranks agree on weights and history; rank 0 writes."""
    worker = Path(__file__).with_name("_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "--master_addr=127.0.0.1", str(worker),
           str(tmp_path), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["first"] == r1["first"] and r0["checksum"] == r1["checksum"]
    assert [h["val_map"] for h in r0["history"]] == [h["val_map"] for h in r1["history"]]
    assert (tmp_path / "run" / "model.pt").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2


def _tiny_images(n_per_class=12, classes=3, seed=0):
    """Images whose class is their dominant colour channel (a learnable toy task)."""
    from hashnb.data import HashingDataset

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.integers(0, 80, size=(len(y), 32, 32, 3)).astype(np.uint8)
    x[np.arange(len(y)), :, :, y] += 150
    return HashingDataset("toy-images", x, y, [f"c{i}" for i in range(classes)], kind="image")


class _Spy:
    """Wraps a method's loss to record what each batch carried."""

    def __init__(self, method):
        self.seen = []
        self.inner = method.loss

    def __call__(self, out, batch):
        self.seen.append((batch["idx"].cpu(), batch["y"].cpu(), batch["x"].shape))
        return self.inner(out, batch)


@pytest.mark.parametrize("kind", ["vector", "image"])
def test_batches_carry_train_positions_for_both_data_paths(kind, digits):
    if kind == "vector":
        ds, split = digits
        m = method_from_dataset("csq", ds, bits=8)
    else:
        ds = _tiny_images()
        split = make_split(ds, "random", n_query=6, n_train=24, seed=0, cache=False)
        m = method_from_dataset("csq", ds, bits=8, backbone="small_cnn")
    spy = _Spy(m)
    m.loss = spy
    run = fit(m, ds, split, epochs=2, batch_size=16, progress=False)
    train_y = torch.as_tensor(ds.labels[split.train])
    seen = torch.cat([i for i, _, _ in spy.seen])
    assert sorted(seen.tolist()) == sorted(list(range(len(split.train))) * 2)
    for idx, y, _ in spy.seen:
        assert torch.equal(train_y[idx], y)
    if kind == "image":
        assert spy.seen[0][2][1:] == (3, 32, 32)  # small_cnn's input size
        codes = run.codes("query")
        assert codes.shape == (6, 8) and set(codes.unique().tolist()) <= {-1.0, 1.0}


def test_patience_stops_early_on_validation_and_keeps_the_best(digits):
    ds, split = digits
    run = fit(method_from_dataset("csq", ds, bits=16), ds, split, epochs=200, lr=3e-3,
              val_every=1, patience=3, progress=False)
    vals = [h["val_map"] for h in run.history]
    assert len(run.history) < 200  # stopped early
    best = max(vals)
    assert run.best_epoch == vals.index(best) + 1
    assert len(vals) - run.best_epoch == 3  # exactly `patience` validations without progress
    assert all(v <= best for v in vals[run.best_epoch:])
    with pytest.raises(ValueError, match="patience"):
        fit(method_from_dataset("csq", ds, bits=16), ds, split, epochs=5, patience=2,
            select="last")
