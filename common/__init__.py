"""Building blocks shared by the stages, and the environment fix for torchvision (torchvision_fix)."""
