"""The paper profile (hashnb.paper, issue 16) on CPU: the same code path as on a GPU, tiny.

A few dozen synthetic 16x16 images, 1 epoch, the ``small_cnn`` backbone: the result JSON's
fields, the decisive-first order and the budget, resuming, the device-resident batch source
against the loop's own loader, the packed CIFAR-10 round trip, the chapter-8 table, and that
the run path imports no FAISS, UMAP or Jupyter.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hashnb import bench, paper
from hashnb.data import HashingDataset


def tiny_dataset(n_per_class=20, classes=3, size=16, seed=0):
    """Class-coloured noisy images: learnable in one epoch, cheap to encode."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    base = rng.integers(40, 215, size=(classes, 1, 1, 3))
    x = np.clip(base[y] + rng.normal(0, 25, size=(len(y), size, size, 3)), 0, 255)
    return HashingDataset(name="tiny", x=x.astype(np.uint8), labels=y,
                          classes=[str(c) for c in range(classes)], kind="image",
                          meta={"source": "synthetic"})


SYM = dict(protocol="random", epochs=1, augment=True,
           split_kwargs=dict(n_query=12, n_train=30, train_in_database=False))
ASYM = dict(protocol="random", epochs=1, augment=False,
            split_kwargs=dict(n_query=12, n_train=30, train_in_database=True))


def tiny_profile(sym=("csq", "crh:reassign=none"), asym=("adsh:pool=database",), bits=(8,)):
    return dict(dataset="tiny", backbone="small_cnn", pretrained=False, input_size=16,
                resize=18, backbone_lr_mult=1.0, amp=True, channels_last=True, compile=False,
                eval_batch_size=32, seeds=[0],
                groups=[dict(methods=list(sym), bits=list(bits), **SYM),
                        dict(methods=list(asym), bits=list(bits), **ASYM)])


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HASHNB_DATA", raising=False)
    return tmp_path


def quiet(*a, **k):
    pass


# --------------------------------------------------------------------------- the profile
def test_profile_covers_every_method_and_twin_decisive_first():
    cells = paper.paper_cells()
    keys = {(c.method, c.bits, c.seed) for c in cells}
    assert len(keys) == len(cells) == 9 * 3 * 3 + 4 * 3 + 4 * 3
    for m in ("dpsh", "hashnet", "csq", "orthohash", "crh", "crh:reassign=none", "mlh",
              "mlh:experts=0", "mlh:branches=center"):
        assert {(c.bits, c.protocol) for c in cells if c.method == m} == {
            (b, "cifar10") for b in (16, 32, 64)}
    assert {c.bits for c in cells if c.method == "mah:pool=database"} == {4, 6, 8, 12}
    assert {c.protocol for c in cells if c.method.startswith(("adsh", "mah"))} == {"cifar10-1"}
    # the decisive subset first: each recent method beside its baseline and twin, seed 0
    head = [(c.method, c.bits, c.seed, c.role) for c in cells[:len(paper.DECISIVE)]]
    assert head == [(m, b, 0, r) for m, b, r in paper.DECISIVE]
    assert head[:3] == [("crh", 64, 0, "recent"), ("crh:reassign=none", 64, 0, "twin"),
                        ("orthohash", 64, 0, "baseline")]
    assert ("mah:pool=database", 8, 0, "recent") in head
    # then the rest of seed 0 before any other seed
    seeds = [c.seed for c in cells]
    assert seeds == sorted(seeds)
    assert paper.paper_cells(decisive_only=True) == cells[:len(paper.DECISIVE)]
    # the method specs build (kwarg names checked against the constructors)
    from hashnb.methods import create_method

    for spec in paper.SYMMETRIC + paper.ASYMMETRIC:
        name, kw = paper.parse_method_spec(spec)
        create_method(name, bits=8 if name == "mah" else 16, num_classes=10, in_dim=12, **kw)


