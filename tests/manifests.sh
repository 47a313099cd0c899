#!/usr/bin/env bash
# Check deploy/kubernetes (kustomize) and deploy/prometheus (alert rules):
#   - `kubectl kustomize` renders the base (deploy/kubernetes), the eks-irsa overlay, and the
#     overlay with the prometheus-operator component; each rendering is validated against the
#     Kubernetes OpenAPI schemas (kubernetes-validate --strict) and by tests/deploy_checks.py:
#     RBAC == src/contract.rs KUBE_RBAC with the Lease limited to its own name, hardening,
#     wiring, selectors; the embedded config passes `gpupool check-config`; the ConfigMap name
#     carries the hash of the config (a config change rolls the pods);
#   - the base's kustomization lists every manifest of base/;
#   - the alert rules: `promtool check rules`, `promtool test rules` (deploy/prometheus/
#     gpupool-rules.test.yaml), the kustomize PrometheusRule holds the same groups, and every
#     `reason` a rule matches is one the planner emits (src/model/plan.rs Reason::code). The
#     metric names are checked by a unit test (src/controller/metrics.rs).
#
# kubectl (for `kubectl kustomize`): tests/k8s_tools.sh. promtool: Debian package prometheus.
#
# Env:
#   GPUPOOL_CONTRACT_JSON  path to `gpupool print-contract` output (else it is produced here)
#   GPUPOOL_BIN            gpupool binary (else `cargo run -q --bin gpupool --`)
#   K8S_VERSIONS           versions to validate against (default: "1.33.0 1.37.0", the oldest
#                          and newest the k8s-openapi feature and the tool cover)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=deploy/kubernetes
RULES=deploy/prometheus/gpupool-rules.yaml
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}

# shellcheck source=tests/k8s_tools.sh
source tests/k8s_tools.sh
k8s_check_prelude

validate() { # rendered file
  local f=$1 v out rc=0
  for v in $K8S_VERSIONS; do
    if ! out=$(kubernetes-validate --strict --quiet -k "$v" "$f" 2>&1); then
      echo "$out"; rc=1
    fi
    if grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\)" <<<"$out" | grep -q .; then
      echo "$out"; rc=1
    fi
  done
  return $rc
}

config_name_hashed() { # rendered file: the ConfigMap is gpupool-config-<hash>
  python3 - "$1" <<'EOF'
import re, sys, yaml
names = [d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
ok = len(names) == 1 and re.fullmatch(r"gpupool-config-[a-z0-9]{10}", names[0])
print("" if ok else f"ConfigMap names {names}: expected gpupool-config-<hash> (configMapGenerator)")
sys.exit(0 if ok else 1)
EOF
}

# The overlay plus the optional component, as a user would compose them.
# (kustomize refuses absolute paths: the temporary overlay refers to the repository relatively.)
mkdir -p "$tmp/with-monitoring"
up=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/$DIR" "$tmp/with-monitoring")
cat >"$tmp/with-monitoring/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $up/overlays/eks-irsa
components:
  - $up/components/prometheus-operator
EOF

for target in base:"$DIR" eks-irsa:"$DIR/overlays/eks-irsa" with-monitoring:"$tmp/with-monitoring"; do
  name=${target%%:*}
  path=${target#*:}
  out="$tmp/$name.yaml"
  if ! "$KUBECTL" kustomize "$path" >"$out"; then
    echo "FAIL kubectl kustomize $path"; fail=$((fail + 1)); continue
  fi
  step "$name: kubectl kustomize renders" true
  step "$name: schemas (Kubernetes $K8S_VERSIONS)" validate "$out"
  step "$name: RBAC, Lease by name, hardening, wiring" \
    python3 tests/deploy_checks.py objects "$contract" "$RULES" "$out" "$tmp/$name.config.yaml"
  step "$name: embedded config passes gpupool check-config" run_gpupool check-config "$tmp/$name.config.yaml"
  step "$name: ConfigMap named by the config's hash (config changes roll the pods)" config_name_hashed "$out"
done
step "base: no Prometheus Operator objects" bash -c "! grep -qE '^kind: (ServiceMonitor|PrometheusRule)' '$tmp/base.yaml'"
step "with-monitoring: ServiceMonitor and PrometheusRule" \
  bash -c "grep -q '^kind: ServiceMonitor' '$tmp/with-monitoring.yaml' && grep -q '^kind: PrometheusRule' '$tmp/with-monitoring.yaml'"
step "eks-irsa: IRSA role on the ServiceAccount" grep -q 'eks.amazonaws.com/role-arn: arn:aws:iam::' "$tmp/eks-irsa.yaml"
step "ServiceAccount of kustomize and the IAM trust policy agree" \
  python3 tests/deploy_checks.py namespace "$tmp/base.yaml" "$tmp/eks-irsa.yaml"

# The base's kustomization lists every manifest in base/.
kustomization_complete() {
  python3 - "$DIR/base" <<'EOF'
import glob, os, sys, yaml
d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
files = {os.path.basename(f) for f in glob.glob(os.path.join(d, "*.yaml"))} - {"kustomization.yaml", "config.yaml"}
gen = {f for g in k.get("configMapGenerator", []) for f in g.get("files", [])}
ok = set(k["resources"]) == files and gen == {"config.yaml"}
if not ok:
    print(f"resources {sorted(k['resources'])} != manifests {sorted(files)}, or generator files {sorted(gen)} != ['config.yaml']")
sys.exit(0 if ok else 1)
EOF
}
step "base/kustomization.yaml lists every manifest, config.yaml through the generator" kustomization_complete

# Alert rules.
step "components/prometheus-operator PrometheusRule == $RULES" \
  python3 tests/deploy_checks.py rules-equal "$DIR/components/prometheus-operator/prometheusrule.yaml" "$RULES"
reasons_exist() {
  local r missing=0
  for r in $(grep -o 'reason="[a-z_]*"' "$RULES" | sed 's/reason="\(.*\)"/\1/' | sort -u); do
    if ! grep -q "=> \"$r\"," src/model/plan.rs; then
      echo "rule matches reason=\"$r\", which src/model/plan.rs Reason::code never returns"; missing=1
    fi
  done
  return $missing
}
step "every reason the rules match is a planner reason code" reasons_exist
if command -v promtool >/dev/null 2>&1; then
  step "promtool check rules $RULES" promtool check rules "$RULES"
  # promtool compares annotations too; the unit tests are about when alerts fire, so they run
  # against a copy without annotations (see the test file's header).
  mkdir -p "$tmp/rules"
  python3 - "$RULES" "$tmp/rules/gpupool-rules.yaml" <<'EOF'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
for g in d["groups"]:
    for r in g["rules"]:
        r.pop("annotations", None)
yaml.safe_dump(d, open(sys.argv[2], "w"))
EOF
  cp deploy/prometheus/gpupool-rules.test.yaml "$tmp/rules/"
  step "promtool test rules (each alert fires when it should, not otherwise)" \
    promtool test rules "$tmp/rules/gpupool-rules.test.yaml"
else
  echo "FAIL promtool not found (Debian package prometheus)"; fail=$((fail + 1))
fi

echo "manifests: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
