"""Explanations of the model's answers: Grad-CAM, the brain focus score, error analysis."""
