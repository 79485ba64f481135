"""Mask prediction network (MPN): a U-Net predicting the continuous mask m̂ of a corrupted image."""
