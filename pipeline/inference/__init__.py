"""Inference: :class:`~pipeline.inference.inpainter.BlindInpainter` (any photo, any size: the
decision whole photo / downscaled / crops is made there, the arithmetic of large photos in
:mod:`~pipeline.inference.large`), many photos from files (:mod:`~pipeline.inference.batch`),
encoding the results (:mod:`~pipeline.inference.encode`) and the ONNX Runtime backend
(:mod:`~pipeline.inference.onnx`)."""