def test_budget_starts_only_the_cells_that_fit(cache):
    """A dry run spends each cell's estimate; the first cell over the budget stops the run."""
    labels = np.repeat(np.arange(10), 6000)
    ds = HashingDataset(name="cifar10", x=np.zeros((60000, 1, 1, 3), np.uint8), labels=labels,
                        classes=[str(c) for c in range(10)])
    rates = paper.Rates(train_ips=1000.0, encode_ips=5000.0, fixed_s=5.0)
    sizes = {"train": 4500, "val": 500, "query": 1000, "database": 54000}
    crh = paper.paper_cells(decisive_only=True)[0]
    est = paper.estimate_seconds(crh, sizes, rates)
    assert est == pytest.approx(5 + 20 * 4500 / 1000 + 55000 / 5000)
    mah = next(c for c in paper.paper_cells(decisive_only=True) if c.method.startswith("mah"))
    w = paper.cell_workload(mah, {"train": 4500, "val": 500, "query": 1000, "database": 59000})
    assert w == {"train_images": 15 * 2000 * 3, "encode_images": 1000 + 500}

    s = paper.run_paper(cache / "out", budget_min=(2 * est + 1) / 60, dataset=ds, device="cpu",
                        rates=rates, dry_run=True, log=quiet)
    planned = [c for c, _ in s["plan"]]
    assert planned == paper.paper_cells()[:2]
    assert len(s["over_budget"]) == len(paper.paper_cells()) - 2 and not s["ran"]
    none = paper.run_paper(cache / "out", budget_min=0.01, dataset=ds, device="cpu",
                           rates=rates, dry_run=True, log=quiet)
    assert not none["plan"]
    full = paper.run_paper(cache / "out", dataset=ds, device="cpu", rates=rates,
                           dry_run=True, decisive_only=True, log=quiet)
    assert [c for c, _ in full["plan"]] == paper.paper_cells(decisive_only=True)


def test_rates_come_from_measured_records():
    recs = [{"device": {"name": "H"}, "images_per_s": {"train": t, "encode": e},
             "wall_seconds": {"fixed": f}} for t, e, f in ((100, 1000, 2), (300, 3000, 4),
                                                          (200, 2000, 3))]
    r = paper.Rates.from_records(recs, device_name="H")
    assert (r.train_ips, r.encode_ips, r.fixed_s, r.measured) == (200, 2000, 3, 3)
    prior = paper.Rates.prior("cpu")
    assert paper.Rates.from_records(recs, device_name="other", prior=prior) is prior


# ---------------------------------------------------------------------------- a tiny run
def test_tiny_profile_writes_json_with_throughput_and_resumes(cache):
    ds = tiny_dataset()
    out = cache / "gpu"
    s = paper.run_paper(out, dataset=ds, profile=tiny_profile(), device="cpu", log=quiet)
    assert len(s["ran"]) == 3 and not s["skipped"]
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    for f in files:
        r = json.loads(f.read_text())
        assert r["profile"] == "paper" and r["dataset"] == "tiny" and r["bits"] == 8
        assert r["protocol"] == "random" and r["seed"] == 0
        assert r["images_per_s"]["train"] > 0 and r["images_per_s"]["encode"] > 0
        assert r["train_samples_per_s"] == r["images_per_s"]["train"]
        assert r["device"]["type"] == "cpu" and isinstance(r["device"]["name"], str)
        assert "gpu" in r  # provenance: the GPU's name (None here)
        assert r["features"]["finetune"] is True and r["features"]["input_size"] == 16
        assert r["features"]["loader"] == "device"
        assert r["method_kwargs"]["backbone"] == "small_cnn"
        assert r["epochs"] == 1 and r["best_epoch"] == 1
        assert set(r["metrics"]) >= {"map", "map@1000", "p@1000", "p@r2", "map_ties_index"}
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert set(r["wall_seconds"]) >= {"features_load", "train", "train_loop", "evaluate",
                                          "fixed", "cell"}
        assert r["config"]["method"] == r["method"]
    crh = json.loads((out / "tiny-random-crh+reassign-none-8b-s0.json").read_text())
    assert crh["method_kwargs"]["reassign"] == "none" and crh["role"] == "profile"
    adsh = json.loads((out / "tiny-random-adsh+pool-database-8b-s0.json").read_text())
    assert adsh["method_kwargs"]["pool"] == "database"
    assert adsh["images"]["encoded"] < adsh["split_sizes"]["query"] + \
        adsh["split_sizes"]["database"]  # the pool's codes are learned, not encoded

    # resumable: the same configuration is skipped; another is reported, not overwritten
    again = paper.run_paper(out, dataset=ds, profile=tiny_profile(), device="cpu", log=quiet)
    assert len(again["skipped"]) == 3 and not again["ran"]
    other = paper.run_paper(out, dataset=ds, profile=tiny_profile(), device="cpu", epochs=2,
                            methods=["csq"], log=quiet)
    assert len(other["mismatched"]) == 1 and not other["ran"]

    table = paper.paper_table(out, cpu_folders=())
    assert ("csq", "this book, paper profile (GPU)") == table.index[0][:2]
    assert table.loc[table.index[0], "8 bits"].endswith("(1)")
    pub = [ix for ix in table.index if ix[1].startswith("published")]
    assert pub and all(ix[0] == "adsh:pool=database" for ix in pub)  # only methods we ran


