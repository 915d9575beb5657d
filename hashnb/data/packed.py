"""CIFAR-10 packed as JPEG bytes in one small file, for carrying the data to another machine.

:func:`hashnb.data.pack_cifar10` reads a CIFAR-10 copy (any layout
:func:`hashnb.data.load_cifar10` accepts, e.g. ``cifar10.npz``) and :func:`pack_dataset` encodes every image as a JPEG with Pillow (quality 95 and
4:2:0 chroma subsampling by default) and writes one ``.npz`` archive without pickles:

==============  ==================  =====================================================
array           dtype, shape        meaning
==============  ==================  =====================================================
``format``      ``<U``, ()          ``"hashnb-jpeg-v1"``
``header``      uint8, (h,)         the JPEG header every image shares (up to its SOS marker)
``jpeg``        uint8, (B,)         the images' own bytes, concatenated
``offsets``     int64, (n + 1,)     image ``i``'s bytes are ``jpeg[offsets[i]:offsets[i + 1]]``
``stripped``    bool, (n,)          True: the file is ``header`` + those bytes; False: the
                                    bytes are the whole file (a header unlike the shared one)
``labels``      uint8, (n,)         class ids 0..9: the 50,000 train images, then the test
``n_train``     int64, ()           50,000
``shape``       int64, (3,)         (H, W, 3) of every image
``classes``     ``<U``, (10,)       class names
``quality``     int64, ()           the JPEG quality used
``subsampling`` ``<U``, ()          the chroma subsampling used ("4:2:0" or "4:4:4")
``source``      ``<U``, ()          the file or folder packed
==============  ==================  =====================================================

A 32x32 JPEG is mostly header: Pillow writes the same 609 bytes (JFIF, quantisation and
Huffman tables, frame and scan headers) before every image of one size and quality, about
as many bytes as the image data itself. They are stored once. So the 60,000 images take
about 33 MiB at quality 95 (4:2:0), the default, with a mean PSNR of about 46 dB against
the source pixels (quality 85 is 22 MiB and about 40 dB; whole files at quality 85 would
be 57 MiB). The 162 MiB ``cifar10.npz`` holds the decoded pixels, compressed with zlib.
:func:`hashnb.data.load_packed_cifar10` decodes them back into a
:class:`~hashnb.data.HashingDataset` named ``"cifar10"`` with the same image order, so every
protocol split (which depends on the labels only) is the same as with the original copy.
Pixels differ slightly (a second JPEG pass over the shared copy, itself a JPEG copy), so
the content fingerprint (feature caches) differs too. Only numpy and Pillow are needed.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["FORMAT", "PACKED_NAME", "pack_dataset", "read_packed", "is_packed", "find_packed",
           "psnr"]

FORMAT = "hashnb-jpeg-v1"
#: the file name ``pack-cifar10`` suggests and :func:`find_packed` looks for in a folder
PACKED_NAME = "cifar10-jpeg.npz"


_SOS = b"\xff\xda"  # start-of-scan marker: the image data follows its short header


def _encode(img: np.ndarray, quality: int, subsampling: str) -> bytes:
    from PIL import Image

    bio = io.BytesIO()
    Image.fromarray(img).save(bio, format="JPEG", quality=int(quality), subsampling=subsampling)
    return bio.getvalue()


def _decode_into(out, blob, offsets, header: bytes, stripped, lo: int, hi: int):
    from PIL import Image

    for i in range(lo, hi):
        data = blob[offsets[i]:offsets[i + 1]].tobytes()
        with Image.open(io.BytesIO(header + data if stripped[i] else data)) as im:
            out[i] = np.asarray(im.convert("RGB"))


def pack_dataset(ds, out, *, quality: int = 95, subsampling: str = "4:2:0",
                 max_mib: float | None = 56.0, threads: int | None = None,
                 src=None) -> dict:
    """Pack an in-memory image dataset (CIFAR-10) into ``out`` (one ``.npz`` of JPEG bytes
    + labels); :func:`hashnb.data.pack_cifar10` loads the copy and calls this.

    Parameters
    ----------
    ds : :class:`~hashnb.data.HashingDataset` with uint8 ``x`` (n, H, W, 3), single-label.
    out : path
        The file to write (a temporary file is renamed into place at the end).
    quality : JPEG quality, 95 by default (about 33 MiB for the 60,000 images).
    subsampling : chroma subsampling, "4:2:0" (as the shared JPEG copy) or "4:4:4".
    max_mib : raise ``ValueError`` (and write nothing) when the result would exceed this many
        MiB; None: no limit.
    threads : encoding threads (Pillow releases the GIL); default ``min(8, cpu count)``.

    Returns
    -------
    dict with ``path``, ``bytes``, ``mib``, ``n``, ``quality`` and ``psnr_db`` (mean PSNR of
    the packed images against the source pixels, over the first 2,000 images).
    """
    x = np.ascontiguousarray(ds.x)
    n = len(x)
    threads = threads or min(8, os.cpu_count() or 1)
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            blobs = list(pool.map(lambda im: _encode(im, quality, subsampling), x))
    else:
        blobs = [_encode(im, quality, subsampling) for im in x]
    # the header shared by (in practice) every image: stored once, stripped from each file
    cut = blobs[0].find(_SOS) if blobs else -1
    header = blobs[0][:cut] if cut > 0 else b""
    stripped = np.array([bool(header) and b[:len(header)] == header
                         and b[len(header):len(header) + 2] == _SOS for b in blobs], dtype=bool)
    blobs = [b[len(header):] if s else b for b, s in zip(blobs, stripped)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    blob = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    labels = ds.labels.argmax(1).astype(np.uint8)
    arrays = dict(format=np.array(FORMAT), header=np.frombuffer(header, dtype=np.uint8),
                  jpeg=blob, offsets=offsets, stripped=stripped, labels=labels,
                  n_train=np.array(int(ds.meta.get("n_train", n)), dtype=np.int64),
                  shape=np.array(x.shape[1:], dtype=np.int64), classes=np.array(ds.classes),
                  quality=np.array(int(quality), dtype=np.int64),
                  subsampling=np.array(subsampling),
                  source=np.array(str(ds.meta.get("source", src))))
    # + zip and array headers, the small arrays
    size = int(blob.nbytes + offsets.nbytes + labels.nbytes + stripped.nbytes) + 8192
    if max_mib is not None and size > max_mib * 2 ** 20:
        raise ValueError(f"packed CIFAR-10 would take {size / 2 ** 20:.1f} MiB > {max_mib} MiB; "
                         f"lower the quality (now {quality})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the name
        np.savez(f, **arrays)
    os.replace(tmp, out)
    k = min(n, 2000)
    back = np.empty((k,) + x.shape[1:], dtype=np.uint8)
    _decode_into(back, blob, offsets, header, stripped, 0, k)
    nbytes = out.stat().st_size
    return {"path": str(out), "bytes": nbytes, "mib": nbytes / 2 ** 20, "n": n,
            "quality": int(quality), "subsampling": subsampling,
            "header_bytes": len(header), "stripped": int(stripped.sum()),
            "psnr_db": psnr(x[:k], back)}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the PSNR (dB, peak 255) between uint8 image stacks ``a`` and ``b``."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    mse = np.maximum(((a - b) ** 2).mean(1), 1e-10)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))


def is_packed(path) -> bool:
    """True when ``path`` is a file written by :func:`hashnb.data.pack_cifar10`."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as d:
            return "format" in d.files and str(d["format"]) == FORMAT
    except Exception:  # not a zip, truncated, ...
        return False


