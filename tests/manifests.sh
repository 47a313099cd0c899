#!/usr/bin/env bash
# Validate deploy/kubernetes against the Kubernetes OpenAPI schemas (kubernetes-validate, PyPI),
# and check what a schema cannot: RBAC equals src/contract.rs KUBE_RBAC exactly, the embedded
# config is a valid gpupool config, and the Deployment keeps its hardening.
#
# Env:
#   GPUPOOL_CONTRACT_JSON  path to `gpupool print-contract` output (else it is produced here)
#   GPUPOOL_BIN            gpupool binary (else `cargo run -q --bin gpupool --`)
#   K8S_VERSIONS           versions to validate against (default: "1.33.0 1.37.0", the oldest
#                          and newest the k8s-openapi feature and the tool cover)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=deploy/kubernetes
K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml

fail=0
pass=0
# Skipped on purpose, with the reason:
#  - kustomization.yaml: a kustomize build file, not an API object (checked below instead);
#  - servicemonitor.yaml: a Prometheus Operator CRD; kubernetes-validate has only built-in
#    schemas, so its shape is checked by the Python block below.
for f in "$DIR"/*.yaml; do
  case "$(basename "$f")" in
    kustomization.yaml|servicemonitor.yaml) continue ;;
  esac
  for v in $K8S_VERSIONS; do
    if out=$(kubernetes-validate --strict --quiet -k "$v" "$f" 2>&1); then
      pass=$((pass + 1))
    else
      echo "FAIL $f (Kubernetes $v):"; echo "$out"; fail=$((fail + 1))
    fi
  done
done
echo "schema validation: $pass passed, $fail failed"

run_gpupool() {
  if [[ -n "${GPUPOOL_BIN:-}" ]]; then "$GPUPOOL_BIN" "$@"; else cargo run -q --bin gpupool -- "$@"; fi
}

contract=${GPUPOOL_CONTRACT_JSON:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ -z "$contract" ]]; then
  contract="$tmp/contract.json"
  run_gpupool print-contract >"$contract"
fi

# The ConfigMap's config must load.
python3 - "$DIR/configmap.yaml" >"$tmp/config.yaml" <<'EOF'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["data"]["config.yaml"])
EOF
if run_gpupool check-config "$tmp/config.yaml" >/dev/null; then
  pass=$((pass + 1))
else
  echo "FAIL configmap.yaml: embedded config.yaml does not pass gpupool check-config"; fail=$((fail + 1))
fi

if python3 - "$DIR" "$contract" "$tmp/config.yaml" <<'EOF'
import glob, json, os, sys, yaml
d, contract_path, config_path = sys.argv[1:4]
docs = []
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    for doc in yaml.safe_load_all(open(f)):
        if doc:
            docs.append((os.path.basename(f), doc))
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

by_kind = {}
for f, doc in docs:
    by_kind.setdefault(doc["kind"], []).append(doc)

# kustomization lists every manifest, and only existing ones.
kust = by_kind["Kustomization"][0]
files = {os.path.basename(f) for f in glob.glob(os.path.join(d, "*.yaml"))} - {"kustomization.yaml"}
check(set(kust["resources"]) == files, f"kustomization resources {sorted(kust['resources'])} != files {sorted(files)}")

# RBAC: ClusterRole + Role rules == contract KUBE_RBAC, as (group, resource, verb) triples.
def triples(rules):
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
have = set()
for kind in ("ClusterRole", "Role"):
    for obj in by_kind.get(kind, []):
        check("resourceNames" not in str(obj), f"{kind} {obj['metadata']['name']}: no resourceNames expected")
        have |= triples(obj["rules"])
want = {(r["api_group"], r["resource"], v) for r in json.load(open(contract_path))["kubernetes"]["rbac"] for v in r["verbs"]}
check(have == want, f"RBAC differs from contract: extra {sorted(have - want)}, missing {sorted(want - have)}")
# Leases only through the namespaced Role, in the lease namespace of the config.
cfg = yaml.safe_load(open(config_path))
lease_ns = cfg.get("kubernetes", {}).get("lease_namespace", "kube-system")
for obj in by_kind.get("ClusterRole", []):
    check(not any("leases" in r["resources"] for r in obj["rules"]), "leases belong in the Role, not the ClusterRole")
for obj in by_kind.get("Role", []):
    check(obj["metadata"]["namespace"] == lease_ns, f"Role namespace {obj['metadata']['namespace']} != lease_namespace {lease_ns}")
sa = by_kind["ServiceAccount"][0]["metadata"]
for kind in ("ClusterRoleBinding", "RoleBinding"):
    for b in by_kind[kind]:
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}],
              f"{kind} {b['metadata']['name']} must bind the gpupool ServiceAccount")

# Deployment hardening and wiring.
dep = by_kind["Deployment"][0]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
port = int(cfg.get("metrics", {}).get("listen", "0.0.0.0:8080").rsplit(":", 1)[1])
check(dep["spec"]["replicas"] == 2, "2 replicas (leader + standby)")
check(pod["serviceAccountName"] == sa["name"], "runs as the gpupool ServiceAccount")
check(pod["priorityClassName"] == "system-cluster-critical", "priorityClassName system-cluster-critical")
check(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot")
check(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
sc = c["securityContext"]
check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
check(sc.get("capabilities", {}).get("drop") == ["ALL"], "drop ALL capabilities")
check({"requests", "limits"} <= set(c.get("resources", {})), "resource requests and limits")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(ports.get("http-metrics") == port, f"container port http-metrics == metrics.listen port {port}")
check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
envs = {e["name"] for e in c.get("env", [])}
check("POD_NAME" in envs, "POD_NAME for the lease identity")
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
check(any(v.get("configMap", {}).get("name") == by_kind["ConfigMap"][0]["metadata"]["name"] for v in pod["volumes"]),
      "config mounted from the ConfigMap")
check(f"{[a for a in c['args'] if a.endswith('.yaml')][0].rsplit('/', 1)[0]}" in mounts, "--config path is under a mount")

# PDB, Service and ServiceMonitor select the Deployment's pods and port.
labels = dep["spec"]["template"]["metadata"]["labels"]
def selects(sel):
    return all(labels.get(k) == v for k, v in sel.items())
check(selects(by_kind["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"]), "PDB selects gpupool pods")
svc = by_kind["Service"][0]
check(selects(svc["spec"]["selector"]), "Service selects gpupool pods")
svc_port = svc["spec"]["ports"][0]
check(svc_port["targetPort"] == "http-metrics", "Service targets the metrics port")
sm = by_kind["ServiceMonitor"][0]
check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
      "ServiceMonitor selects the Service")
check(sm["spec"]["endpoints"][0]["port"] == svc_port["name"] and sm["spec"]["endpoints"][0]["path"] == "/metrics",
      "ServiceMonitor scrapes /metrics on the named port")

for e in errors:
    print("FAIL", e)
sys.exit(1 if errors else 0)
EOF
then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
fi

echo "manifests: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