def test_device_batches_match_the_loops_own_loader(cache, monkeypatch):
    """ADSH feeds its own item order (no shuffling, no augmentation): the device source and
    the per-item DataLoader give the same codes, so the same metrics; the device source
    never loads an item one by one."""
    from hashnb.data import TorchImageDataset

    items = []
    get = TorchImageDataset.__getitem__
    monkeypatch.setattr(TorchImageDataset, "__getitem__",
                        lambda self, i: items.append(i) or get(self, i))
    ds = tiny_dataset()
    prof = tiny_profile(sym=(), asym=("adsh:pool=database",))
    prof["amp"] = False
    a = paper.run_paper(cache / "a", dataset=ds, profile=prof, device="cpu", loader="device",
                        log=quiet)["records"][0]
    assert not items
    b = paper.run_paper(cache / "b", dataset=ds, profile=prof, device="cpu", loader="items",
                        log=quiet)["records"][0]
    assert items and b["features"]["loader"] == "items"
    assert a["metrics"] == pytest.approx(b["metrics"])


def test_gpu_preprocess_crops_flips_and_is_batch_independent():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    pre = paper.GPUPreprocess(8, resize=8, mean=(0.5,) * 3, std=(0.5,) * 3, augment=True,
                              channels_last=False).eval()
    same = pre(x)
    assert torch.allclose(same, (x.float() / 255 - 0.5) / 0.5, atol=1e-6)  # identity crop
    up = paper.GPUPreprocess(24, resize=28, augment=True).eval()
    y = up(x)
    assert y.shape == (5, 3, 24, 24) and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(up(x[2:3]), y[2:3], atol=1e-6)  # eval: a code never sees the batch
    assert torch.allclose(up(x.float() / 255), y, atol=1e-6)  # uint8 or [0, 1] float
    up.train()
    assert not torch.allclose(up(x), y)  # random crops and flips while training
    flat = torch.arange(8.0).repeat(1, 3, 8, 1) / 8  # a horizontal ramp
    flip = paper.GPUPreprocess(8, resize=8, mean=(0,) * 3, std=(1,) * 3, channels_last=False)
    outs = {tuple(flip(flat)[0, 0, 0].round(decimals=4).tolist()) for _ in range(20)}
    assert len(outs) == 2  # as is, or mirrored


