"""The configuration of every blindfill command: one YAML file per command and one group per
swappable part (``conf/<group>/<choice>.yaml``), composed by Hydra over the typed schemas of
:mod:`conf.schemas` (registered per command, :func:`conf.schemas.register`)."""
