"""Where val images sit among the training images, in features no training has shaped.

Usage: python -m benchmarks.neighbours --workdir DIR --ids ID [ID ...] [--k 10 25 100]
                                       [--result FILE]
DIR is a ``benchmarks.train`` workspace. Its train and val images are embedded by the
workspace's backbone as initialised from ImageNet (the pooled features, before any
fine-tuning), so a neighbourhood says what the training data holds near an image, not what
a trained network learned: in a trained network's own features the neighbours mostly echo
its call. For each named val image (ids as in the manifests, e.g. from ``compare_val``'s
``worst_images``): the class counts among its k nearest training images and its ten
nearest, with ids. For the whole val split: per val class, the mean share of the k nearest
training images with the same tumour-or-healthy status. Reads no test images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tumorscreen.explain.neighbours import nearest_neighbours, neighbour_label_counts
from tumorscreen.models.backbones import build_network
from tumorscreen.models.predict import pooled_features
from tumorscreen.models.score import CLASSES, NO_TUMOR
from tumorscreen.records import machine_record, write_json
from tumorscreen.train.data import labelled_split
from tumorscreen.train.device import resolve_device

LISTED = 10


def same_status_share(counts: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """(Q, K) neighbour class counts of queries with (Q,) int labels -> per class present,
    the mean share of neighbours on the query's side of tumour vs healthy."""
    healthy = counts[:, NO_TUMOR] / counts.sum(axis=1)
    same = np.where(labels == NO_TUMOR, healthy, 1.0 - healthy)
    return {CLASSES[c]: round(float(same[labels == c].mean()), 3)
            for c in range(len(CLASSES)) if np.any(labels == c)}


def neighbours(workdir: Path, ids: list[str], ks: list[int]) -> dict[str, Any]:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    root = workdir / "data" / "preprocessed"
    train, val = labelled_split(root, "train"), labelled_split(root, "val")
    row_of = {image_id: row for row, image_id in enumerate(val.manifest["id"])}
    missing = sorted(set(ids) - row_of.keys())
    if missing:
        raise SystemExit(f"not in {workdir}'s val split: {missing}")
    network, init = build_network(params["model"]["backbone"], len(CLASSES), pretrained=True)
    if not init.startswith("ImageNet"):
        raise SystemExit(f"no ImageNet features to embed with: {init}")
    device = resolve_device("cpu")
    features = {name: pooled_features(network, split.images, device, "fp32")
                for name, split in (("train", train), ("val", val))}
    order, similarity = nearest_neighbours(features["val"], features["train"], max(ks))
    counts = {k: neighbour_label_counts(order[:, :k], train.labels, len(CLASSES)) for k in ks}
    named = []
    for image_id in ids:
        row = row_of[image_id]
        named.append({
            "id": image_id, "label": CLASSES[val.labels[row]],
            "class_counts": {str(k): dict(zip(CLASSES, counts[k][row].tolist(), strict=True))
                             for k in ks},
            "nearest": [{"id": train.manifest["id"][j], "label": CLASSES[train.labels[j]],
                         "similarity": round(float(s), 4)}
                        for j, s in zip(order[row, :LISTED], similarity[row, :LISTED],
                                        strict=True)]})
    return {"features": f"{params['model']['backbone']} pooled features, {init}",
            "train_images": len(train), "val_images": len(val), "named": named,
            "val_same_status_share": {str(k): same_status_share(counts[k], val.labels)
                                      for k in ks},
            "machine": machine_record()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--ids", nargs="+", required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--result", type=Path, default=None)
    args = parser.parse_args()
    result = neighbours(args.workdir, args.ids, args.k)
    if args.result:
        write_json(args.result, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
