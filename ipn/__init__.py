"""Inpainting network (IPN): DeepFill-v2-style gated convolutions, contextual attention, SN-PatchGAN."""
