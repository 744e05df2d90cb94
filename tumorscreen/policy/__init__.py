"""Clinical decisions on the tumour score: threshold policies and the review band."""
