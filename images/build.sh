#!/usr/bin/env bash
# Build and push every laclip image with one tag, the one the CLI uses by default
# (laclip.config.IMAGE_TAG), so `laclip submit` and the images never drift apart.
#
#   LACLIP_REGISTRY=us-docker.pkg.dev/PROJECT/laclip images/build.sh            # build + push all
#   images/build.sh --dry-run rewrite                                           # print the commands
#   images/build.sh --no-push train eval                                        # build some, locally
#
# Needs docker with buildx (or Cloud Build: `gcloud builds submit` runs the same commands).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# $LACLIP_IMAGE_TAG overrides the tag here and in the CLI alike.
tag="${LACLIP_IMAGE_TAG:-$(sed -n 's/^IMAGE_TAG = "\([^"]*\)".*/\1/p' "$repo/laclip/config.py")}"
registry="${LACLIP_REGISTRY:-}"
push=1
dry=0
stages=()

for arg in "$@"; do
  case "$arg" in
    --no-push) push=0 ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    rewrite|train|eval) stages+=("$arg") ;;
    *) echo "unknown argument: $arg (stages: rewrite train eval)" >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || stages=(rewrite train eval)

if [ -z "$tag" ]; then
  echo "cannot read IMAGE_TAG from $repo/laclip/config.py" >&2; exit 1
fi
if [ -z "$registry" ]; then
  echo "set LACLIP_REGISTRY, e.g. us-docker.pkg.dev/PROJECT/laclip (an Artifact Registry repository)" >&2
  exit 2
fi

run() {
  echo "+ $*"
  if [ "$dry" -eq 0 ]; then "$@"; fi
}

for stage in "${stages[@]}"; do
  image="$registry/$stage:$tag"
  output=--push
  [ "$push" -eq 1 ] || output=--load
  # GKE A100 nodes are amd64; build for them even from an arm64 laptop.
  run docker buildx build --platform linux/amd64 --file "$here/$stage/Dockerfile" --tag "$image" \
    --label "org.opencontainers.image.version=$tag" "$repo" "$output"
done
echo "images tagged $tag in $registry; laclip submit uses them by default (override with --image)"
