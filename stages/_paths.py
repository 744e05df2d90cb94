"""Output locations shared by more than one stage."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data/preprocessed")
# the external matrix's models: checkpoint folder and the JSON holding its temperature
SITE_MODELS = {"base": (Path("models/base"), Path("models/calibration.json")),
               "finetuned": (Path("models/finetuned"), Path("models/finetuned/calibration.json"))}
THRESHOLDS = Path("models/threshold.json")
