#!/usr/bin/env bash
# Installs the tools the deployment tests (tests/deploy) use, pinned, into
# ${EMBER_CACHE_DIR:-~/.cache/ember}/tools/<name>-<version>/, and prints where one is:
#
#   scripts/deploy_tools.sh path promtool|prometheus|helm|kubeconform|k8s-schemas|crd-schemas|
#                                podman-compose
#   scripts/deploy_tools.sh install          # all of them
#
# Idempotent: a finished install leaves a .complete marker and is not touched again (a path
# query then costs a stat). Sources, all through the registries this project reaches:
#   prometheus, promtool  Debian 12's prometheus package, unpacked (apt-get download; no service
#                         is installed or started)
#   helm, kubeconform     go install from the Go module proxy
#   podman-compose        PyPI, into its own virtual environment
#   k8s-schemas           Kubernetes' JSON schemas shipped in the PyPI wheel kubernetes-validate,
#                         rewritten for kubeconform (tools/deploy/k8s_schemas.py)
#   crd-schemas           the CRDs of the Gateway API Inference Extension, KEDA and the Prometheus
#                         operator from their Go modules (go mod download), converted to JSON
#                         schemas (tools/deploy/crd_schemas.py); the GIE module also carries the
#                         model-server protocol docs/deploy.md checks ember against
# Nothing downloaded is written into the clone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${EMBER_CACHE_DIR:-$HOME/.cache/ember}/tools"

PROMETHEUS_DEB=2.42.0+ds-5+deb12u1
HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_SCHEMA_VERSION=v1.34.0  # the Kubernetes release the manifests are validated against
GIE_VERSION=v1.6.2
# InferenceObjective left GIE for the llm-d router after v1.2 (GIE's README); that module is
# not on the Go module proxy, so its CRD comes from the last GIE release that ships it.
GIE_OBJECTIVE_VERSION=v1.2.0
KEDA_VERSION=v2.20.2  # v2.21 needs Go 1.27
PROMETHEUS_OPERATOR_VERSION=v0.85.0
PYYAML_VERSION=6.0.2
PODMAN_COMPOSE_VERSION=1.6.0

log() { echo "deploy_tools: $*" >&2; }

# Runs "$2" (a function) to fill a scratch directory, then moves it to $1 with a marker.
install_dir() {
  local dest="$1" fill="$2"
  [[ -f "$dest/.complete" ]] && return 0
  local tmp
  tmp="$(mktemp -d "$tools/.tmp.XXXXXX")"  # left behind only by a failed install
  "$fill" "$tmp"
  touch "$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

go_env() {
  # Module downloads and builds go to the tools cache, never into the clone.
  export GOPATH="$tools/go" GOFLAGS=-modcacherw GOTOOLCHAIN=local
  command -v go >/dev/null || { log "go is required (Debian: golang)"; exit 1; }
}

fill_prometheus() {
  local tmp="$1"
  if ! (cd "$tmp" && apt-get download "prometheus=$PROMETHEUS_DEB" >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download "prometheus=$PROMETHEUS_DEB" >/dev/null)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  mkdir -p "$tmp/bin"
  mv "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$tmp/bin/"
  rm -rf "$tmp/root" "$tmp"/prometheus_*.deb
}

fill_helm() {
  go_env
  GOBIN="$1/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

fill_kubeconform() {
  go_env
  GOBIN="$1/bin" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

fill_k8s_schemas() {
  local tmp="$1"
  python3 -m pip download --quiet --no-deps --dest "$tmp/wheel" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  python3 "$repo/tools/deploy/k8s_schemas.py" "$tmp/wheel"/kubernetes_validate-*.whl \
    "$K8S_SCHEMA_VERSION" "$tmp/schemas"
  rm -rf "$tmp/wheel"
}

module_dir() {
  go_env
  (cd "$tools" && go mod download -json "$1" | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(m["Error"]) if "Error" in m else print(m["Dir"])')
}

fill_crd_schemas() {
  local tmp="$1" gie gie_objective keda promop
  gie="$(module_dir "sigs.k8s.io/gateway-api-inference-extension@$GIE_VERSION")"
  gie_objective="$(module_dir "sigs.k8s.io/gateway-api-inference-extension@$GIE_OBJECTIVE_VERSION")"
  keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
  promop="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
  python3 "$repo/tools/deploy/crd_schemas.py" "$tmp/schemas" \
    "$gie"/config/crd/bases/inference.networking.k8s.io_inferencepools.yaml \
    "$gie_objective"/config/crd/bases/inference.networking.x-k8s.io_inferenceobjectives.yaml \
    "$keda"/config/crd/bases/keda.sh_scaledobjects.yaml \
    "$promop"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
  mkdir -p "$tmp/docs"
  cp "$gie"/docs/proposals/003-model-server-protocol/README.md "$tmp/docs/model-server-protocol.md"
}

fill_podman_compose() {
  python3 -m venv "$1/venv"
  "$1/venv/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION"
  # The venv's own scripts name the scratch path in their #! line; this wrapper survives the move.
  mkdir -p "$1/bin"
  printf '#!/bin/sh\nexec "$(dirname "$0")/../venv/bin/python" -m podman_compose "$@"\n' \
    >"$1/bin/podman-compose"
  chmod +x "$1/bin/podman-compose"
}

# name → directory, filler, file printed by `path`
where() {
  case "$1" in
    prometheus|promtool) echo "$tools/prometheus-${PROMETHEUS_DEB%%+*} fill_prometheus bin/$1" ;;
    helm) echo "$tools/helm-$HELM_VERSION fill_helm bin/helm" ;;
    kubeconform) echo "$tools/kubeconform-$KUBECONFORM_VERSION fill_kubeconform bin/kubeconform" ;;
    k8s-schemas)
      echo "$tools/k8s-schemas-$KUBERNETES_VALIDATE_VERSION-$K8S_SCHEMA_VERSION fill_k8s_schemas schemas" ;;
    crd-schemas)
      echo "$tools/crd-schemas-gie$GIE_VERSION-$GIE_OBJECTIVE_VERSION-keda$KEDA_VERSION-promop$PROMETHEUS_OPERATOR_VERSION fill_crd_schemas schemas" ;;
    podman-compose)
      echo "$tools/podman-compose-$PODMAN_COMPOSE_VERSION fill_podman_compose bin/podman-compose" ;;
    *) log "unknown tool '$1'"; exit 2 ;;
  esac
}

mkdir -p "$tools"
# PyYAML: crd_schemas.py and the tests read YAML (Debian: python3-yaml; here from PyPI).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet "pyyaml==$PYYAML_VERSION"
case "${1:-install}" in
  path)
    read -r dir fill file < <(where "${2:?name}")
    install_dir "$dir" "$fill" >&2
    echo "$dir/$file"
    ;;
  install)
    for name in prometheus helm kubeconform k8s-schemas crd-schemas podman-compose; do
      read -r dir fill file < <(where "$name")
      install_dir "$dir" "$fill" >&2
      log "$name: $dir/$file"
    done
    ;;
  *) log "usage: $0 path NAME | install"; exit 2 ;;
esac
