"""The stages, one module each (its curated flags and what the driver, laclip_cli.stage, needs beyond
the config, renderer and entrypoint that live below cli/), in one registry in pipeline order:
`laclip submit` offers those it submits, `laclip status` orders a run's stages by it, and `logs`
and `cancel` take its components for --stage."""

from laclip_cli.stages import eval as eval_stage
from laclip_cli.stages import fetch, rewrite, rewrite_import, train

STAGES = (rewrite_import.STAGE, rewrite.STAGE, train.STAGE, eval_stage.STAGE, fetch.STAGE)
COMPONENTS = tuple(s.label for s in STAGES)  # the app.kubernetes.io/component of their objects
