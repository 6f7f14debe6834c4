#!/usr/bin/env bash
# `make images-test`: build the rewrite, train and eval images on this machine with podman and no
# registry, then run them as the pods run: user 1000, read-only root, /tmp a tmpfs, no network, the
# store a mounted folder. Runs as root on Debian (CI's kind of machine).
#
# - podman, buildah, runc, mmdebstrap and uidmap come from apt where missing;
# - podman reads a configuration of its own (build/images-test/containers/), not the machine's: runc
#   with the cgroupfs manager (crun 1.8 fails on hybrid cgroups), ulimits within this machine's hard
#   limits (root may lack CAP_SYS_RESOURCE to raise them), and its own storage, kept between runs in
#   $LACLIP_IMAGES_STORAGE (default ~/.cache/laclip/images-test) so a second run reuses the base and
#   the layers; `images/test.sh --fresh` starts from nothing;
# - the bases cannot be pulled here: Debian 12 with Python 3, made by mmdebstrap from apt's mirror,
#   stands in for them under the names the Dockerfiles' FROM lines use, so they build unedited. vLLM
#   cannot be in that stand-in: the rewrite image is built with LACLIP_EXTRA=eda and runs the eda engine;
# - pip inside the builds reaches the package index with this machine's pip configuration and CA bundle.
#
# Runs: each image's entrypoints' --help, the demo data, an eda rewrite of it (rewrite image), a
# 10-step LaCLIP training on those rewrites (train image), a zero-shot eval of its checkpoint (eval image).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
work="$repo/build/images-test"
storage="${LACLIP_IMAGES_STORAGE:-${XDG_CACHE_HOME:-$HOME/.cache}/laclip/images-test}"
tag="$(sed -n 's/^IMAGE_TAG = "\([^"]*\)".*/\1/p' "$repo/laclip/config.py")"  # as images/build.sh names them
state=/run/laclip-images-test  # podman's run-time state: a tmpfs, gone at reboot as podman expects
fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (--fresh)" >&2; exit 2 ;;
  esac
done

start=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - start)); }
fail() { echo "images-test: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "runs as root (rootful podman, apt for the tools)"

step "tools"
missing=()
for tool in podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap newuidmap:uidmap; do
  command -v "${tool%%:*}" > /dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
podman --version

step "configuration ($work/containers) and storage ($storage)"
conf="$work/containers"
mkdir -p "$conf" "$state"
# Each limit within the hard one (no raising without CAP_SYS_RESOURCE) and within what podman keeps
# for itself (it lowers its own nproc to 32768; conmon and the container start below that).
limit() { local v; v="$(ulimit -H "$1")"; [ "$v" = unlimited ] || [ "$v" -gt "$2" ] && v=$2; echo "$v"; }
nofile=$(limit -n 1048576) nproc=$(limit -u 32768)
cat > "$conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$state/libpod"
EOF
cat > "$conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$storage"
runroot = "$state/storage"
EOF
cat > "$conf/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$conf/containers.conf" CONTAINERS_STORAGE_CONF="$conf/storage.conf" \
  CONTAINERS_REGISTRIES_CONF="$conf/registries.conf"
if [ "$fresh" -eq 1 ]; then podman system reset --force > /dev/null; fi
mkdir -p "$storage"

df -h "$storage" | tail -1
avail=$(df -Pk "$storage" | awk 'NR == 2 {print $4}')
# Committing a layer holds it three times at once (the build container, the layer's tar, the new
# layer): the torch layer (about 6 GB) needs about 20 GB at its peak; a rebuild of the code, little.
need=20
podman image exists "localhost/laclip/train:$tag" && need=6
[ "$avail" -ge $((need * 1024 * 1024)) ] || fail "needs about $need GB free under $storage, has $((avail / 1024 / 1024)) GB"

# Where a short name such as python:3.11 lives in the storage: docker.io/library/python:3.11.
qualified() {
  local name=$1 first=${1%%/*}
  if [[ "$name" != */* ]]; then echo "docker.io/library/$name"
  elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then echo "$name"
  else echo "docker.io/$name"; fi
}
from_of() { sed -n 's/^FROM \([^ ]*\).*/\1/p' "$here/$1/Dockerfile"; }
base=$(from_of train)
[ "$(from_of eval)" = "$base" ] || fail "the train and eval images must share a base (train: $base, eval: $(from_of eval))"
vllm_base=$(from_of rewrite)
suite=${base##*-}  # python:3.11.13-slim-bookworm: Debian bookworm

step "stand-in base for $base and $vllm_base (Debian $suite)"
if podman image exists "$(qualified "$base")"; then
  echo "reusing the stand-in base"
else
  # The machine's Debian mirror for this suite, its updates and security fixes, as apt uses it.
  mirrors=()
  while read -r uri release component; do
    mirrors+=("deb $uri $release $component")
  done < <(apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(COMPONENT)' \
             | awk -v s="$suite" '$1 == "deb" && ($3 == s || $3 == s "-updates" || $3 == s "-security") {print $2, $3, $4}' \
             | sort -u)
  [ ${#mirrors[@]} -gt 0 ] || echo "no $suite source in apt's lists: mmdebstrap uses deb.debian.org"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates --format=tar \
    "$suite" "$work/rootfs.tar" ${mirrors[@]+"${mirrors[@]}"}
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL dev.laclip.stand-in=\"Debian $suite + python3 from mmdebstrap, for make images-test\"" \
    "$work/rootfs.tar" "$(qualified "$base")" > /dev/null
  rm -f "$work/rootfs.tar"
fi
podman tag "$(qualified "$base")" "$(qualified "$vllm_base")"
podman run --rm "$(qualified "$base")" python3 --version

step "pip configuration for the builds"
# This machine's pip settings (files and PIP_* variables, as `pip config list` merges them) in one
# file, mounted with every local path they name and the CA bundle; only RUN steps see them.
mounts=()
pip_python=python3
[ -x "$repo/.venv/bin/python" ] && pip_python="$repo/.venv/bin/python"
"$pip_python" -m pip config list 2> /dev/null > "$work/pip-config.txt" || : > "$work/pip-config.txt"
while read -r path; do
  mounts+=(--volume "$path:$path:ro")
done < <(python3 - "$work/pip-config.txt" "$work/pip.conf" <<'EOF'
import os, re, shlex, sys

keys, paths = {}, set()
for line in open(sys.argv[1]):
    m = re.match(r"([^.]*)\.([^=]+)=(.*)$", line.strip())
    if not m or m.group(2) in ("user", "target", "prefix", "root", "src", "cache-dir"):
        continue
    value = shlex.split(m.group(3))[0] if m.group(3) else ""
    keys[m.group(2)] = value  # later sources (environment) override earlier ones, as in pip
    for token in value.split():
        path = token[len("file://"):] if token.startswith("file://") else token
        if path.startswith("/") and os.path.exists(path):
            path = os.path.normpath(path)
            # a file:// index (".../simple") links its files relatively, beside it: mount its parent
            paths.add(os.path.dirname(path) if token.startswith("file://") and os.path.isdir(path) else path)
bundle = "/etc/ssl/certs/ca-certificates.crt"
if os.path.isfile(bundle):
    keys.setdefault("cert", bundle)
    paths.add(bundle)
with open(sys.argv[2], "w") as f:
    f.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(keys.items())))
paths.add(sys.argv[2])
for p in sorted(paths):  # a path under another mounted one needs no mount of its own
    if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths):
        print(p)
EOF
)
mounts+=(--volume "$work/pip.conf:/etc/pip.conf:ro")
sed 's/^/  /' "$work/pip.conf"

build=(--pull=never --network host "${mounts[@]}")
export LACLIP_BUILDER=podman
unset LACLIP_REGISTRY LACLIP_IMAGE_TAG

step "build train and eval"
"$here/build.sh" --no-push train eval -- "${build[@]}"
step "build rewrite (LACLIP_EXTRA=eda on the stand-in base)"
"$here/build.sh" --no-push rewrite -- --build-arg LACLIP_EXTRA=eda "${build[@]}"
podman image prune --force > /dev/null  # what earlier runs built and these replaced

image() { echo "localhost/laclip/$1:$tag"; }
store="$work/store"
rm -rf "$store"
mkdir -p "$store"
chown 1000:1000 "$store"
# As a pod runs: non-root, read-only root, /tmp and /dev/shm writable, no network, no capabilities.
pod() {
  local stage=$1; shift
  podman run --rm --read-only --tmpfs /tmp:rw,mode=1777 --shm-size 1g --network none --user 1000:1000 \
    --cap-drop all --security-opt no-new-privileges --volume "$store:/store" --env LACLIP_ROOT=/store \
    "$(image "$stage")" "$@"
}

step "entrypoints"
pins=$(grep -E '^[a-z]' "$here/torch.txt" | tr '\n' ' ')
for stage in rewrite train eval; do
  pod "$stage" > /dev/null  # the image's CMD: laclip --help
  pod "$stage" python -m "laclip.$stage.main" --help > /dev/null
  where=$(pod "$stage" python -c 'import laclip, laclip_cli; print(laclip.__file__, laclip_cli.__file__)')
  [[ "$where" == /opt/venv/lib/*/site-packages/laclip/__init__.py\ /opt/venv/lib/*/site-packages/laclip_cli/* ]] \
    || fail "$stage: laclip imported from $where, not the installed package"
  echo "$stage: laclip --help, python -m laclip.$stage.main --help; laclip from ${where%% *}"
done
for stage in train eval; do
  have=$(pod "$stage" python -c 'from importlib.metadata import version as v; print(*(f"{p}=={v(p)}" for p in ("torch", "torchvision")), "")')
  [ "$have" = "$pins" ] || fail "$stage image runs $have; images/torch.txt pins $pins"
  echo "$stage: $have"
done

step "demo data (train image)"
pod train laclip data synth

step "eda rewrite (rewrite image)"
pod rewrite laclip submit rewrite --local --dataset demo --engine eda --rewrite-id images-test \
  2>&1 | tee "$work/rewrite.log"
grep -q "cannot run here" "$work/rewrite.log" && fail "the rewrite image runs eda without WordNet"

step "10-step LaCLIP training on those rewrites (train image)"
pod train laclip submit train --local --dataset demo --rewrites images-test --steps 10 --warmup-steps 2 --log-every 2 \
  --run images-test 2>&1 | tee "$work/train.log"
[ -f "$store/checkpoints/images-test/step_10.pt" ] || fail "no checkpoint step_10.pt"

step "zero-shot eval of step_10 (eval image)"
pod eval laclip submit eval --local --checkpoint images-test/step_10 --datasets demo-eval --tasks zeroshot \
  2>&1 | tee "$work/eval.log"
result=$(find "$store/evals/images-test/step_10" -name 'zeroshot_classification-*.json' | head -1)
[ -n "$result" ] || fail "no zero-shot result in the store"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))["metrics"]
print("zero-shot on demo-eval, read back from the store: top-1 %.1f %%, top-5 %.1f %% (chance 12.5 %%)"
      % (100 * m["acc1"], 100 * m["acc5"]))' "$result"

step "images"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -v '<none>'
echo "storage on disk (layers shared between the images): $(du -sxh "$storage" | cut -f1)"
echo "images-test passed in $((SECONDS - start)) s; inspect with CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman images"
