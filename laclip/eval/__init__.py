"""The evaluation stage: zero-shot, few-shot kNN, linear probe and retrieval on frozen checkpoints.

Each task is a spec in one registry (laclip.eval.tasks). `config`, `tasks`, `results`, `records`,
`outcomes`, `comparison` and `paper` import without torch (the CLI uses them); the rest runs in the
eval image.
"""
