#!/usr/bin/env python3
"""Compare the tables of two astrid run files as multisets of rows, the way a user would check that
a resumed (or sliced and merged) campaign holds exactly the rows of an uninterrupted one.

Columns that legitimately differ between runs (wall-clock timings, the rank that ran a target) are
left out; every other column must match exactly (run with fft_effort = estimate, whose FFT plans,
and so results, do not depend on timing). Rows may come in any order.

usage: compare_runs.py EXPECTED.h5 ACTUAL.h5 [--quiet] [--tables T,..] [--ignore COL,..]
Exit status 0 when every table matches; 1 with a report of lost and duplicated rows otherwise.
"""
import argparse
import collections
import sys

import h5py
import numpy as np

TABLES = ["targets", "observations", "catalog_issues", "difference_runs", "candidates", "forced_photometry",
          "injections"]
VOLATILE = {"wall_s", "rank", "background_s", "psf_s", "registration_s", "zogy_s"}


def rows(path, table, ignore=()):
    with h5py.File(path, "r") as f:
        if table not in f:
            raise SystemExit(f"{path}: no table /{table}")
        data = f[table][()]
    keep = [n for n in data.dtype.names if n not in VOLATILE and n not in ignore]
    out = []
    for r in data:
        # NaN != NaN: compare the bytes' repr of each value instead.
        out.append(tuple(r[n].tobytes() if isinstance(r[n], np.ndarray) else np.asarray(r[n]).tobytes()
                         for n in keep))
    return collections.Counter(out), keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tables", help="comma-separated subset of the tables to compare")
    ap.add_argument("--ignore", default="", help="comma-separated further columns to leave out (e.g. fits_path)")
    a = ap.parse_args()
    bad = False
    for t in (a.tables.split(",") if a.tables else TABLES):
        ignore = set(filter(None, a.ignore.split(",")))
        e, names = rows(a.expected, t, ignore)
        g, _ = rows(a.actual, t, ignore)
        lost = e - g
        extra = g - e
        n_e, n_g = sum(e.values()), sum(g.values())
        if lost or extra:
            bad = True
            dup = sum(c - 1 for c in g.values() if c > 1)
            print(f"/{t}: expected {n_e} rows, got {n_g}: {sum(lost.values())} lost, "
                  f"{sum(extra.values())} unexpected ({dup} duplicated)")
            for row in list(lost)[:2]:
                print("   lost:", dict(zip(names[:3], row[:3])))
        elif not a.quiet:
            print(f"/{t}: {n_g} rows match")
    # /training (when both files have it): every triplet (meta row, label and pixel bytes) once.
    if not a.tables:
        with h5py.File(a.expected, "r") as fe, h5py.File(a.actual, "r") as fa:
            if ("training" in fe) != ("training" in fa):
                print("/training: present in only one file")
                bad = True
            elif "training" in fe:
                def triplets(f):
                    t = f["training"]
                    meta, labels, pix = t["meta"][()], t["labels"][()], t["triplets"][()]
                    return collections.Counter(
                        (meta[i].tobytes(), int(labels[i]), pix[i].tobytes()) for i in range(len(labels)))
                e, g = triplets(fe), triplets(fa)
                if e != g:
                    bad = True
                    print(f"/training: expected {sum(e.values())} triplets, got {sum(g.values())}: "
                          f"{sum((e - g).values())} lost, {sum((g - e).values())} unexpected")
                elif not a.quiet:
                    print(f"/training: {sum(g.values())} triplets match")
    with h5py.File(a.actual, "r") as f:
        status = f.attrs.get("status")
    if status != "complete":
        print(f"{a.actual}: status attribute is {status!r}, not 'complete'")
        bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
