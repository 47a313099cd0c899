#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, builds once (debug),
# runs every check from that build. `.ci/run` calls exactly this script.
#
#   tests/run.sh            everything
#   GPUPOOL_SKIP_INSTALL=1  don't try to install missing tools (offline laptop)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/debug/gpupool"

passed=0
failed=0
failures=()
stage() { printf '\n==== %s ====\n' "$*"; }
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); failures+=("$1"); echo "FAILED: $1"; }
run_step() { # name, command...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

# ---------------------------------------------------------------------------------------------
stage "install what is missing"
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
if [ "${GPUPOOL_SKIP_INSTALL:-0}" != 1 ]; then
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "installing Debian prometheus"
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
      || echo "warning: could not install prometheus"
    # The package starts a system service; the tests run their own instance on a free port.
    $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
  fi
  need_pip=()
  python3 -c 'import moto, flask' >/dev/null 2>&1 || need_pip+=("moto[server]")
  command -v checkov >/dev/null 2>&1 || need_pip+=("checkov")
  command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=("kubernetes-validate")
  if [ ${#need_pip[@]} -gt 0 ]; then
    echo "installing from PyPI: ${need_pip[*]}"
    python3 -m pip install -q --disable-pip-version-check "${need_pip[@]}" 2>&1 | tail -n 3
  fi
  # checkov ships a fork of python-hcl2 under the same `hcl2` module; installing python-hcl2
  # on top breaks checkov (ImportError: START_LINE). Install python-hcl2 only without checkov.
  python3 -c 'import hcl2' >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check python-hcl2 2>&1 | tail -n 3
fi
for tool in prometheus promtool moto_server checkov kubernetes-validate; do
  command -v "$tool" >/dev/null 2>&1 && echo "have $tool" || echo "missing $tool (its tests will fail)"
done

# ---------------------------------------------------------------------------------------------
stage "format and lints"
run_step "cargo fmt --check" cargo fmt --all -- --check
# The pure core (model, config, planner) names no shell module, clock, randomness, async
# runtime, network or file: tests/purity.rs reads the Rust (use trees, aliases, super::) and
# runs with `cargo test` below; it replaced a grep of src/planner here.

stage "build (debug, all features, once)"
if ! nice cargo build --workspace --all-features --all-targets; then
  bad "cargo build"
  echo "run: $passed passed, $failed failed"
  exit 1
fi
ok "cargo build"
run_step "cargo clippy -D warnings" cargo clippy --workspace --all-features --all-targets -q -- -D warnings

# ---------------------------------------------------------------------------------------------
stage "cargo test (unit, property, integration against moto, Prometheus and fake API servers)"
run_step "cargo test" cargo test --workspace --all-features --no-fail-fast
run_step "fault matrix (tests/faults.sh)" bash tests/faults.sh

# ---------------------------------------------------------------------------------------------
stage "CLI end to end"
CONTRACT="$CARGO_TARGET_DIR/contract.json"
run_step "print-contract" sh -c "'$BIN' print-contract > '$CONTRACT'"
for f in examples/*.yaml; do
  run_step "check-config $f" "$BIN" check-config "$f"
done
if [ -f tests/data/bad-config.yaml ]; then
  out=$("$BIN" check-config tests/data/bad-config.yaml 2>&1); rc=$?
  n=$(printf "%s\n" "$out" | grep -c "^  [a-z_]" || true)
  echo "$out"
  if [ $rc -ne 0 ] && [ "$n" -ge 5 ]; then ok "check-config reports every mistake ($n)"; else bad "check-config on a bad file (rc=$rc, $n messages)"; fi
fi
if [ -d examples/snapshots ]; then
  for s in examples/snapshots/*.json; do
    run_step "plan $s" sh -c "'$BIN' plan --snapshot '$s' --config examples/snapshots/config.yaml > /dev/null"
  done
fi
if "$BIN" simulate --help >/dev/null 2>&1; then
  run_step "simulate quick (tuned baselines)" "$BIN" simulate --scenario quick --tune-baselines --report "$CARGO_TARGET_DIR/sim-report"
fi

# ---------------------------------------------------------------------------------------------
stage "Terraform (checkov + contract) and Kubernetes manifests"
export GPUPOOL_CONTRACT_JSON="$CONTRACT"
[ -f tests/terraform.sh ] && run_step "terraform checks" bash tests/terraform.sh
if command -v terraform >/dev/null 2>&1; then
  # No init/validate (providers cannot be downloaded here); formatting needs none.
  run_step "terraform fmt -check" terraform fmt -check -recursive -diff terraform/
else
  bad "terraform fmt -check (terraform not installed)"
fi
export GPUPOOL_BIN="$BIN"
[ -f tests/manifests.sh ] && run_step "manifest checks (kustomize, alert rules)" bash tests/manifests.sh
[ -f tests/helm.sh ] && run_step "helm chart checks" bash tests/helm.sh

# ---------------------------------------------------------------------------------------------
stage "container image (deploy/Dockerfile replayed; reuses this run's debug dependencies)"
[ -f tests/docker.sh ] && run_step "Dockerfile ships the real binary" bash tests/docker.sh

echo
if [ $failed -gt 0 ]; then
  printf 'failed stage: %s\n' "${failures[@]}"
fi
echo "run: $passed passed, $failed failed"
[ $failed -eq 0 ]
