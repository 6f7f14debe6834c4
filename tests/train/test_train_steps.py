"""The training loop's step: --accum-freq through the trainer (schedule, loader positions, resume
between optimizer steps), losses read on the host only at log and checkpoint steps (a non-finite
one still ends the run before any checkpoint of it), the data-wait warning, --compile, the
fused/foreach optimizer, and uint8 crops normalised on the device as open_clip's transform would."""

from __future__ import annotations

import io
import random

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

import laclip.train.model  # noqa: F401  (registers laclip-tiny)
from laclip.train import checkpoint as ckpt
from laclip.train.config import TrainConfig
from laclip.train.main import main

# crops of the whole image (scale 1): the loader's output does not depend on its random state, so a
# resumed run can be compared weight for weight with one that was never stopped
EXACT = dict(model="laclip-tiny", batch_size=8, accum_freq=2, workers=0, log_every=2, warmup_steps=2,
             shuffle_buffer=32, tensorboard=False, augment="none", crop_scale=(1.0, 1.0), precision="fp32")


def run(store, run_id, **kw) -> int:
    cfg = TrainConfig(run=run_id, root=store.url, **{**EXACT, **kw})
    return main(["--config", cfg.model_dump_json()])


def weights(store, run_id, step):
    return ckpt.load(store, f"checkpoints/{run_id}/step_{step}.pt")


