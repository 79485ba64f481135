"""Building blocks shared by the stages and the commands: errors, the command machinery, configs,
ops, layers, losses, metrics, checkpoints."""
