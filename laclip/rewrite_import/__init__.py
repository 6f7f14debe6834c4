"""The rewrite-import stage: rewrites made elsewhere (the LaCLIP paper's released files, or any
line-aligned text files) joined onto a dataset's shards by caption text and written as a rewrite
set in the rewrite stage's own layout (laclip.layout, laclip.rewrite.output), so that
`submit train --rewrites <id>` trains on them.

    config.py   ImportConfig: the stage's one typed config
    release.py  reading the inputs: local, gs://, gzip; CSV or one caption per line; line-aligned
    join.py     caption normalisation, 64-bit text hashes, the join and the choice among duplicates
    importer.py the four passes (shards, release, choice, write) and the run record
    main.py     the container entrypoint (laclip.entrypoint)
"""
