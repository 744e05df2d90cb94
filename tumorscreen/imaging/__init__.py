"""Imaging: decoding, QC measures and (later) the one preprocess()."""
