"""Inference throughput of Lite0 with and without BatchNorm folded into the convolutions.

Usage: python -m benchmarks.inference [--images 320] [--repeats 3]
predict_logits on random 224-px uint8 images, fp32, channels-last as the real_cpu profile
runs it, at the training batch (32) and twice it, against the same network unfolded
(eval mode). The two are interleaved and the median of the repeats is kept. Writes
benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import time
from unittest import mock

import numpy as np
import torch

from benchmarks.workspace import PROJECT
from tumorscreen.models import predict
from tumorscreen.models.backbones import LITE0, build_network
from tumorscreen.records import machine_record, write_json

RESULT = PROJECT / "benchmarks" / "results" / "inference.json"
CPU = torch.device("cpu")


def images_per_second(model: torch.nn.Module, images: np.ndarray, batch_size: int,
                      folded: bool) -> float:
    start = time.perf_counter()
    if folded:
        logits = predict.predict_logits(model, images, CPU, "fp32", batch_size, True)
    else:  # the same call with folding replaced by a plain eval-mode copy
        with mock.patch.object(predict, "inference_copy", lambda m, precision: m.eval()):
            logits = predict.predict_logits(model, images, CPU, "fp32", batch_size, True)
    assert logits.shape == (len(images), 4)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = build_network(LITE0, 4, pretrained=True)
    images = np.random.default_rng(0).integers(0, 256, (args.images, 224, 224), np.uint8)
    images_per_second(model, images[:64], 32, True)  # warm-up: allocator and kernels
    results: dict = {"machine": {**machine_record(), "torch_threads": torch.get_num_threads()},
                     "images": args.images, "repeats": args.repeats, "batches": {}}
    for batch_size in (32, 64):
        runs: dict[str, list[float]] = {"unfolded": [], "folded": []}
        for _ in range(args.repeats):
            for name in runs:
                runs[name].append(images_per_second(model, images, batch_size,
                                                    name == "folded"))
        medians = {name: round(float(np.median(values)), 1) for name, values in runs.items()}
        results["batches"][str(batch_size)] = {
            "images_per_s": medians, "speedup": round(medians["folded"] / medians["unfolded"], 2)}
    write_json(RESULT, results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
