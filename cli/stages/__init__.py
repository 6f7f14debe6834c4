"""The stages `laclip submit` offers, one module each: its curated flags and what the driver
(laclip_cli.stage) needs beyond the config, renderer and entrypoint that live below cli/."""
