"""Edge prediction network (EPN): EdgeConnect-style edge generator and 70×70 PatchGAN."""
