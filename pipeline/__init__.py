"""The whole system: the blind pipeline (:class:`BlindPipeline`, ``pipeline.model``), training
(``pipeline.train``, ``pipeline.training.joint``), inference (:class:`BlindInpainter`, ``pipeline.inpaint``),
export, evaluation and benchmarks."""


def __getattr__(name: str):
    # Lazy, so `python -m pipeline.<tool>` does not build the inference stack it may not need.
    if name in ("BlindInpainter", "InpaintResult", "InpaintSettings"):
        from pipeline.inference import inpainter

        return getattr(inpainter, name)
    if name in ("BlindPipeline", "load_pipeline"):
        from pipeline import model

        return getattr(model, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = ["BlindInpainter", "BlindPipeline", "InpaintResult", "InpaintSettings", "load_pipeline"]
