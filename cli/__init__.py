"""The `laclip` command line (typer). Installed as `laclip_cli`; starts without torch."""
