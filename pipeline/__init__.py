"""The whole system: training (``pipeline.train``), joint fine-tuning (``pipeline.joint``),
inference (:class:`BlindInpainter`, ``pipeline.inpaint``), export, evaluation and benchmarks."""


def __getattr__(name: str):
    # Lazy, so `python -m pipeline.<tool>` does not build the inference stack it may not need.
    if name in ("BlindInpainter", "InpaintResult", "InpaintSettings"):
        from pipeline import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = ["BlindInpainter", "InpaintResult", "InpaintSettings"]
