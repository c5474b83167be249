"""Inference with a trained student: the predictor, ``predict``, run evaluation and ``refine``.

Nothing here imports torch at module import time except :mod:`weakseg.inference.predictor`, so the
student teacher (:mod:`weakseg.inference.teacher`) can be registered without slowing the CLI down.
"""
