#!/usr/bin/env python3
"""Reads an astrid run file with h5py alone (no astrid code) and checks it against the simulation.

Usage: check_run.py RUN.h5 --sim SIMDIR --ranks N --epochs K
"""
import argparse
import csv
import sys

import h5py
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--sim", required=True)
    ap.add_argument("--ranks", type=int, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    a = ap.parse_args()

    with h5py.File(a.run, "r") as f:
        attrs = dict(f.attrs)
        assert attrs["schema_version"] == 3, attrs
        assert attrs["status"] == "complete", attrs["status"]
        assert attrs["n_ranks"] == a.ranks, attrs["n_ranks"]
        assert "catalog = " in attrs["config"], attrs["config"]
        for key in ("astrid_version", "git_sha", "command_line", "start_utc", "end_utc"):
            assert isinstance(attrs[key], str) and attrs[key], key
        targets = f["targets"][:]
        obs = f["observations"][:]
        status_enum = h5py.check_enum_dtype(f["targets"].dtype["status"])
        role_enum = h5py.check_enum_dtype(f["observations"].dtype["role"])
    assert status_enum == {"ok": 0, "failed": 1, "skipped": 2}, status_enum
    assert role_enum["reference"] == 0 and role_enum["science"] == 1, role_enum

    truth_targets = {}
    with open(f"{a.sim}/truth.csv") as fh:
        rows = [r for r in fh if not r.startswith("#")]
    for r in csv.DictReader(rows):
        if r["kind"] == "transient":
            truth_targets.setdefault(r["target"], (float(r["ra"]), float(r["dec"])))

    names = [n.decode() for n in targets["name"]]
    assert len(names) == len(set(names)) == len(truth_targets), (names, list(truth_targets))
    assert set(names) == set(truth_targets), (names, list(truth_targets))
    assert np.all(targets["status"] == 0), targets["fail_reason"]
    assert np.all(targets["n_epochs"] == a.epochs), targets["n_epochs"]
    assert sorted(targets["target_id"].tolist()) == list(range(len(names)))
    for t in targets:
        ra, dec = truth_targets[t["name"].decode()]
        # The catalog stores sexagesimal positions: agreement to ~0.01 arcsec.
        assert abs(t["ra"] - ra) * np.cos(np.radians(dec)) * 3600 < 0.02, (t["ra"], ra)
        assert abs(t["dec"] - dec) * 3600 < 0.02, (t["dec"], dec)
    if a.ranks > 1:
        assert len(set(targets["rank"].tolist())) > 1, "all targets ran on one rank"

    assert len(obs) == len(names) * (a.epochs + 1), len(obs)
    assert len(set(obs["obs_id"].tolist())) == len(obs)
    used = obs[obs["status"] == 0]
    assert np.sum(used["role"] == 0) == len(names) and np.sum(used["role"] == 1) == len(names) * a.epochs
    assert np.all(used["exposure_time"] > 0) and np.all(used["airmass"] > 0) and np.all(used["seeing"] > 0)
    assert np.all((used["ra"] >= 0) & (used["ra"] < 360)) and np.all(np.abs(used["dec"]) <= 90)
    assert all(p.decode().endswith(".fits") for p in used["fits_path"])
    print(f"check_run: {len(names)} targets, {len(obs)} observations, ranks used "
          f"{sorted(set(targets['rank'].tolist()))}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
