"""Renderers: typed job configs in, Kubernetes / TorchX objects (plain dicts) out.

Pure functions, no cluster access and no torch imports. Installed as `laclip_jobs`.
"""
