#!/usr/bin/python3
"""Checks astrid /training files the way users read them (h5py + the PyTorch example's Dataset):
layout, attributes and chunking; labels, masks and finite pixels; the split recomputed from each
target name with the documented hash; for ZTF imports, labels against the drb/rb score.

    check_training.py FILE.h5 [--ztf N_EXPECTED] [--example docs/examples/train_triplets.py]
"""
import argparse
import importlib.util

import h5py
import numpy as np

M = (1 << 64) - 1


def split_hash(key: bytes) -> int:
    """docs/training.md: FNV-1a 64 of the key's bytes, then the splitmix64 finaliser."""
    h = 0xCBF29CE484222325
    for b in key:
        h = ((h ^ b) * 0x100000001B3) & M
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M
    return h ^ (h >> 31)


def split_of(name: bytes, train: float, validation: float) -> int:
    u = (split_hash(name) >> 11) * 2.0**-53
    return 0 if u < train else (1 if u < train + validation else 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--ztf", type=int, default=None, help="a ZTF import with this many triplets")
    ap.add_argument("--example", default=None, help="the PyTorch example, to load the file with its Dataset")
    args = ap.parse_args()
    f = h5py.File(args.file, "r")
    assert f.attrs["schema_version"] >= 4, f.attrs["schema_version"]
    t = f["training"]
    trip, mask, labels, meta = t["triplets"], t["mask"], t["labels"], t["meta"]
    n, planes, h, w = trip.shape
    assert trip.dtype == np.float32 and mask.dtype == np.uint8 and labels.dtype == np.int8
    assert trip.chunks == (1, planes, h, w) and mask.chunks == (1, h, w), (trip.chunks, mask.chunks)
    assert mask.shape == (n, h, w) and labels.shape == (n,) and meta.shape == (n,)
    plane_names = trip.attrs["planes"].split(",")
    assert len(plane_names) == planes, plane_names
    assert trip.attrs["orientation"] and trip.attrs["pixel_units"]
    x = trip[:]
    m = mask[:]
    lab = labels[:]
    rows = meta[:]
    assert np.isfinite(x).all(), "non-finite pixels"
    outside = (m & 1) != 0
    assert np.all(x[np.repeat(outside[:, None], planes, axis=1)] == 0), "padding pixels are not 0"
    assert set(np.unique(lab)) <= {0, 1, 2}, np.unique(lab)
    source_names = h5py.check_enum_dtype(meta.dtype["label_source"])
    split_names = h5py.check_enum_dtype(meta.dtype["split"])
    assert split_names == {"train": 0, "validation": 1, "test": 2}, split_names
    train, validation = t.attrs["split_train"], t.attrs["split_validation"]
    expect = np.array([split_of(bytes(r), train, validation) for r in rows["target_name"]])
    assert np.array_equal(expect, rows["split"]), "split differs from the documented hash"
    by_target = {}
    for name, s in zip(rows["target_name"], rows["split"]):
        assert by_target.setdefault(bytes(name), s) == s, f"target {name} in two splits"
    if args.ztf is not None:
        assert n == args.ztf, f"{n} triplets, expected {args.ztf}"
        assert plane_names == ["science", "reference", "difference"] and (h, w) == (63, 63)
        assert trip.attrs["orientation"] == "ztf_stamp_as_distributed"
        ztf = {source_names["ztf_drb"], source_names["ztf_rb"]}
        assert set(np.unique(rows["label_source"])) <= ztf
        assert np.isfinite(rows["score"]).all()
        assert np.array_equal(lab == 1, rows["score"] >= 0.5), "labels do not follow the score"
        assert np.all(rows["science_obs_id"] > 10**17), "candid lost digits"
        # The ZTF stamps are raw DN: the science stamp has a sky level, the difference does not.
        assert np.median(x[:, 0]) > 10 * abs(np.median(x[:, 2])), "planes out of order?"
    counts = {k: int((lab == v).sum()) for k, v in (("real", 1), ("bogus", 0), ("blank_sky", 2))}
    print(f"{args.file}: {n} triplets {planes}x{h}x{w} ({','.join(plane_names)}), {counts}, "
          f"splits {np.bincount(rows['split'], minlength=3).tolist()}")
    if args.example:
        spec = importlib.util.spec_from_file_location("train_triplets", args.example)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # needs torch
        total = 0
        for s in ("train", "validation", "test"):
            d = mod.TripletDataset([args.file], s)
            lazy = mod.TripletDataset([args.file], s, preload=False)
            total += len(d)
            if len(d):
                xa, ya = d[0]
                xb, yb = lazy[0]
                assert xa.shape == (planes + 1, h, w) and float(ya) == float(yb)
                assert np.allclose(xa.numpy(), xb.numpy()), "preloaded and lazy items differ"
        assert total == n, (total, n)
        print(f"  the example's Dataset loads all {n} triplets (preloaded and lazily)")


if __name__ == "__main__":
    main()
