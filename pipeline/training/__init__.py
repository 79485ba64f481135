"""Training (``python -m pipeline.train``): one stage's run (:mod:`~pipeline.training.stage`), the
chain mpn → epn → ipn → joint (:mod:`~pipeline.training.chain`), the joint fine-tune
(:mod:`~pipeline.training.joint`) and the selection of what ships (:mod:`~pipeline.training.selection`)."""
