"""`python -m bench._openclip_peer ARGS`: open_clip_train.main with laclip-tiny registered and the
webdataset 1.x end-of-shard marker dropped (see _train_common.patch_open_clip_train)."""

import sys

if __name__ == "__main__":
    import laclip.train.model  # noqa: F401  (registers laclip-tiny with open_clip)
    from bench._train_common import patch_open_clip_train

    patch_open_clip_train()
    from open_clip_train.main import main

    main(sys.argv[1:])
