"""Hydra configs, one group per swappable part. Installed as a package so `pkg://conf` finds them."""
