#!/usr/bin/python3
"""Train a small real/bogus CNN on astrid's /training triplets and report ROC AUC on the test split.

    /usr/bin/python3 docs/examples/train_triplets.py run.h5 [ztf.h5 ...] [--seconds 180]

Needs only Debian's python3-h5py, python3-numpy and python3-torch (CPU). Any number of files may be
mixed (an astrid campaign's and `astrid import-ztf`'s) as long as their triplets have the same planes
and size. Labels: 1 real is the positive class; 0 bogus and 2 blank-sky are negatives. The split is
the one stored per triplet (/training/meta 'split', assigned per target by astrid's stable hash).
"""
import argparse
import sys
import time

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

SPLITS = {"train": 0, "validation": 1, "test": 2}


def normalise(x, bad):
    """x [n, planes, H, W], bad [n, H, W] bool: each plane minus its median over unmasked pixels,
    divided by its robust sigma (1.4826 MAD), clipped to [-10, 50]; masked pixels 0."""
    x = x.astype(np.float32, copy=True)
    for i in range(x.shape[0]):
        good = ~bad[i]
        for p in range(x.shape[1]):
            v = x[i, p][good] if good.any() else x[i, p].ravel()
            med = np.median(v)
            sigma = 1.4826 * np.median(np.abs(v - med)) + 1e-6
            x[i, p] = np.clip((x[i, p] - med) / sigma, -10.0, 50.0)
        x[i][:, bad[i]] = 0.0
    return x


class TripletDataset(Dataset):
    """The triplets of one split of one or more astrid files (the /training layout).

    Each item is (x, y): x float32 [planes + 1, H, W] (the pixel planes normalised, then the mask as
    a 0/1 plane); y 1.0 for real, 0.0 for bogus or blank sky. With preload (the default) the split is
    read into memory in blocks of whole chunks; otherwise each item is one chunk read, with the files
    opened lazily in each DataLoader worker (h5py handles do not survive a fork).
    """

    def __init__(self, paths, split, preload=True, block=2048):
        self.paths = list(paths)
        self.index = []  # (file number, row)
        self.labels = []
        self.shape = None
        self.x = None
        blocks = []
        for k, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                if "training" not in f:
                    raise ValueError(f"{path}: no /training group")
                t = f["training"]
                trip = t["triplets"]
                shape = (trip.attrs["planes"], trip.shape[2], trip.shape[3])
                if self.shape is None:
                    self.shape = shape
                elif shape != self.shape:
                    raise ValueError(f"{path}: triplets {shape} differ from the first file's {self.shape}")
                split_col = t["meta"].fields("split")[:]
                labels = t["labels"][:]
                rows = np.nonzero(split_col == SPLITS[split])[0]
                self.index += [(k, int(r)) for r in rows]
                self.labels += [1.0 if labels[r] == 1 else 0.0 for r in rows]
                if preload:
                    for b in range(0, len(labels), block):
                        sel = rows[(rows >= b) & (rows < b + block)] - b
                        if len(sel):
                            x = trip[b:b + block][sel]
                            bad = t["mask"][b:b + block][sel] != 0
                            blocks.append(np.concatenate([normalise(x, bad), bad[:, None].astype(np.float32)], axis=1))
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if preload:
            self.x = torch.from_numpy(np.concatenate(blocks)) if blocks else torch.zeros((0,))
        self._files = None

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        if self.x is not None:
            return self.x[i], torch.tensor(self.labels[i])
        if self._files is None:
            self._files = [h5py.File(p, "r") for p in self.paths]
        k, row = self.index[i]
        t = self._files[k]["training"]
        bad = t["mask"][row:row + 1] != 0
        x = normalise(t["triplets"][row:row + 1], bad)  # one chunk: [1, planes, H, W]
        x = np.concatenate([x, bad[:, None].astype(np.float32)], axis=1)[0]
        return torch.from_numpy(x), torch.tensor(self.labels[i])


class SmallCnn(nn.Module):
    def __init__(self, in_planes):
        super().__init__()
        # Strided convolutions: ~4 M multiply-adds per 63 x 63 triplet, so minutes on a CPU suffice.
        self.features = nn.Sequential(
            nn.Conv2d(in_planes, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        return self.head(self.features(x).flatten(1)).squeeze(1)


def roc_auc(scores, labels):
    """Mann-Whitney U / (n_pos n_neg), ties counted half; None when a class is missing."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return (ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def augment(x):
    """Random flips and 90-degree rotations: real/bogus does not depend on orientation, which also
    makes files with different stated orientations (astrid north-up, ZTF as distributed) mixable."""
    if torch.rand(1).item() < 0.5:
        x = x.flip(-1)
    return torch.rot90(x, int(torch.randint(0, 4, (1,)).item()), dims=(-2, -1))


def evaluate(model, loader):
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            scores.append(torch.sigmoid(model(x)).numpy())
            labels.append(y.numpy())
    model.train()
    if not scores:
        return None, np.array([]), np.array([])
    s, l = np.concatenate(scores), np.concatenate(labels)
    return roc_auc(s, l), s, l


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="astrid HDF5 files with /training")
    ap.add_argument("--seconds", type=float, default=180.0, help="training wall-time budget")
    ap.add_argument("--max-epochs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-test-auc", type=float, default=None,
                    help="exit 1 when the test ROC AUC is below this (for tests)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)

    data = {s: TripletDataset(args.files, s) for s in SPLITS}
    for s, d in data.items():
        print(f"{s}: {len(d)} triplets ({int(d.labels.sum())} real)")
    if len(data["train"]) == 0:
        sys.exit("no training triplets")
    planes = data["train"][0][0].shape[0]
    model = SmallCnn(planes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    pos = float(data["train"].labels.sum())
    neg = len(data["train"]) - pos
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / max(pos, 1.0)))
    train = DataLoader(data["train"], batch_size=args.batch, shuffle=True)
    val = DataLoader(data["validation"], batch_size=256)
    test = DataLoader(data["test"], batch_size=256)

    t0 = time.monotonic()
    epoch = 0
    while epoch < args.max_epochs and time.monotonic() - t0 < args.seconds:
        total, n = 0.0, 0
        for x, y in train:
            loss = loss_fn(model(augment(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            n += len(y)
            if time.monotonic() - t0 >= args.seconds:
                break
        epoch += 1
        auc, _, _ = evaluate(model, val)
        auc_text = "n/a (one class)" if auc is None else f"{auc:.4f}"
        print(f"epoch {epoch}: loss {total / max(n, 1):.4f}, validation ROC AUC {auc_text}, "
              f"{time.monotonic() - t0:.0f} s", flush=True)

    auc, s, l = evaluate(model, test)
    n_pos, n_neg = int(l.sum()), int(len(l) - l.sum())
    if auc is None:
        print(f"test ROC AUC: undefined ({n_pos} real, {n_neg} bogus/blank in the test split)")
    else:
        print(f"test ROC AUC: {auc:.4f} ({n_pos} real, {n_neg} bogus/blank; {epoch} epochs, "
              f"{time.monotonic() - t0:.0f} s on {args.threads} CPU threads)")
    if args.min_test_auc is not None and (auc is None or auc < args.min_test_auc):
        sys.exit(f"test ROC AUC {auc} is below the required {args.min_test_auc}")


if __name__ == "__main__":
    main()
