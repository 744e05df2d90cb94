"""TumorScreen: a reproducible brain-tumour MRI classification pipeline."""

__version__ = "0.1.0"