def find_packed(path) -> Path | None:
    """The packed file at ``path``: the file itself, or ``cifar10-jpeg.npz`` (or any other
    packed ``.npz``) in the folder ``path`` or its ``cifar10/`` subfolder; else None."""
    path = Path(path).expanduser()
    if path.is_file():
        return path if is_packed(path) else None
    if not path.is_dir():
        return None
    for base in (path, path / "cifar10"):
        if (base / PACKED_NAME).is_file() and is_packed(base / PACKED_NAME):
            return base / PACKED_NAME
        if base.is_dir():
            for p in sorted(base.glob("*.npz")):
                if p.name != "cifar10.npz" and is_packed(p):
                    return p
    return None


def read_packed(path, *, threads: int | None = None):
    """Decode a packed file -> ``(x uint8 (n, H, W, 3), labels uint8 (n,), n_train, classes,
    info dict)``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as d:
        if "format" not in d.files or str(d["format"]) != FORMAT:
            raise ValueError(f"{path} is not a packed CIFAR-10 file ({FORMAT}); make one with "
                             "python -m hashnb.bench pack-cifar10 --src FOLDER --out FILE")
        blob, offsets, labels = d["jpeg"], d["offsets"], d["labels"]
        header, stripped = d["header"].tobytes(), d["stripped"]
        n_train, shape = int(d["n_train"]), tuple(int(s) for s in d["shape"])
        classes = [str(c) for c in d["classes"]]
        info = {"quality": int(d["quality"]), "source": str(d["source"])}
    n = len(labels)
    if len(offsets) != n + 1 or offsets[-1] != len(blob):
        raise ValueError(f"{path}: offsets do not match the JPEG bytes (truncated file?)")
    x = np.empty((n,) + shape, dtype=np.uint8)
    threads = threads or min(8, os.cpu_count() or 1)
    step = max(1, -(-n // threads))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda lo: _decode_into(x, blob, offsets, header, stripped, lo,
                                              min(n, lo + step)), range(0, n, step)))
    return x, labels, n_train, classes, info
