"""A DCGAN at 64² and Yeh et al.'s latent-search inpainting with it (``stage=dcgan``,
``method=latent_search``)."""
