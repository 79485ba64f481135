"""The CIFAR-scale inpainting GAN of the user's paper (``stage=cifar_gan``, ``method=cifar_gan``)."""
