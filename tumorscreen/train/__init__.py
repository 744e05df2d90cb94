"""Training: device and precision, augmentation, the loop and its schedule."""