def test_run_path_imports_no_faiss_umap_or_jupyter(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["HASHNB_CACHE"] = {str(tmp_path / "cache")!r}
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_paper import tiny_dataset, tiny_profile
        from hashnb import paper
        s = paper.run_paper({str(tmp_path / "out")!r}, dataset=tiny_dataset(),
                            profile=tiny_profile(sym=("csq",), asym=()), device="cpu",
                            log=lambda *a: None)
        assert len(s["ran"]) == 1
        import hashnb.bench  # the command line's module too (python -m hashnb.bench paper)
        bad = [m for m in ("faiss", "umap", "IPython", "ipywidgets", "jupyter_core",
                           "matplotlib") if m in sys.modules]
        print("LOADED", bad)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LOADED []" in r.stdout, r.stdout


# ------------------------------------------------------------------------- packed data
def fake_cifar(path, n_train=24, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]

    def images(n):  # smooth colour gradients + mild noise: JPEG-friendly, like photographs
        a = rng.uniform(0, 1, size=(n, 1, 1, 3))
        b = rng.uniform(0, 1, size=(n, 1, 1, 3))
        img = 255 * (a * xx[None, :, :, None] / 31 + b * yy[None, :, :, None] / 31) / 2
        return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)

    d = dict(x_train=images(n_train), y_train=rng.integers(0, 10, n_train).astype(np.uint8),
             x_test=images(n_test), y_test=rng.integers(0, 10, n_test).astype(np.uint8))
    np.savez(path, **d)
    return d


def test_pack_cifar10_round_trip(cache, monkeypatch):
    from hashnb.data import load_packed_cifar10, pack_cifar10
    from hashnb.data.packed import is_packed, psnr

    src = cache / "src"
    src.mkdir()
    d = fake_cifar(src / "cifar10.npz")
    out = cache / "packed" / "cifar10-jpeg.npz"
    r = pack_cifar10(src, out, quality=95, threads=2)
    assert r["n"] == 36 and r["stripped"] == 36 and r["header_bytes"] > 300
    assert out.stat().st_size == r["bytes"] < 36 * 3072  # smaller than the raw pixels
    assert is_packed(out) and not is_packed(src / "cifar10.npz")
    with np.load(out, allow_pickle=False) as z:  # no pickles inside
        assert z["jpeg"].dtype == np.uint8 and len(z["offsets"]) == 37
    ds = load_packed_cifar10(out.parent)
    x = np.concatenate([d["x_train"], d["x_test"]])
    y = np.concatenate([d["y_train"], d["y_test"]])
    assert ds.name == "cifar10" and ds.x.shape == x.shape and ds.x.dtype == np.uint8
    assert (ds.labels.argmax(1) == y).all() and ds.meta["n_train"] == 24
    assert psnr(x, ds.x) > 35 and r["psnr_db"] > 35
    # the profile reads it through HASHNB_DATA (file or folder) or root=
    monkeypatch.setenv("HASHNB_DATA", str(out))
    assert paper.load_paper_dataset().meta["format"] == "jpeg-packed"
    monkeypatch.setenv("HASHNB_DATA", str(out.parent))
    assert paper.load_paper_dataset().meta["source"] == str(out)
    assert paper.load_paper_dataset(root=src).meta["format"] == "npz"  # the original still works
    with pytest.raises(ValueError, match="MiB"):
        pack_cifar10(src, cache / "big.npz", max_mib=0.001)
    assert not (cache / "big.npz").exists()


def test_bench_subcommands(cache, capsys):
    from hashnb.bench import main

    src = cache / "src"
    src.mkdir()
    fake_cifar(src / "cifar10.npz")
    assert main(["pack-cifar10", "--src", str(src), "--out", str(cache / "p.npz")]) == 0
    assert "MiB" in capsys.readouterr().out
    from hashnb.bench import build_parser

    args = build_parser().parse_args(["paper", "--budget", "8", "--out", "x", "--dry-run"])
    assert args.budget == 8 and args.func is bench.cmd_paper


def test_paper_table_without_results_says_how_to_make_them(tmp_path):
    msg = paper.paper_table(tmp_path / "none")
    assert isinstance(msg, str) and "python -m hashnb.bench paper --budget 8" in msg
    assert "pack-cifar10" in msg and msg._repr_markdown_() == str(msg)
