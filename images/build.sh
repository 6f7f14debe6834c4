#!/usr/bin/env bash
# Build (and push) the laclip images with one tag, the one the CLI uses by default
# (laclip.config.IMAGE_TAG), so `laclip submit` and the images never drift apart.
#
#   LACLIP_REGISTRY=us-docker.pkg.dev/PROJECT/laclip images/build.sh       # build + push all
#   images/build.sh --no-push train eval                                   # build some, here only
#   images/build.sh --dry-run rewrite                                      # print the commands
#   images/build.sh --no-push train -- --build-arg TORCH_INDEX=URL         # more builder arguments
#
# Builds with docker (buildx) where it works, else podman (OCI images in docker format, so that
# SHELL's pipefail holds); LACLIP_BUILDER=docker|podman chooses. Without LACLIP_REGISTRY the
# images are named localhost/laclip/<stage>:<tag> and stay here.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# $LACLIP_IMAGE_TAG overrides the tag here and in the CLI alike.
tag="${LACLIP_IMAGE_TAG:-$(sed -n 's/^IMAGE_TAG = "\([^"]*\)".*/\1/p' "$repo/laclip/config.py")}"
registry="${LACLIP_REGISTRY:-}"
push=1
dry=0
stages=()
extra=()

while [ $# -gt 0 ]; do
  case "$1" in
    --no-push) push=0 ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    rewrite|train|eval) stages+=("$1") ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1 (stages: rewrite train eval; builder arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#stages[@]} -gt 0 ] || stages=(rewrite train eval)

if [ -z "$tag" ]; then
  echo "cannot read IMAGE_TAG from $repo/laclip/config.py" >&2; exit 1
fi
if [ -z "$registry" ]; then
  if [ "$push" -eq 1 ] && [ "$dry" -eq 0 ]; then
    echo "set LACLIP_REGISTRY to push, e.g. us-docker.pkg.dev/PROJECT/laclip (an Artifact Registry" \
      "repository), or build here only with --no-push" >&2
    exit 2
  fi
  registry=localhost/laclip
  push=0
fi

builder="${LACLIP_BUILDER:-}"
if [ -z "$builder" ]; then
  if command -v docker > /dev/null && docker buildx version > /dev/null 2>&1; then builder=docker
  elif command -v podman > /dev/null; then builder=podman
  elif [ "$dry" -eq 1 ]; then builder=docker
  else echo "neither docker (with buildx) nor podman found: install one" >&2; exit 2
  fi
fi
case "$builder" in docker|podman) ;; *) echo "LACLIP_BUILDER=$builder: docker or podman" >&2; exit 2 ;; esac

run() {
  echo "+ $*"
  if [ "$dry" -eq 0 ]; then "$@"; fi
}

for stage in "${stages[@]}"; do
  image="$registry/$stage:$tag"
  # GKE A100 nodes are amd64; build for them even from an arm64 laptop.
  common=(--platform linux/amd64 --file "$here/$stage/Dockerfile" --tag "$image"
          --label "org.opencontainers.image.version=$tag")
  if [ "$builder" = docker ]; then
    output=--push
    [ "$push" -eq 1 ] || output=--load
    run docker buildx build "${common[@]}" ${extra[@]+"${extra[@]}"} "$repo" "$output"
  else
    run podman build --format docker "${common[@]}" ${extra[@]+"${extra[@]}"} "$repo"
    if [ "$push" -eq 1 ]; then run podman push "$image"; fi
  fi
done
if [ "$dry" -eq 1 ]; then
  echo "dry run: nothing built"
elif [ "$push" -eq 1 ]; then
  echo "images tagged $tag in $registry; laclip submit uses them by default (override with --image)"
else
  echo "images built here as $registry/<stage>:$tag (not pushed)"
fi
