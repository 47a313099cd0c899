#!/usr/bin/env python3
"""Static checks that terraform/ creates exactly what the gpupool controller needs.

The contract (tag and label keys, EventBridge rules, IAM actions, GCP permissions) lives in
src/contract.rs and is printed as JSON by `gpupool print-contract`. This script parses every
.tf file under terraform/ with python-hcl2 and checks the modules against that JSON, so the Rust
code and the Terraform modules cannot drift apart. No terraform binary or provider is needed.

Contract JSON: the file named by $GPUPOOL_CONTRACT_JSON, else the output of
`cargo run -q --bin gpupool -- print-contract`.

Prints one line per check and ends with "N passed, M failed"; exits 1 when any check fails.

python-hcl2 comes in two output dialects and both are handled: the one bundled with checkov
(bc-python-hcl2, also python-hcl2 < 5: every attribute wrapped in a one-element list, block
labels and strings bare) and python-hcl2 >= 5 (attributes bare, strings and labels keep their
quotes, blocks marked with "__is_block__").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import hcl2
except ImportError:  # pragma: no cover - environment problem, reported plainly
    print("terraform_contract: python-hcl2 is not installed (pip install python-hcl2)", file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
MODULES = TF_DIR / "modules"
EXAMPLES = TF_DIR / "examples"

AWS_NODE_GROUP = MODULES / "aws-gpu-node-group"
AWS_CONTROLLER_IAM = MODULES / "aws-controller-iam"
GCP_MIG = MODULES / "gcp-gpu-mig"


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> None:
        """One named check; `problems` empty means it passed."""
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
        else:
            self.passed += 1
            print(f"ok   {name}")


R = Results()


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# HCL loading, normalised across python-hcl2 dialects
# ---------------------------------------------------------------------------------------------

META_KEYS = {"__is_block__", "__start_line__", "__end_line__"}


def _contains_key(obj, key: str) -> bool:
    if isinstance(obj, dict):
        return key in obj or any(_contains_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(_contains_key(v, key) for v in obj)
    return False


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def unquote(s: str) -> str:
    """'"abc"' -> 'abc' (python-hcl2 >= 5 keeps the quotes of string literals)."""
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        inner = s[1:-1]
        out, i = [], 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner) and inner[i + 1] in _ESCAPES:
                out.append(_ESCAPES[inner[i + 1]])
                i += 2
                continue
            out.append(c)
            i += 1
        return "".join(out)
    return s


class Doc:
    """One parsed .tf file with dialect-aware accessors."""

    def __init__(self, path: Path, raw: dict) -> None:
        self.path = path
        self.raw = raw
        self.modern = _contains_key(raw, "__is_block__")

    # values ----------------------------------------------------------------------------------
    def clean(self, v):
        if isinstance(v, str):
            return unquote(v) if self.modern else v
        if isinstance(v, list):
            return [self.clean(x) for x in v]
        if isinstance(v, dict):
            return {self.clean(k) if self.modern else k: self.clean(x) for k, x in v.items() if k not in META_KEYS}
        return v

    def attr(self, body: dict, name: str, default=None):
        if not isinstance(body, dict) or name not in body:
            return default
        v = body[name]
        if not self.modern and isinstance(v, list) and len(v) == 1:
            v = v[0]
        return self.clean(v)

    def blocks(self, body: dict, name: str) -> list[dict]:
        v = body.get(name, []) if isinstance(body, dict) else []
        if isinstance(v, dict):
            v = [v]
        return [b for b in v if isinstance(b, dict)]

    def dynamic(self, body: dict, name: str) -> list[tuple[object, dict]]:
        """(for_each, content) of every `dynamic "<name>"` block."""
        out = []
        for d in self.blocks(body, "dynamic"):
            for label, spec in d.items():
                if label in META_KEYS:
                    continue
                if (unquote(label) if self.modern else label) != name:
                    continue
                specs = spec if isinstance(spec, list) else [spec]
                for sp in specs:
                    contents = self.blocks(sp, "content")
                    out.append((self.attr(sp, "for_each"), contents[0] if contents else {}))
        return out

    def all_blocks(self, body: dict, name: str) -> list[dict]:
        """Static blocks plus the content of dynamic ones."""
        return self.blocks(body, name) + [c for _, c in self.dynamic(body, name)]

    # top level -------------------------------------------------------------------------------
    def _labelled(self, section: str, depth: int):
        for entry in self.raw.get(section, []):
            if not isinstance(entry, dict):
                continue
            for k1, v1 in entry.items():
                if k1 in META_KEYS:
                    continue
                l1 = unquote(k1) if self.modern else k1
                if depth == 1:
                    yield (l1,), v1
                    continue
                for k2, v2 in v1.items():
                    if k2 in META_KEYS:
                        continue
                    yield (l1, unquote(k2) if self.modern else k2), v2

    def resources(self, rtype: str | None = None):
        for (t, n), body in self._labelled("resource", 2):
            if rtype is None or t == rtype:
                yield t, n, body

    def data(self, dtype: str):
        for (t, n), body in self._labelled("data", 2):
            if t == dtype:
                yield n, body

    def modules(self):
        for (n,), body in self._labelled("module", 1):
            yield n, body

    def variables(self):
        for (n,), body in self._labelled("variable", 1):
            yield n, body

    def outputs(self):
        for (n,), body in self._labelled("output", 1):
            yield n, body

    def locals(self) -> dict:
        out = {}
        for entry in self.raw.get("locals", []):
            for k, v in entry.items():
                if k in META_KEYS:
                    continue
                if not self.modern and isinstance(v, list) and len(v) == 1:
                    v = v[0]
                out[k] = self.clean(v)
        return out


class Module:
    """All .tf files of one directory (a Terraform module)."""

    def __init__(self, path: Path, docs: list[Doc]) -> None:
        self.path = path
        self.docs = docs
        self.locals: dict = {}
        for d in docs:
            self.locals.update(d.locals())

    def resources(self, rtype: str | None = None):
        for d in self.docs:
            for t, n, body in d.resources(rtype):
                yield d, t, n, body

    def data(self, dtype: str):
        for d in self.docs:
            for n, body in d.data(dtype):
                yield d, n, body

    def local_dicts(self, expr, _seen=None) -> list[tuple[str, dict]]:
        """Locals (name, dict value) that an expression refers to, following local -> local."""
        _seen = set() if _seen is None else _seen
        out = []
        for name in re.findall(r"local\.([A-Za-z0-9_]+)", json.dumps(expr)):
            if name in _seen or name not in self.locals:
                continue
            _seen.add(name)
            value = self.locals[name]
            if isinstance(value, dict):
                out.append((name, value))
            else:
                out.extend(self.local_dicts(value, _seen))
        return out

    def resolve(self, value):
        """A literal value, or the literal a bare `${local.x}` points to."""
        if isinstance(value, str):
            m = re.fullmatch(r"\$\{local\.([A-Za-z0-9_]+)\}", value)
            if m and m.group(1) in self.locals:
                return self.resolve(self.locals[m.group(1)])
        return value


def parse_tree() -> tuple[dict[Path, Module], list[str]]:
    modules: dict[Path, list[Doc]] = {}
    errors = []
    for f in sorted(TF_DIR.rglob("*.tf")):
        if ".terraform" in f.parts:
            continue
        try:
            with open(f, encoding="utf-8") as fh:
                raw = hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - any parser error is a finding
            errors.append(f"{rel(f)}: {type(e).__name__}: {e}")
            continue
        modules.setdefault(f.parent, []).append(Doc(f, raw))
    return {p: Module(p, ds) for p, ds in modules.items()}, errors


def strings_in(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_in(v)]
    return []


def ref(s) -> str:
    """'${desired_capacity}' / 'desired_capacity' -> 'desired_capacity'."""
    s = str(s).strip()
    m = re.fullmatch(r"\$\{(.*)\}", s, re.S)
    return (m.group(1) if m else s).strip()


def as_list(v) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


# ---------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------

def load_contract() -> dict:
    path = os.environ.get("GPUPOOL_CONTRACT_JSON")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError) as e:
            print(f"terraform_contract: cannot read GPUPOOL_CONTRACT_JSON={path}: {e}", file=sys.stderr)
            sys.exit(2)
    cmd = ["cargo", "run", "-q", "--bin", "gpupool", "--", "print-contract"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"terraform_contract: `{' '.join(cmd)}` failed ({proc.returncode}); set GPUPOOL_CONTRACT_JSON "
              f"to a contract file instead.\n{proc.stderr[-2000:]}", file=sys.stderr)
        sys.exit(2)
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        print(f"terraform_contract: print-contract did not print JSON: {e}", file=sys.stderr)
        sys.exit(2)


def diff(have: set, want: set) -> list[str]:
    out = []
    if want - have:
        out.append(f"in the contract, missing from the Terraform: {sorted(want - have)}")
    if have - want:
        out.append(f"in the Terraform, not in the contract: {sorted(have - want)}")
    return out


# ---------------------------------------------------------------------------------------------
# Template rendering (a small templatefile(): ${name} interpolation, $${ escapes)
# ---------------------------------------------------------------------------------------------

def templatefile_vars(expr: str) -> set[str]:
    """Keys of the object passed to templatefile(path, { ... }) in a local's expression."""
    m = re.search(r"templatefile\((.*)\)", expr, re.S)
    if not m:
        return set()
    body = m.group(1)
    start = body.find("{")
    return set(re.findall(r"['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*[=:]\s", body[start:])) if start >= 0 else set()


