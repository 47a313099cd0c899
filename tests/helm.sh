#!/usr/bin/env bash
# Render the Helm chart deploy/helm/gpupool and check what it installs:
#   - `helm lint`, then `helm template` with the default values (exactly the README quick start:
#     release gpupool, namespace gpupool), the IRSA and Workload Identity example values, the
#     Prometheus Operator objects on, and a kube-system install;
#   - every rendering validated against the Kubernetes OpenAPI schemas (kubernetes-validate
#     --strict; the ServiceMonitor / PrometheusRule CRDs have no schema there and are checked by
#     tests/deploy_checks.py, the rendered rules by `promtool check rules`);
#   - tests/deploy_checks.py: RBAC == src/contract.rs with the Lease limited to its own name,
#     hardening, wiring, selectors; the embedded config passes `gpupool check-config`;
#   - a config change changes the pods' checksum/config annotation (pods roll), other changes do
#     not; a lease_namespace out of the Role's reach and a mistyped values key are refused at
#     render time;
#   - one namespace story: the ServiceAccount the chart (default values) and kustomize install is
#     the one terraform/modules/aws-controller-iam trusts by default.
#
# helm and kubectl: tests/k8s_tools.sh (from an npm package; see there).
#
# Env:
#   GPUPOOL_CONTRACT_JSON  path to `gpupool print-contract` output (else it is produced here)
#   GPUPOOL_BIN            gpupool binary (else `cargo run -q --bin gpupool --`)
#   K8S_VERSIONS           Kubernetes versions to validate against (default "1.33.0 1.37.0")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHART=deploy/helm/gpupool
EXAMPLES=deploy/helm/examples
RULES=deploy/prometheus/gpupool-rules.yaml
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}

# shellcheck source=tests/k8s_tools.sh
source tests/k8s_tools.sh
k8s_check_prelude

step "chart's files/gpupool-rules.yaml is deploy/prometheus/gpupool-rules.yaml" \
  cmp -s "$CHART/files/gpupool-rules.yaml" "$RULES"

