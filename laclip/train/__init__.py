"""The training stage: LaCLIP text augmentation on open_clip, elastic DDP under torchrun.

config (TrainConfig, presets; no torch), data (streaming loader joining rewrites by key),
model (open_clip models, registers laclip-tiny), loss, checkpoint, logs, main (entrypoint).
"""
