"""Maps the repository folders to import names that cannot collide: cli/ -> laclip_cli, jobs/ -> laclip_jobs."""

from setuptools import find_namespace_packages, find_packages, setup

MAPPED = {"laclip_cli": "cli", "laclip_jobs": "jobs"}

# Namespace packages too: laclip/eval/data and laclip/rewrite/metapairs hold data files only.
packages = find_namespace_packages(include=["laclip", "laclip.*"], exclude=["*.__pycache__"])
for name, folder in MAPPED.items():
    packages += [name + sub[len(folder):] for sub in find_packages(include=[folder, folder + ".*"])]

setup(packages=packages, package_dir=MAPPED)