def render_template(path: Path, values: dict[str, str]) -> tuple[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    problems = []
    if "%{" in text.replace("%%{", ""):
        problems.append(f"{rel(path)}: template directives (%{{) are not expected here")
    out, i = [], 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
        elif text.startswith("${", i):
            j = text.find("}", i)
            name = text[i + 2 : j].strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                problems.append(f"{rel(path)}: '${{{name}}}' is not a plain variable: escape shell "
                                f"expansions as $${{...}}")
            elif name not in values:
                problems.append(f"{rel(path)}: uses ${{{name}}} which templatefile() does not pass")
            out.append(values.get(name, ""))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out), problems


def bash_syntax(script: str, label: str) -> list[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
        fh.write(script)
        name = fh.name
    try:
        proc = subprocess.run(["bash", "-n", name], capture_output=True, text=True)
    finally:
        os.unlink(name)
    return [] if proc.returncode == 0 else [f"{label}: bash -n: {proc.stderr.strip()}"]


# ---------------------------------------------------------------------------------------------
# Generic module hygiene
# ---------------------------------------------------------------------------------------------

def check_hygiene(mods: dict[Path, Module]) -> None:
    for path in sorted(mods):
        mod = mods[path]
        name = rel(path)
        problems = []
        providers = []
        for d in mod.docs:
            for tf in d.blocks(d.raw, "terraform"):
                for rp in d.blocks(tf, "required_providers"):
                    providers += [k for k in d.clean(rp) if k not in META_KEYS]
        if not providers:
            problems.append(f"{name}: no terraform {{ required_providers {{ ... }} }} block (versions.tf)")
        for d in mod.docs:
            for vname, body in d.variables():
                if d.attr(body, "type") is None:
                    problems.append(f"{rel(d.path)}: variable {vname} has no type")
                if not d.attr(body, "description"):
                    problems.append(f"{rel(d.path)}: variable {vname} has no description")
            for oname, body in d.outputs():
                if not d.attr(body, "description"):
                    problems.append(f"{rel(d.path)}: output {oname} has no description")
        R.check(f"{name}: versions.tf, typed and described variables and outputs", problems)

        # A module's README documents every input and output and shows a pinned source.
        if path.parent == MODULES:
            readme = path / "README.md"
            problems = []
            if not readme.exists():
                problems.append(f"{rel(readme)} missing")
            else:
                text = readme.read_text(encoding="utf-8")
                names = [(kind, n) for d in mod.docs for kind, items in (("input", d.variables()), ("output", d.outputs()))
                         for n, _ in items]
                for kind, n in names:
                    if f"| `{n}` |" not in text:
                        problems.append(f"{rel(readme)}: {kind} {n} is not in its table")
                if not re.search(r'source\s*=\s*"git::[^"]*//terraform/modules/' + re.escape(path.name) + r'\?ref=[^"]+"', text):
                    problems.append(f"{rel(readme)}: no example with a source pinned by ?ref=")
            R.check(f"{name}: README.md lists every input and output, example source pinned with ?ref=", problems)


# ---------------------------------------------------------------------------------------------
# (a) AWS tags
# ---------------------------------------------------------------------------------------------

def asg_tags(mod: Module, d: Doc, body: dict) -> tuple[dict, list[str]]:
    """Tags of an aws_autoscaling_group: literal tag blocks + the locals behind dynamic ones."""
    tags, problems = {}, []
    for t in d.blocks(body, "tag"):
        tags[d.attr(t, "key")] = d.attr(t, "value")
        if d.attr(t, "propagate_at_launch") is not True:
            problems.append(f"tag {d.attr(t, 'key')} is not propagate_at_launch = true")
    for for_each, content in d.dynamic(body, "tag"):
        for _, value in mod.local_dicts(for_each):
            tags.update(value)
        if d.attr(content, "propagate_at_launch") is not True:
            problems.append("dynamic tag content is not propagate_at_launch = true")
    return tags, problems


def check_aws_tags(mods: dict[Path, Module], contract: dict) -> None:
    ctags = contract["aws"]["tags"]
    want_asg = {ctags["pool"], ctags["enabled"]}
    asgs = [(m, d, n, b) for m in mods.values() for d, _, n, b in m.resources("aws_autoscaling_group")]
    R.check("(a) terraform/ defines aws_autoscaling_group resources",
            [] if asgs else ["no aws_autoscaling_group found under terraform/"])
    for mod, d, n, body in asgs:
        tags, problems = asg_tags(mod, d, body)
        have = {k for k in tags if isinstance(k, str) and k.startswith("gpupool.io/")}
        problems += [f"gpupool.io/* tag keys: {p}" for p in diff(have, want_asg)]
        if tags.get(ctags["enabled"]) != "true":
            problems.append(f'{ctags["enabled"]} must be "true", is {tags.get(ctags["enabled"])!r}')
        pool_value = str(tags.get(ctags["pool"], ""))
        if "var.pool_name" not in pool_value:
            problems.append(f"{ctags['pool']} must be the pool name (var.pool_name), is {pool_value!r}")
        R.check(f"(a) {rel(d.path)}: aws_autoscaling_group.{n} tags == contract {{pool, enabled}}", problems)

    # Every gpupool.io/* key the AWS node-group module writes anywhere (tags, IAM conditions,
    # kubelet labels, user-data) is one of the contract's, and the model-cache key is there.
    mod = mods.get(AWS_NODE_GROUP)
    if mod is None:
        R.check("(a) aws-gpu-node-group module exists", [f"{rel(AWS_NODE_GROUP)} not found"])
        return
    keys = set()
    for d in mod.docs:
        for s in strings_in(d.clean(d.raw)):
            keys |= set(re.findall(r"gpupool\.io/[a-z0-9-]+", s))
    for tpl in sorted((AWS_NODE_GROUP / "templates").glob("*.tftpl")):
        keys |= set(re.findall(r"gpupool\.io/[a-z0-9-]+", tpl.read_text(encoding="utf-8")))
    R.check(f"(a) {rel(AWS_NODE_GROUP)}: every gpupool.io/* key used == contract aws.tags",
            diff(keys, set(ctags.values())))

    # In Kubernetes mode the node carries the model-cache label gpupool compares against, encoded
    # as gpupool encodes it (label values cannot hold "@").
    labels = str(mod.locals.get("kubelet_node_labels", ""))
    enc = str(mod.locals.get("model_cache_label_value", ""))
    problems = []
    if "gpupool.io/model-cache" not in labels or "local.model_cache_label_value" not in labels:
        problems.append(f"local.kubelet_node_labels lacks gpupool.io/model-cache = local.model_cache_label_value: {labels!r}")
    if "[^a-z0-9_-]" not in enc or "lower(" not in enc:
        problems.append(f"local.model_cache_label_value is not lower() + [^a-z0-9_-] -> _: {enc!r}")
    R.check(f"(a) {rel(AWS_NODE_GROUP)}: kubelet labels carry the encoded model-cache label", problems)

    mc = mod.locals.get("model_cache_tag_key")
    R.check(f"(a) {rel(AWS_NODE_GROUP)}: local.model_cache_tag_key == contract aws.tags.model_cache",
            [] if mc == ctags["model_cache"] else [f"local.model_cache_tag_key is {mc!r}, contract says {ctags['model_cache']!r}"])

    # The node role may set only the model-cache tag.
    problems = []
    found = False
    for d, n, body in mod.data("aws_iam_policy_document"):
        for st in d.all_blocks(body, "statement"):
            if "ec2:CreateTags" in as_list(d.attr(st, "actions")):
                found = True
                conds = {d.attr(c, "variable"): [mod.resolve(v) for v in as_list(d.attr(c, "values"))]
                         for c in d.blocks(st, "condition")}
                if conds.get("aws:TagKeys") != [ctags["model_cache"]]:
                    problems.append(f"{rel(d.path)}: data.aws_iam_policy_document.{n}: ec2:CreateTags must be limited "
                                    f"with aws:TagKeys = [{ctags['model_cache']!r}], is {conds.get('aws:TagKeys')!r}")
                if f"aws:ResourceTag/{ctags['pool']}" not in conds:
                    problems.append(f"{rel(d.path)}: data.aws_iam_policy_document.{n}: ec2:CreateTags must be limited "
                                    f"to the pool's instances (aws:ResourceTag/{ctags['pool']})")
    if not found:
        problems.append("no node policy statement grants ec2:CreateTags for the model-cache tag")
    R.check(f"(a) {rel(AWS_NODE_GROUP)}: node role may only set {ctags['model_cache']} on its pool's instances", problems)


# ---------------------------------------------------------------------------------------------
# AWS node group structure (warm pool, spot, lifecycle hook, launch template, user-data)
# ---------------------------------------------------------------------------------------------

def check_aws_node_group(mods: dict[Path, Module], contract: dict) -> None:
    mod = mods.get(AWS_NODE_GROUP)
    if mod is None:
        return
    asgs = {n: (d, b) for d, _, n, b in mod.resources("aws_autoscaling_group")}

    od = asgs.get("on_demand")
    problems = []
    if od is None:
        problems.append("no aws_autoscaling_group.on_demand")
    else:
        d, b = od
        if d.blocks(b, "mixed_instances_policy") or d.dynamic(b, "mixed_instances_policy"):
            problems.append("the on-demand group has a mixed_instances_policy: AWS refuses a warm pool on it")
        pools = d.all_blocks(b, "warm_pool")
        if not pools:
            problems.append("the on-demand group has no warm_pool")
        for wp in pools:
            if d.attr(wp, "pool_state") != "Stopped":
                problems.append(f'warm_pool.pool_state must be "Stopped", is {d.attr(wp, "pool_state")!r}')
        if not d.blocks(b, "launch_template"):
            problems.append("the on-demand group must use a single launch_template (one instance type)")
    R.check(f"{rel(AWS_NODE_GROUP)}: on-demand group: single type, warm_pool Stopped", problems)

    spot = asgs.get("spot")
    problems = []
    if spot is None:
        problems.append("no aws_autoscaling_group.spot")
    else:
        d, b = spot
        # gpupool handles rebalance recommendations itself (interruption queue) and completes no
        # terminating lifecycle hook, so AWS's own Capacity Rebalancing would terminate at-risk
        # instances without gpupool's drain: it must be a variable, off by default.
        cr = d.attr(b, "capacity_rebalance")
        if ref(cr) != "var.spot_capacity_rebalance":
            problems.append(f"capacity_rebalance must be var.spot_capacity_rebalance (default false), is {cr!r}")
        else:
            defaults = [dd.attr(vb, "default") for dd in mod.docs for vn, vb in dd.variables() if vn == "spot_capacity_rebalance"]
            if defaults != [False]:
                problems.append(f"variable spot_capacity_rebalance must default to false, defaults {defaults!r}")
        for h in d.blocks(b, "initial_lifecycle_hook"):
            if d.attr(h, "lifecycle_transition") == "autoscaling:EC2_INSTANCE_TERMINATING":
                problems.append("a terminating lifecycle hook: gpupool never completes one, every termination would wait for its timeout")
        text = d.path.read_text(encoding="utf-8")
        if re.search(r"gpupool[^\n]*\n?[^\n]*drains the old node", text):
            problems.append(f"{rel(d.path)} still claims gpupool drains the node AWS's Capacity Rebalancing terminates")
        if d.all_blocks(b, "warm_pool"):
            problems.append("a spot group cannot have a warm_pool")
        want = {"spot_allocation_strategy": "price-capacity-optimized",
                "on_demand_base_capacity": 0, "on_demand_percentage_above_base_capacity": 0}
        mips = d.blocks(b, "mixed_instances_policy")
        if not mips:
            problems.append("no mixed_instances_policy")
        for mip in mips:
            for dist in d.blocks(mip, "instances_distribution"):
                for k, v in want.items():
                    if d.attr(dist, k) != v:
                        problems.append(f"instances_distribution.{k} must be {v!r}, is {d.attr(dist, k)!r}")
            for lt in d.blocks(mip, "launch_template"):
                if not d.all_blocks(lt, "override"):
                    problems.append("mixed_instances_policy.launch_template has no instance type override")
    R.check(f"{rel(AWS_NODE_GROUP)}: spot group: price-capacity-optimized, 100% spot, overrides, "
            "Capacity Rebalancing off by default, no terminating hook", problems)

    for n, (d, b) in sorted(asgs.items()):
        problems = []
        hooks = d.blocks(b, "initial_lifecycle_hook")
        if not any(d.attr(h, "lifecycle_transition") == "autoscaling:EC2_INSTANCE_LAUNCHING" for h in hooks):
            problems.append("no initial_lifecycle_hook on autoscaling:EC2_INSTANCE_LAUNCHING")
        ignored = set()
        for lc in d.blocks(b, "lifecycle"):
            ignored |= {ref(x) for x in as_list(d.attr(lc, "ignore_changes"))}
        if "desired_capacity" not in ignored:
            problems.append(f"lifecycle.ignore_changes must hold desired_capacity (gpupool owns it), has {sorted(ignored)}")
        if d.all_blocks(b, "warm_pool") and not {"warm_pool[0].min_size", "warm_pool[0].max_group_prepared_capacity"} <= ignored:
            problems.append("lifecycle.ignore_changes must hold the warm pool sizes (gpupool owns them)")
        R.check(f"{rel(d.path)}: aws_autoscaling_group.{n}: launch hook, ignore_changes on what gpupool owns", problems)

    problems = []
    lts = list(mod.resources("aws_launch_template"))
    if not lts:
        problems.append("no aws_launch_template")
    for d, _, n, b in lts:
        for mo in d.blocks(b, "metadata_options"):
            if d.attr(mo, "http_tokens") != "required":
                problems.append(f"aws_launch_template.{n}: metadata_options.http_tokens must be \"required\" (IMDSv2)")
            if d.attr(mo, "instance_metadata_tags") != "enabled":
                problems.append(f"aws_launch_template.{n}: instance_metadata_tags must be \"enabled\" (user-data reads its group name)")
        if not d.blocks(b, "metadata_options"):
            problems.append(f"aws_launch_template.{n}: no metadata_options")
        bdms = d.blocks(b, "block_device_mappings")
        if len(bdms) < 2:
            problems.append(f"aws_launch_template.{n}: needs a root and a model-cache volume, has {len(bdms)}")
        for bdm in bdms:
            for ebs in d.blocks(bdm, "ebs"):
                if d.attr(ebs, "encrypted") is not True:
                    problems.append(f"aws_launch_template.{n}: volume {d.attr(bdm, 'device_name')} is not encrypted")
    R.check(f"{rel(AWS_NODE_GROUP)}: launch template: IMDSv2 required, encrypted root + cache volumes", problems)

    # User-data renders with the variables templatefile() passes, is valid bash, fits in 16 KB.
    expr = mod.locals.get("user_data", "")
    passed = templatefile_vars(str(expr))
    tpl = AWS_NODE_GROUP / "templates" / "user-data.sh.tftpl"
    problems = []
    if not tpl.exists():
        problems.append(f"{rel(tpl)} not found")
    else:
        values = {k: f"x-{k}" for k in passed}
        values.update(model_cache_tag_key=contract["aws"]["tags"]["model_cache"], complete_lifecycle_action="true",
                      extra_user_data="echo serving", node_labels="gpupool.io/pool=p", node_taints="")
        script, problems = render_template(tpl, values)
        if not problems:
            problems += bash_syntax(script, rel(tpl))
            inner = re.search(r"<<'GPUPOOL_SCRIPT'\n(.*?)\nGPUPOOL_SCRIPT\n", script, re.S)
            if inner:
                problems += bash_syntax(inner.group(1), f"{rel(tpl)} (gpupool-node-init)")
            for needle in ("aws autoscaling complete-lifecycle-action", "aws ec2 create-tags", "X-aws-ec2-metadata-token"):
                if needle not in script:
                    problems.append(f"{rel(tpl)}: rendered user-data lacks {needle!r}")
            if len(script.encode()) > 16384:
                problems.append(f"{rel(tpl)}: rendered user-data is {len(script.encode())} bytes, EC2 allows 16384")
    R.check(f"{rel(AWS_NODE_GROUP)}: user-data template renders, bash -n passes, completes the hook, tags the cache", problems)


# ---------------------------------------------------------------------------------------------
# (b) EventBridge rules and the interruption queue
# ---------------------------------------------------------------------------------------------

def check_eventbridge(mods: dict[Path, Module], contract: dict) -> None:
    want = [(e["source"], e["detail_type"]) for e in contract["aws"]["eventbridge"]]
    rules = [(m, d, n, b) for m in mods.values() for d, _, n, b in m.resources("aws_cloudwatch_event_rule")]
    R.check("(b) terraform/ defines aws_cloudwatch_event_rule resources",
            [] if rules else ["no aws_cloudwatch_event_rule found under terraform/"])
    for mod, d, n, body in rules:
        problems = []
        pattern = str(d.attr(body, "event_pattern", ""))
        for_each = d.attr(body, "for_each")
        have: list[tuple[str, str]] = []
        if for_each is None:
            problems.append("event_pattern is not built from a local map (for_each = local.<map>): "
                            "the (source, detail-type) pairs cannot be checked")
        else:
            dicts = [v for _, v in mod.local_dicts(for_each) if all(isinstance(x, dict) for x in v.values())]
            if len(dicts) != 1:
                problems.append(f"for_each {for_each!r} must resolve to exactly one local map of rules, found {len(dicts)}")
            for events in dicts:
                for key, ev in events.items():
                    if "source" not in ev or "detail_type" not in ev:
                        problems.append(f"rule {key!r} lacks source or detail_type")
                        continue
                    have.append((ev["source"], ev["detail_type"]))
            for needle in ("each.value.source", "each.value.detail_type", "detail-type"):
                if needle not in pattern:
                    problems.append(f"event_pattern does not use {needle!r}: {pattern!r}")
        if len(have) != len(set(have)):
            problems.append(f"duplicate rules: {sorted(have)}")
        problems += diff(set(have), set(want))
        R.check(f"(b) {rel(d.path)}: aws_cloudwatch_event_rule.{n} (source, detail-type) set == contract eventbridge", problems)

        # Targets: one per rule, all to the SQS queue.
        problems = []
        targets = list(mod.resources("aws_cloudwatch_event_target"))
        if not targets:
            problems.append("no aws_cloudwatch_event_target")
        for td, _, tn, tb in targets:
            if ref(d.attr(body, "for_each")) != ref(td.attr(tb, "for_each")):
                problems.append(f"aws_cloudwatch_event_target.{tn}: for_each {td.attr(tb, 'for_each')!r} differs from the rules'")
            if "aws_sqs_queue." not in str(td.attr(tb, "arn")):
                problems.append(f"aws_cloudwatch_event_target.{tn}: arn must be the SQS queue, is {td.attr(tb, 'arn')!r}")
        R.check(f"(b) {rel(mod.path)}: one EventBridge target per rule, to the SQS queue", problems)

        check_queue(mod)


def check_queue(mod: Module) -> None:
    problems = []
    queues = list(mod.resources("aws_sqs_queue"))
    if not queues:
        problems.append("no aws_sqs_queue")
    for d, _, n, b in queues:
        sse = d.attr(b, "sqs_managed_sse_enabled")
        sse = mod.resolve(sse)
        kms = d.attr(b, "kms_master_key_id")
        if not (sse is True or (isinstance(sse, str) and "true" in sse) or kms):
            problems.append(f"aws_sqs_queue.{n}: neither sqs_managed_sse_enabled nor kms_master_key_id")
    if not any(d.attr(b, "redrive_policy") and "deadLetterTargetArn" in str(d.attr(b, "redrive_policy")) for d, _, _, b in queues):
        problems.append("no aws_sqs_queue has a redrive_policy with deadLetterTargetArn (dead-letter queue)")
    if not list(mod.resources("aws_sqs_queue_policy")):
        problems.append("no aws_sqs_queue_policy")
    send_ok = False
    for d, n, b in mod.data("aws_iam_policy_document"):
        for st in d.all_blocks(b, "statement"):
            if "sqs:SendMessage" not in as_list(d.attr(st, "actions")):
                continue
            principals = [x for p in d.blocks(st, "principals") for x in as_list(d.attr(p, "identifiers"))]
            conds = {d.attr(c, "variable"): c for c in d.blocks(st, "condition")}
            if "events.amazonaws.com" in principals and "aws:SourceArn" in conds:
                values = json.dumps(d.attr(conds["aws:SourceArn"], "values"))
                if "aws_cloudwatch_event_rule." in values:
                    send_ok = True
    if not send_ok:
        problems.append("no queue policy statement lets events.amazonaws.com sqs:SendMessage with an "
                        "aws:SourceArn condition on the EventBridge rules")
    R.check(f"(b) {rel(mod.path)}: interruption queue encrypted, dead-letter queue, EventBridge-only SendMessage", problems)


# ---------------------------------------------------------------------------------------------
# (c) Controller IAM
# ---------------------------------------------------------------------------------------------

def check_controller_iam(mods: dict[Path, Module], contract: dict) -> None:
    aws = contract["aws"]
    read, gw, ow = set(aws["iam_read_actions"]), set(aws["iam_group_write_actions"]), set(aws["iam_other_write_actions"])
    dm = set(aws.get("iam_drain_mark_actions", []))
    mod = mods.get(AWS_CONTROLLER_IAM)
    if mod is None:
        R.check("(c) aws-controller-iam module exists", [f"{rel(AWS_CONTROLLER_IAM)} not found"])
        return
    cond_var = f"aws:ResourceTag/{aws['write_condition_tag']}"

    identity, trust = [], []
    for d, n, b in mod.data("aws_iam_policy_document"):
        for st in d.all_blocks(b, "statement"):
            (trust if d.blocks(st, "principals") else identity).append((d, n, st))

    actions = set()
    for d, n, st in identity:
        if (d.attr(st, "effect") or "Allow") == "Allow":
            actions |= set(as_list(d.attr(st, "actions")))
    # Permissions no gpupool call names but AWS checks on its behalf: kms:Decrypt, which SQS uses
    # with the consumer's credentials to decrypt messages of a queue under a customer managed key
    # (Amazon SQS Developer Guide, "Amazon SQS key management").
    implied = {"kms:Decrypt"}
    R.check(f"(c) {rel(AWS_CONTROLLER_IAM)}: policy actions == contract read ∪ group_write ∪ other_write "
            f"∪ drain_mark (+ implied {sorted(implied)})", diff(actions, read | gw | ow | dm | implied))

    problems = []
    for d, n, st in identity:
        acts = set(as_list(d.attr(st, "actions")))
        sid = d.attr(st, "sid") or "?"
        where = f"{rel(d.path)}: data.aws_iam_policy_document.{n} statement {sid}"
        if any("*" in a for a in acts):
            problems.append(f"{where}: wildcard action {sorted(a for a in acts if '*' in a)}")
        if d.blocks(st, "not_actions") or d.attr(st, "not_actions") or d.attr(st, "not_resources"):
            problems.append(f"{where}: not_actions / not_resources are not allowed")
        conds = [(d.attr(c, "test"), d.attr(c, "variable"), [mod.resolve(v) for v in as_list(d.attr(c, "values"))])
                 for c in d.blocks(st, "condition")]
        resources = [str(r) for r in as_list(d.attr(st, "resources"))]
        if acts & gw:
            if ("StringEquals", cond_var, ["true"]) not in conds:
                problems.append(f"{where}: group-write actions {sorted(acts & gw)} without condition "
                                f"StringEquals {cond_var} = [\"true\"]")
            if acts - gw:
                problems.append(f"{where}: mixes group-write and other actions {sorted(acts - gw)}")
        if acts & dm:
            # The VM-only drain mark: tag writes on opted-in instances, for the drain tag key only,
            # and the key must be named (a DeleteTags naming none deletes every tag).
            need = [("StringEquals", cond_var, ["true"]),
                    ("ForAllValues:StringEquals", "aws:TagKeys", [aws["drain_mark_tag"]]),
                    ("Null", "aws:TagKeys", ["false"])]
            problems += [f"{where}: {sorted(acts & dm)} without condition {c}" for c in need if c not in conds]
            if acts - dm:
                problems.append(f"{where}: mixes drain-mark tag writes with other actions {sorted(acts - dm)}")
            if not resources or any(not r.endswith(":instance/*") for r in resources):
                problems.append(f"{where}: {sorted(acts & dm)} must be on instance ARNs only, are on {resources}")
        if "cloudwatch:PutMetricData" in acts:
            if ("StringEquals", "cloudwatch:namespace", [aws["cloudwatch_namespace"]]) not in conds:
                problems.append(f"{where}: cloudwatch:PutMetricData without condition StringEquals "
                                f"cloudwatch:namespace = [{aws['cloudwatch_namespace']!r}] (have {conds})")
        sqs = {a for a in acts if a.startswith("sqs:")}
        signal_read = {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
        if sqs:
            if any(r == "*" for r in resources) or not resources:
                problems.append(f"{where}: {sorted(sqs)} must be scoped to queue ARNs, not {resources}")
            elif all("var.queue_arns" in r for r in resources):
                pass
            elif all("var.signal_queue_arns" in r for r in resources):
                # Signal queues belong to the workload: read their depth, never consume them.
                if sqs - signal_read or acts - sqs:
                    problems.append(f"{where}: signal queues allow only {sorted(signal_read)}, has {sorted(acts)}")
            else:
                problems.append(f"{where}: {sorted(sqs)} resources should be var.queue_arns or var.signal_queue_arns, are {resources}")
        if "kms:Decrypt" in acts:
            via = [c for c in conds if c[1] == "kms:ViaService"]
            if acts != {"kms:Decrypt"} or not all("var.queue_kms_key_arns" in r for r in resources) or not resources:
                problems.append(f"{where}: kms:Decrypt alone, on var.queue_kms_key_arns only; is {sorted(acts)} on {resources}")
            if not via or not all(str(v).startswith("sqs.") for v in via[0][2]):
                problems.append(f"{where}: kms:Decrypt must be limited to SQS with a kms:ViaService condition, has {via}")
        plain_read = acts & read - sqs
        if plain_read and resources != ["*"]:
            problems.append(f"{where}: read actions {sorted(plain_read)} should be on \"*\", are on {resources}")
    R.check(f"(c) {rel(AWS_CONTROLLER_IAM)}: every group-write action sits under aws:ResourceTag/"
            f"{aws['write_condition_tag']} = true; drain-mark tag writes by tag key on opted-in instances; PutMetricData by namespace; SQS by queue ARN (signal "
            f"queues read-only); kms:Decrypt by key ARN via SQS", problems)

    # Trust variants: IRSA, Pod Identity, instance profile.
    problems = []
    kinds = set()
    allowed = {"sts:AssumeRoleWithWebIdentity", "sts:AssumeRole", "sts:TagSession"}
    for d, n, st in trust:
        acts = set(as_list(d.attr(st, "actions")))
        if acts - allowed:
            problems.append(f"{rel(d.path)}: data.aws_iam_policy_document.{n}: trust statement with {sorted(acts - allowed)}")
        ids = [x for p in d.blocks(st, "principals") for x in as_list(d.attr(p, "identifiers"))]
        conds = {d.attr(c, "variable"): as_list(d.attr(c, "values")) for c in d.blocks(st, "condition")}
        if "sts:AssumeRoleWithWebIdentity" in acts:
            kinds.add("irsa")
            subs = [v for k, vs in conds.items() if str(k).endswith(":sub") for v in vs]
            if not any("system:serviceaccount:" in str(v) for v in subs):
                problems.append(f"{rel(d.path)}: IRSA trust must pin the :sub claim to system:serviceaccount:<ns>:<sa>")
            if not any(str(k).endswith(":aud") for k in conds):
                problems.append(f"{rel(d.path)}: IRSA trust must pin the :aud claim to sts.amazonaws.com")
        if "pods.eks.amazonaws.com" in ids:
            kinds.add("pod-identity")
            if {"sts:AssumeRole", "sts:TagSession"} - acts:
                problems.append(f"{rel(d.path)}: Pod Identity trust needs sts:AssumeRole and sts:TagSession")
        if "ec2.amazonaws.com" in ids:
            kinds.add("instance-profile")
    problems += [f"missing the {k} variant" for k in sorted({"irsa", "pod-identity", "instance-profile"} - kinds)]
    if not list(mod.resources("aws_iam_instance_profile")):
        problems.append("no aws_iam_instance_profile for VM-only mode")
    R.check(f"(c) {rel(AWS_CONTROLLER_IAM)}: IRSA, Pod Identity and instance-profile trust variants", problems)


# ---------------------------------------------------------------------------------------------
# (d) GCP custom role, (e) GCP labels
# ---------------------------------------------------------------------------------------------

def check_gcp(mods: dict[Path, Module], contract: dict) -> None:
    gcp = contract["gcp"]
    mod = mods.get(GCP_MIG)
    if mod is None:
        R.check("(d) gcp-gpu-mig module exists", [f"{rel(GCP_MIG)} not found"])
        return

    roles = {n: (d, b) for d, _, n, b in mod.resources("google_project_iam_custom_role")}
    problems = []
    if "controller" not in roles:
        problems.append(f"no google_project_iam_custom_role.controller in {rel(GCP_MIG)}")
    else:
        d, b = roles["controller"]
        perms = as_list(d.attr(b, "permissions"))
        if len(perms) != len(set(perms)):
            problems.append(f"{rel(d.path)}: duplicate permissions")
        problems += [f"{rel(d.path)}: google_project_iam_custom_role.controller: {p}" for p in diff(set(perms), set(gcp["permissions"]))]
    R.check(f"(d) {rel(GCP_MIG)}: controller custom role permissions == contract gcp.permissions", problems)

    bound = any("google_project_iam_custom_role.controller" in str(d.attr(b, "role"))
                and "google_service_account.controller" in str(d.attr(b, "member"))
                for d, _, _, b in mod.resources("google_project_iam_member"))
    R.check(f"(d) {rel(GCP_MIG)}: the custom role is bound to the controller service account",
            [] if bound else ["no google_project_iam_member binds google_project_iam_custom_role.controller to google_service_account.controller"])

    labels = gcp["labels"]
    templates = list(mod.resources("google_compute_instance_template"))
    problems = []
    if not templates:
        problems.append("no google_compute_instance_template")
    for d, _, n, b in templates:
        expr = d.attr(b, "labels")
        have = {}
        if isinstance(expr, dict):
            have.update(expr)
        for _, v in mod.local_dicts(expr):
            have.update(v)
        keys = {k for k in have if k.startswith("gpupool-io-")}
        problems += [f"{rel(d.path)}: google_compute_instance_template.{n} gpupool-io-* label keys: {p}"
                     for p in diff(keys, {labels["pool"], labels["enabled"]})]
        if have.get(labels["enabled"]) != "true":
            problems.append(f'{rel(d.path)}: {labels["enabled"]} must be "true", is {have.get(labels["enabled"])!r}')
        for k in have:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k):
                problems.append(f"{rel(d.path)}: {k!r} is not a valid GCP label key")
    R.check(f"(e) {rel(GCP_MIG)}: template labels == contract gcp.labels {{pool, enabled}}", problems)

    keys = set()
    for d in mod.docs:
        for s in strings_in(d.clean(d.raw)):
            keys |= set(re.findall(r"gpupool-io-[a-z0-9-]+", s))
    for tpl in sorted((GCP_MIG / "templates").glob("*.tftpl")):
        keys |= set(re.findall(r"gpupool-io-[a-z0-9-]+", tpl.read_text(encoding="utf-8")))
    problems = diff(keys, set(labels.values()))
    mc = mod.locals.get("model_cache_label_key")
    if mc != labels["model_cache"]:
        problems.append(f"local.model_cache_label_key is {mc!r}, contract says {labels['model_cache']!r}")
    R.check(f"(e) {rel(GCP_MIG)}: every gpupool-io-* label key used == contract gcp.labels", problems)

    # MIG structure: standby pool, ignore what gpupool owns, GPU scheduling.
    problems = []
    migs = list(mod.resources("google_compute_region_instance_group_manager"))
    if not migs:
        problems.append("no google_compute_region_instance_group_manager")
    for d, _, n, b in migs:
        sp = d.blocks(b, "standby_policy")
        if not sp or d.attr(sp[0], "mode") != "MANUAL":
            problems.append(f"{n}: standby_policy {{ mode = \"MANUAL\" }} missing")
        if d.attr(b, "target_stopped_size") is None:
            problems.append(f"{n}: target_stopped_size not set")
        ignored = set()
        for lc in d.blocks(b, "lifecycle"):
            ignored |= {ref(x) for x in as_list(d.attr(lc, "ignore_changes"))}
        if not {"target_size", "target_stopped_size"} <= ignored:
            problems.append(f"{n}: lifecycle.ignore_changes must hold target_size and target_stopped_size, has {sorted(ignored)}")
    for d, _, n, b in templates:
        for s in d.blocks(b, "scheduling"):
            if d.attr(s, "on_host_maintenance") != "TERMINATE":
                problems.append(f"{n}: scheduling.on_host_maintenance must be TERMINATE (GPUs)")
            for k in ("provisioning_model", "preemptible", "automatic_restart"):
                if d.attr(s, k) is None:
                    problems.append(f"{n}: scheduling.{k} must be set")
        if not d.blocks(b, "guest_accelerator") and not d.dynamic(b, "guest_accelerator"):
            problems.append(f"{n}: no guest_accelerator")
        if not d.blocks(b, "shielded_instance_config"):
            problems.append(f"{n}: no shielded_instance_config")
        if len(d.blocks(b, "disk")) < 2:
            problems.append(f"{n}: needs a boot disk and a model-cache disk")
    R.check(f"{rel(GCP_MIG)}: MIG standby pool MANUAL, ignore_changes, GPU scheduling, cache disk", problems)

    # Startup script renders and is valid bash.
    tpl = GCP_MIG / "templates" / "startup-script.sh.tftpl"
    passed = templatefile_vars(str(mod.locals.get("startup_script", "")))
    problems = []
    if not tpl.exists():
        problems.append(f"{rel(tpl)} not found")
    else:
        values = {k: f"x-{k}" for k in passed}
        values.update(model_cache_label_key=labels["model_cache"], serve_command="echo serving")
        script, problems = render_template(tpl, values)
        if not problems:
            problems += bash_syntax(script, rel(tpl))
            if "gcloud compute instances add-labels" not in script:
                problems.append(f"{rel(tpl)}: the startup script does not set the model-cache label")
    R.check(f"{rel(GCP_MIG)}: startup-script template renders and bash -n passes", problems)


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------

def check_examples(mods: dict[Path, Module]) -> None:
    try:
        import yaml  # PyYAML comes with checkov
    except ImportError:
        yaml = None
    for name in ("eks-gpu-pools", "vm-only-aws", "gcp-mig-fleet"):
        path = EXAMPLES / name
        mod = mods.get(path)
        problems = []
        if mod is None:
            R.check(f"terraform/examples/{name}: exists and parses", [f"{rel(path)} has no .tf files"])
            continue
        pools, providers = set(), set()
        uses_cluster = False
        for d, mname, body in [(d, n, b) for d in mod.docs for n, b in d.modules()]:
            src = d.attr(body, "source")
            target = (path / str(src)).resolve()
            if not target.is_dir() or not list(target.glob("*.tf")):
                problems.append(f"{rel(d.path)}: module {mname}: source {src!r} is not a module directory")
                continue
            pool = mod.resolve(d.attr(body, "pool_name"))
            if isinstance(pool, str) and pool.startswith("${local.common.pool_name"):
                pool = (mod.locals.get("common") or {}).get("pool_name")
            if pool:
                pools.add(pool)
            providers.add("gcp" if "gcp-" in str(src) else "aws")
            if d.attr(body, "cluster_name") is not None:
                uses_cluster = True
        readme = path / "README.md"
        if not readme.exists():
            problems.append(f"{rel(readme)} missing")
        else:
            text = readme.read_text(encoding="utf-8")
            for needle in ("terraform init", "terraform plan"):
                if needle not in text:
                    problems.append(f"{rel(readme)}: does not show `{needle}`")
            blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S)
            if not blocks:
                problems.append(f"{rel(readme)}: no ```yaml gpupool config block")
            elif yaml is not None:
                try:
                    cfg = yaml.safe_load(blocks[0])
                except yaml.YAMLError as e:
                    problems.append(f"{rel(readme)}: the gpupool config is not valid YAML: {e}")
                    cfg = None
                if isinstance(cfg, dict):
                    cfg_pools = {p.get("name") for p in cfg.get("pools", []) if isinstance(p, dict)}
                    if cfg_pools != pools:
                        problems.append(f"{rel(readme)}: config pools {sorted(cfg_pools)} != Terraform pools {sorted(pools)}")
                    if {cfg.get("provider")} != providers:
                        problems.append(f"{rel(readme)}: config provider {cfg.get('provider')!r} != Terraform {sorted(providers)}")
                    want_mode = "kubernetes" if uses_cluster else "vm-only"
                    if cfg.get("mode") != want_mode:
                        problems.append(f"{rel(readme)}: config mode {cfg.get('mode')!r}, the Terraform is {want_mode}")
                    queue = (cfg.get("aws") or {}).get("interruption_queue_url", "")
                    if "aws" in providers and not any(str(queue).endswith(f"gpupool-{p}-interruptions") for p in pools):
                        problems.append(f"{rel(readme)}: aws.interruption_queue_url {queue!r} is not the module's queue")
        R.check(f"terraform/examples/{name}: modules resolve, README config matches the Terraform", problems)


# ---------------------------------------------------------------------------------------------

def main() -> int:
    contract = load_contract()
    for key in ("aws", "gcp"):
        if key not in contract:
            print(f"terraform_contract: contract JSON has no {key!r} section", file=sys.stderr)
            return 2
    mods, errors = parse_tree()
    R.check(f"every .tf file under {rel(TF_DIR)} parses with python-hcl2 ({sum(len(m.docs) for m in mods.values())} files)",
            errors if mods or errors else ["no .tf files found"])
    if not mods:
        print(f"{R.passed} passed, {R.failed} failed")
        return 1
    check_hygiene(mods)
    check_aws_tags(mods, contract)
    check_aws_node_group(mods, contract)
    check_eventbridge(mods, contract)
    check_controller_iam(mods, contract)
    check_gcp(mods, contract)
    check_examples(mods)
    print(f"{R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
