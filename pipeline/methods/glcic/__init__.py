"""Iizuka et al.'s GLCIC (SIGGRAPH 2017) and the parallel CNN + attention network, trained by one
stage against GLCIC's global + local discriminator (``stage=glcic``, ``stage/generator=``):
``method=glcic`` and ``method=parallel_attention``."""
