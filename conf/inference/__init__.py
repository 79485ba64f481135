"""Configs of the inference tools (pipeline.inpaint, pipeline.export). They live apart from the
training configs so that their keys (``mask=``) are not taken for the training config groups."""