@pytest.mark.slow
def test_a_run_resumed_mid_accumulation_ends_with_the_weights_of_one_never_stopped(demo_copy, capsys):
    """A checkpoint is only written between optimizer steps: a run stopped part-way through the K
    sub-batches of step 3 (only step_2.pt exists then) resumes at the start of step 3 and computes
    its sub-batches again from the same loader positions."""
    assert run(demo_copy, "acc", steps=4, checkpoint_every=2, keep_last=5) == 0
    straight = weights(demo_copy, "acc", 4)
    assert straight["data"]["positions"] == {"0": [0, 4 * 2 * 8]}  # 2 sub-batches of 8 per step
    assert straight["global_batch"] == 16 and straight["total_steps"] == 4
    demo_copy.delete("checkpoints/acc/step_4.pt")
    assert run(demo_copy, "acc", steps=4, checkpoint_every=2, keep_last=5) == 0
    assert "step_2.pt at step 2 of 4" in capsys.readouterr().err
    resumed = weights(demo_copy, "acc", 4)
    assert resumed["data"] == straight["data"]
    for name, value in straight["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][name], value, rtol=1e-5, atol=1e-7), name
    for a, b in zip(resumed["optimizer"]["state"].values(), straight["optimizer"]["state"].values()):
        assert torch.allclose(a["exp_avg"], b["exp_avg"], rtol=1e-5, atol=1e-9)
    # the test can tell runs apart: one more step of the same run moves the weights
    assert run(demo_copy, "acc", steps=5, checkpoint_every=2, keep_last=5) == 0
    moved = weights(demo_copy, "acc", 5)["state_dict"]["visual.conv1.weight"]
    assert not torch.allclose(moved, straight["state_dict"]["visual.conv1.weight"])


def test_the_schedule_counts_samples_per_optimizer_step(demo_copy):
    """512 demo samples, batch 8 x accum 4 = 32 per step: one epoch is 16 optimizer steps."""
    cfg = TrainConfig(run="x", root=demo_copy.url, model="laclip-tiny", batch_size=8, accum_freq=4, epochs=1,
                      warmup_epochs=0.5)
    assert (cfg.total_steps(512, 1), cfg.warmup(512, 1), cfg.step_samples(2)) == (16, 8, 64)


@pytest.mark.slow
def test_a_loss_that_is_not_finite_ends_the_run_before_it_is_checkpointed(demo_copy, capsys):
    """The loss is read on the host only at log and checkpoint steps; the first step whose loss was
    not finite is remembered on the device, so the error still names it, and the checkpoint step
    checks it before writing."""
    assert run(demo_copy, "nan", steps=2, checkpoint_every=2) == 0
    state = weights(demo_copy, "nan", 2)
    state["state_dict"]["logit_scale"] = torch.tensor(float("nan"))
    torch.save(state, demo_copy.local_path("checkpoints/nan/step_2.pt"))
    assert run(demo_copy, "nan", steps=6, checkpoint_every=2, log_every=100) == 1  # retried, not permanent
    assert "error: loss is nan at step 3: lower --lr or check the data" in capsys.readouterr().err
    assert [s for s, _ in ckpt.list_steps(demo_copy, "nan")] == [2]


@pytest.mark.slow
def test_the_data_wait_warning(demo_copy, capsys):
    """Over the threshold after the first log window (which holds the loader's start-up): one
    warning naming the workers; the run's summary carries the fraction either way."""
    assert run(demo_copy, "wait", steps=4, checkpoint_every=4, data_wait_warn=0.0) == 0
    captured = capsys.readouterr()
    assert captured.err.count("the loader kept training waiting") == 1
    assert "give it more --workers (now 0 per process" in captured.err and "data_wait=" in captured.out
    assert run(demo_copy, "nowait", steps=4, checkpoint_every=4, data_wait_warn=1.0) == 0
    assert "the loader kept training waiting" not in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_step_matches_eager():
    """--compile (torch.compile, inductor on CPU) of a small ViT CLIP, with accumulation (a graph
    without autograd and a training one): the eager step's loss and gradients, and the state_dict
    keys open_clip loads (no `_orig_mod.` prefix). The trainer calls the same compile_model."""
    from laclip.train.loss import ClipLoss
    from laclip.train.step import compile_model

    from .accum_worker import data, gradients, split, tiny_vit, worst

    eager, compiled = tiny_vit(), tiny_vit()
    compile_model(compiled)
    parts = split(*data(8), 2)
    loss_e, grads_e = gradients(eager, eager, ClipLoss(), parts)
    loss_c, grads_c = gradients(compiled, compiled, ClipLoss(), parts)
    assert abs(loss_c - loss_e) < 1e-5 and worst(grads_c, grads_e) < 1e-4
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert compiled._compiled_call_impl is not None  # it did compile


def test_optimizer_kernel_follows_the_device_not_the_checkpoint():
    from laclip.train.step import make_optimizer, set_optimizer_impl

    p = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([{"params": [p]}], torch.device("cpu"), 1e-3, (0.9, 0.98), 1e-8)
    assert opt.param_groups[0]["fused"] is True  # torch has a fused AdamW for CPU
    saved = opt.state_dict()
    saved["param_groups"][0].update(fused=False, foreach=True)  # as a run elsewhere may have saved it
    opt.load_state_dict(saved)
    set_optimizer_impl(opt, torch.device("cpu"))
    assert opt.param_groups[0]["fused"] is True and not opt.param_groups[0]["foreach"]
    p.grad = torch.ones(3)
    opt.step()
    assert (p < 1).all()


def test_uint8_crops_normalised_on_the_device_are_open_clips_transform():
    """The loader stops before open_clip's per-sample float conversion; the trainer's batch
    normalisation then gives open_clip's tensor, from the same random crop."""
    from laclip.train.data import normalize, pil_transform

    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    full = open_clip.image_transform(64, is_train=True, mean=mean, std=std, aug_cfg={"scale": (0.5, 1.0)})
    ours = pil_transform(64, mean, std, (0.5, 1.0))
    for seed in range(5):
        torch.manual_seed(seed)
        random.seed(seed)
        expect = full(Image.open(io.BytesIO(buf.getvalue())))
        torch.manual_seed(seed)
        random.seed(seed)
        crop = torch.from_numpy(np.asarray(ours(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))).copy())
        assert crop.dtype == torch.uint8 and crop.shape == (64, 64, 3)
        got = normalize(crop[None], mean, std)[0]
        assert torch.allclose(got, expect, atol=1e-5), (got - expect).abs().max()
