"""Liu et al.'s partial-convolution U-Net (ECCV 2018): ``model.py`` the network, ``module.py`` its
training stage (``stage=pconv``) and ``method=pconv``."""