# `helm lint` prints its findings; [INFO] (no icon) is not a failure, [WARNING]/[ERROR] are.
lint() {
  local out
  out=$("$HELM" lint "$CHART" --namespace gpupool "$@" 2>&1) || { echo "$out"; return 1; }
  if grep -E '\[(WARNING|ERROR)\]' <<<"$out"; then return 1; fi
}
step "helm lint (default values)" lint
for v in "$EXAMPLES"/*-values.yaml; do
  step "helm lint -f $v" lint -f "$v"
done

render() { # out-file, helm template args...
  local out=$1; shift
  "$HELM" template gpupool "$CHART" "$@" >"$out"
}

validate() { # rendered file
  local f=$1 v out rc=0
  for v in $K8S_VERSIONS; do
    if ! out=$(kubernetes-validate --strict --quiet -k "$v" "$f" 2>&1); then
      echo "$out"; rc=1
    fi
    # CRDs are only warned about ("Couldn't find schema"); anything else in the output is a finding.
    if grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\)" <<<"$out" | grep -q .; then
      echo "$out"; rc=1
    fi
  done
  return $rc
}

check_rendering() { # name, rendered file
  local name=$1 f=$2
  step "$name: schemas (Kubernetes $K8S_VERSIONS)" validate "$f"
  step "$name: RBAC, Lease by name, hardening, wiring" \
    python3 tests/deploy_checks.py objects "$contract" "$RULES" "$f" "$tmp/$name.config.yaml"
  step "$name: embedded config passes gpupool check-config" run_gpupool check-config "$tmp/$name.config.yaml"
}

# The README quick start: helm install gpupool deploy/helm/gpupool -n gpupool --create-namespace
step "render default values" render "$tmp/default.yaml" --namespace gpupool
check_rendering default "$tmp/default.yaml"
# `gpupool check-config` reads a ConfigMap manifest as it is (its config.yaml entry).
step "render the ConfigMap alone" render "$tmp/configmap.yaml" --namespace gpupool --show-only templates/configmap.yaml
step "gpupool check-config on the ConfigMap manifest" run_gpupool check-config "$tmp/configmap.yaml"
for v in "$EXAMPLES"/*-values.yaml; do
  name=$(basename "$v" -values.yaml)
  step "render -f $v" render "$tmp/$name.yaml" --namespace gpupool -f "$v"
  check_rendering "$name" "$tmp/$name.yaml"
done
step "render with ServiceMonitor and PrometheusRule" render "$tmp/monitoring.yaml" --namespace gpupool \
  --set serviceMonitor.enabled=true --set prometheusRule.enabled=true
check_rendering monitoring "$tmp/monitoring.yaml"
step "render into kube-system" render "$tmp/kube-system.yaml" --namespace kube-system
check_rendering kube-system "$tmp/kube-system.yaml"

annotation_of() { # rendered file, kind, annotation key (pod template for Deployment)
  python3 - "$@" <<'EOF'
import sys, yaml
f, kind, key = sys.argv[1:4]
for d in yaml.safe_load_all(open(f)):
    if d and d["kind"] == kind:
        meta = d["spec"]["template"]["metadata"] if kind == "Deployment" else d["metadata"]
        print((meta.get("annotations") or {}).get(key, ""))
EOF
}

step "IRSA example: role ARN on the ServiceAccount" \
  grep -q '^arn:aws:iam::[0-9]\{12\}:role/' <(annotation_of "$tmp/eks-irsa.yaml" ServiceAccount eks.amazonaws.com/role-arn)
step "Workload Identity example: Google service account on the ServiceAccount" \
  grep -q 'iam.gserviceaccount.com$' <(annotation_of "$tmp/gke-workload-identity.yaml" ServiceAccount iam.gke.io/gcp-service-account)
step "no ServiceMonitor / PrometheusRule by default" \
  bash -c "! grep -qE '^kind: (ServiceMonitor|PrometheusRule)' '$tmp/default.yaml'"
step "no critical-pods ResourceQuota in kube-system" \
  bash -c "! grep -q '^kind: ResourceQuota' '$tmp/kube-system.yaml'"

# The rendered PrometheusRule's groups are valid Prometheus rules.
python3 - "$tmp/monitoring.yaml" >"$tmp/rendered-rules.yaml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "PrometheusRule":
        print(yaml.safe_dump({"groups": d["spec"]["groups"]}))
EOF
if command -v promtool >/dev/null 2>&1; then
  step "promtool check rules (rendered PrometheusRule)" promtool check rules "$tmp/rendered-rules.yaml"
else
  echo "FAIL promtool not found (Debian package prometheus)"; fail=$((fail + 1))
fi

# A config change rolls the pods; a replica change does not touch the checksum.
checksum() { annotation_of "$1" Deployment checksum/config; }
render "$tmp/cfg2.yaml" --namespace gpupool --set config.tick_interval_s=15
render "$tmp/replicas3.yaml" --namespace gpupool --set replicaCount=3
c1=$(checksum "$tmp/default.yaml"); c2=$(checksum "$tmp/cfg2.yaml"); c3=$(checksum "$tmp/replicas3.yaml")
step "config change changes checksum/config ($c1 -> $c2)" test -n "$c1" -a "$c1" != "$c2"
step "replica change keeps checksum/config" test "$c1" = "$c3"

# The Lease must stay where the Role is.
if out=$("$HELM" template gpupool "$CHART" --namespace gpupool --set config.kubernetes.lease_namespace=other 2>&1); then
  echo "FAIL lease_namespace out of the Role's reach was rendered"; fail=$((fail + 1))
elif grep -q "lease_namespace" <<<"$out"; then
  pass=$((pass + 1)); echo "ok   lease_namespace out of the Role's reach is refused"
else
  echo "$out"; echo "FAIL lease_namespace refusal without a clear message"; fail=$((fail + 1))
fi
# values.schema.json refuses a mistyped key instead of ignoring it.
if out=$("$HELM" template gpupool "$CHART" --namespace gpupool --set serviceaccount.annotations.x=y 2>&1); then
  echo "FAIL a mistyped values key (serviceaccount) was rendered"; fail=$((fail + 1))
elif grep -q "serviceaccount" <<<"$out"; then
  pass=$((pass + 1)); echo "ok   values.schema.json refuses a mistyped key"
else
  echo "$out"; echo "FAIL mistyped key refused without naming it"; fail=$((fail + 1))
fi
# The Role follows a custom lease name.
render "$tmp/lease.yaml" --namespace gpupool --set config.kubernetes.lease_name=my-lease
step "Role limited to a custom config.kubernetes.lease_name" \
  python3 tests/deploy_checks.py objects "$contract" "$RULES" "$tmp/lease.yaml"

# One namespace story: Helm (quick start), kustomize base and overlay, Terraform IAM trust.
"$KUBECTL" kustomize deploy/kubernetes >"$tmp/kustomize-base.yaml"
"$KUBECTL" kustomize deploy/kubernetes/overlays/eks-irsa >"$tmp/kustomize-eks-irsa.yaml"
step "ServiceAccount of Helm, kustomize and the IAM trust policy agree" \
  python3 tests/deploy_checks.py namespace "$tmp/default.yaml" "$tmp/eks-irsa.yaml" \
  "$tmp/kustomize-base.yaml" "$tmp/kustomize-eks-irsa.yaml"

echo "helm: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
