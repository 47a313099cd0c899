#!/usr/bin/env python3
"""What a schema cannot check in gpupool's rendered Kubernetes manifests (Helm chart, kustomize).

Used by tests/manifests.sh (kustomize) and tests/helm.sh (Helm):

  deploy_checks.py objects CONTRACT_JSON RULES_YAML RENDERED.yaml [CONFIG_OUT]
      one rendered installation (kustomize build or helm template output): RBAC == the contract
      (src/contract.rs KUBE_RBAC) with the Lease limited to gpupool's own name, bindings, the
      Deployment's hardening and wiring, Service/PDB/ServiceMonitor selectors, the
      PrometheusRule == the plain rules file, the critical-pods quota. Writes the embedded
      gpupool config to CONFIG_OUT (for `gpupool check-config`).

  deploy_checks.py namespace RENDERED.yaml...
      one namespace story: every rendering's ServiceAccount (namespace, name) equals the
      defaults of terraform/modules/aws-controller-iam (the IRSA trust policy's
      system:serviceaccount:NS:NAME) and of the EKS example.

  deploy_checks.py rules-equal A.yaml B.yaml
      two rules files (or a PrometheusRule) hold the same groups.

Prints "ok"/"FAIL" lines; exits 1 on any failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
errors: list[str] = []


def check(cond: bool, msg: str) -> None:
    if not cond:
        errors.append(msg)


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def rule_groups(doc: dict) -> list:
    """Groups of a plain rules file or of a PrometheusRule."""
    if doc.get("kind") == "PrometheusRule":
        return doc["spec"]["groups"]
    return doc["groups"]


def finish(what: str) -> int:
    for e in errors:
        print(f"FAIL {what}: {e}")
    if not errors:
        print(f"ok   {what}")
    return 1 if errors else 0


# ---------------------------------------------------------------------------------------------

def cmd_objects(contract_path: str, rules_path: str, rendered: str, config_out: str | None) -> int:
    docs = load_docs(rendered)
    kinds = by_kind(docs)
    for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
              "Deployment", "Service", "PodDisruptionBudget"):
        check(len(kinds.get(k, [])) == 1, f"expected exactly one {k}, found {len(kinds.get(k, []))}")
    if errors:
        return finish(rendered)

    sa = kinds["ServiceAccount"][0]["metadata"]
    ns = sa["namespace"]
    cm = kinds["ConfigMap"][0]
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    if config_out:
        Path(config_out).write_text(cm["data"]["config.yaml"], encoding="utf-8")
    kube_cfg = cfg.get("kubernetes") or {}
    lease_name = kube_cfg.get("lease_name", "gpupool-leader")
    check(kube_cfg.get("lease_namespace") in (None, "kube-system", ns),
          f"config kubernetes.lease_namespace {kube_cfg.get('lease_namespace')!r} is not the controller's namespace {ns!r}")

    # RBAC == contract, as (group, resource, verb) triples; the Lease only in the Role.
    def triples(rules):
        return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}

    cr, role = kinds["ClusterRole"][0], kinds["Role"][0]
    have = triples(cr["rules"]) | triples(role["rules"])
    contract = json.load(open(contract_path, encoding="utf-8"))
    want = {(r["api_group"], r["resource"], v) for r in contract["kubernetes"]["rbac"] for v in r["verbs"]}
    check(have == want, f"RBAC differs from the contract: extra {sorted(have - want)}, missing {sorted(want - have)}")
    check(not any("leases" in r["resources"] for r in cr["rules"]), "leases belong in the Role, not the ClusterRole")
    check(not any("configmaps" in r["resources"] for r in cr["rules"]), "configmaps belong in the Role, not the ClusterRole")
    check(not any("resourceNames" in r for r in cr["rules"]), "ClusterRole: no resourceNames expected")
    check(role["metadata"]["namespace"] == ns, f"Role namespace {role['metadata']['namespace']} != controller namespace {ns}")
    for r in role["rules"]:
        names = r.get("resourceNames")
        if "create" in r["verbs"]:
            # Kubernetes ignores resourceNames for create (the name is unknown at authorization).
            check(names is None and r["verbs"] == ["create"], f"Role: create must stand alone, without resourceNames: {r}")
        elif "configmaps" in r["resources"]:
            # The status ConfigMap is only merge-patched; the state ConfigMap only read and replaced.
            want_cm = {("patch",): "gpupool-status", ("get", "update"): "gpupool-state"}.get(tuple(sorted(r["verbs"])))
            check(want_cm is not None and names == [want_cm],
                  f"Role: {r['verbs']} on configmaps must be patch of ['gpupool-status'] or get/update of "
                  f"['gpupool-state'] by resourceNames, is {names}")
        else:
            check(names == [lease_name], f"Role: {r['verbs']} on leases must be limited to resourceNames [{lease_name!r}], is {names}")
    for b in kinds["ClusterRoleBinding"] + kinds["RoleBinding"]:
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": ns}],
              f"{b['kind']} {b['metadata']['name']} must bind the gpupool ServiceAccount {ns}/{sa['name']}")
    check(kinds["ClusterRoleBinding"][0]["roleRef"]["name"] == cr["metadata"]["name"], "ClusterRoleBinding -> ClusterRole")
    check(kinds["RoleBinding"][0]["roleRef"]["name"] == role["metadata"]["name"], "RoleBinding -> Role")

    # Deployment hardening and wiring.
    dep = kinds["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    port = int(str((cfg.get("metrics") or {}).get("listen", "0.0.0.0:8080")).rsplit(":", 1)[1])
    check(dep["metadata"]["namespace"] == ns, "Deployment in the ServiceAccount's namespace")
    check(dep["spec"]["replicas"] >= 2, "at least 2 replicas (leader + standby)")
    check(pod["serviceAccountName"] == sa["name"], "runs as the gpupool ServiceAccount")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "drop ALL capabilities")
    check({"requests", "limits"} <= set(c.get("resources", {})), "resource requests and limits")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http-metrics") == port, f"container port http-metrics {ports.get('http-metrics')} != metrics.listen port {port}")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "POD_NAME from metadata.name (the lease identity)")
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          "POD_NAMESPACE from metadata.namespace (the lease namespace)")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cfg_path = [a for a in c["args"] if a.endswith(".yaml")][0]
    cfg_dir = cfg_path.rsplit("/", 1)[0]
    check(cfg_dir in mounts, f"--config {cfg_path} is not under a mount")
    if cfg_dir in mounts:
        check(vols.get(mounts[cfg_dir], {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
              f"the config mount is not the ConfigMap {cm['metadata']['name']}")
    check(all(m["mountPath"] != "/" for m in c["volumeMounts"]), "nothing mounted over /")
    pc = pod.get("priorityClassName")
    quotas = kinds.get("ResourceQuota", [])
    if pc in ("system-cluster-critical", "system-node-critical") and ns != "kube-system":
        ok = any(q["metadata"]["namespace"] == ns and any(
            e.get("scopeName") == "PriorityClass" and pc in e.get("values", [])
            for e in q["spec"].get("scopeSelector", {}).get("matchExpressions", [])) for q in quotas)
        check(ok, f"priorityClassName {pc} outside kube-system needs a ResourceQuota scoped to it in {ns}")

    # PDB, Service, ServiceMonitor select the Deployment's pods and port.
    labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(sel):
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())

    check(selects(dep["spec"]["selector"]["matchLabels"]), "the Deployment's selector matches its pods")
    check(selects(kinds["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"]), "PDB selects gpupool pods")
    svc = kinds["Service"][0]
    check(selects(svc["spec"]["selector"]), "Service selects gpupool pods")
    svc_port = svc["spec"]["ports"][0]
    check(svc_port["targetPort"] == "http-metrics", "Service targets the metrics port")
    for sm in kinds.get("ServiceMonitor", []):
        check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        check(sm["metadata"]["namespace"] == svc["metadata"]["namespace"] and "namespaceSelector" not in sm["spec"],
              "ServiceMonitor in the Service's namespace, no namespaceSelector")
        check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
              "ServiceMonitor selects the Service")
        ep = sm["spec"]["endpoints"][0]
        check(ep["port"] == svc_port["name"] and ep["path"] == "/metrics", "ServiceMonitor scrapes /metrics on the named port")
    plain = rule_groups(yaml.safe_load(open(rules_path, encoding="utf-8")))
    for pr in kinds.get("PrometheusRule", []):
        check(pr["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
        check(rule_groups(pr) == plain, f"PrometheusRule {pr['metadata']['name']} groups differ from {rules_path}")
    return finish(rendered)


# ---------------------------------------------------------------------------------------------

def tf_default(text: str, var: str) -> str | None:
    m = re.search(r'variable\s+"' + var + r'"\s*\{(.*?)\n\}', text, re.S)
    if not m:
        return None
    d = re.search(r'^\s*default\s*=\s*"([^"]*)"', m.group(1), re.M)
    return d.group(1) if d else None


def cmd_namespace(rendered: list[str]) -> int:
    iam = ROOT / "terraform/modules/aws-controller-iam"
    variables = (iam / "variables.tf").read_text(encoding="utf-8")
    main = (iam / "main.tf").read_text(encoding="utf-8")
    want = (tf_default(variables, "namespace"), tf_default(variables, "service_account"))
    check(None not in want, f"aws-controller-iam: no string defaults for namespace/service_account: {want}")
    check("system:serviceaccount:${var.namespace}:${var.service_account}" in main,
          "aws-controller-iam: the IRSA trust policy does not pin :sub to system:serviceaccount:${var.namespace}:${var.service_account}")
    example = (ROOT / "terraform/examples/eks-gpu-pools/main.tf").read_text(encoding="utf-8")
    ex_ns = re.search(r'^\s*namespace\s*=\s*"([^"]+)"', example, re.M)
    ex_sa = re.search(r'^\s*service_account\s*=\s*"([^"]+)"', example, re.M)
    got_ex = (ex_ns.group(1) if ex_ns else None, ex_sa.group(1) if ex_sa else None)
    check(got_ex == want, f"terraform/examples/eks-gpu-pools trusts {got_ex}, the module's defaults are {want}")
    for path in rendered:
        sas = [d for d in load_docs(path) if d.get("kind") == "ServiceAccount"]
        got = [(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in sas]
        check(got == [want], f"{path}: ServiceAccount {got} != IAM trust system:serviceaccount:{want[0]}:{want[1]}")
    print(f"     ServiceAccount {want[0]}/{want[1]} in {len(rendered)} renderings and the IAM trust policy")
    return finish("one namespace story (Helm, kustomize, Terraform IAM trust)")


def cmd_rules_equal(a: str, b: str) -> int:
    ga = rule_groups(yaml.safe_load(open(a, encoding="utf-8")))
    gb = rule_groups(yaml.safe_load(open(b, encoding="utf-8")))
    check(ga == gb, f"{a} and {b} hold different rule groups")
    return finish(f"{a} == {b}")


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[1] == "objects":
        return cmd_objects(argv[2], argv[3], argv[4], argv[5] if len(argv) > 5 else None)
    if len(argv) >= 3 and argv[1] == "namespace":
        return cmd_namespace(argv[2:])
    if len(argv) == 4 and argv[1] == "rules-equal":
        return cmd_rules_equal(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
