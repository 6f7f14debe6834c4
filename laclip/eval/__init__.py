"""The evaluation stage: zero-shot, few-shot kNN, linear probe and retrieval on frozen checkpoints.

`config` and `results` import without torch (the CLI uses them); the rest runs in the eval image.
"""
