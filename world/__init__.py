"""SceneKV's synthetic world: rendered videos with exact ground truth, and the world model trained on them.

Nothing in the product imports this package (only the CLI, tests and benchmarks do); it may import
the core, ingest, vlm, memory and qa (qa and vlm hold the prompt layout the world model is trained in).

- ``truth.py``: a world timeline drawn from a seed, its JSON sidecar; ``render.py``: to x264 MP4.
- ``grading.py``: what graders of answers about a world video share.
- ``cut_video.py``: test videos with hard cuts at given times and frame numbers drawn in (not the
  world: moving patterns, for ingest and memory tests).
- ``transitions.py``: clips with cuts, fades, dissolves, wipes and flashes at known times (scene-cut
  tests and ``bench/scenes.py``).
- ``train.py``: ``scenekv train-world`` over ``recipe.py``, ``data.py``, ``model.py``,
  ``vision_stage.py``, ``questions.py``, ``language_stage.py`` and ``card.py``.
"""
