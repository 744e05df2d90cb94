"""Data layer: sources, safe extraction, manifests, near-duplicate grouping and splits."""
