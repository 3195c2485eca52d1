#!/usr/bin/env python3
"""Checks deploy/kubernetes/ the way `kubectl apply -k deploy/kubernetes` would see it,
offline (`cargo xtask test` runs it through `cargo xtask kubernetes`):

- kustomization.yaml lists exactly the manifests beside it, and nothing that needs
  kustomize's transformers (what it lists is what gets applied);
- every built-in object validates, strictly (unknown fields refused, as kubectl's
  default strict field validation does), against the Kubernetes OpenAPI schemas of
  each version from MIN_KUBERNETES to the newest kubernetes-validate knows;
- the prometheus-operator objects (ServiceMonitor, PrometheusRule), for which
  kubernetes-validate has no schema (it only warns), validate against leakscope's own
  JSON schemas in scripts/crd-schemas/, written from the operator's CRDs;
- prometheusrule.yaml is deploy/prometheus/rules.yml, generated (one source of
  truth; `--write` regenerates it);
- the DaemonSet keeps its security promises: host pid namespace, every capability
  dropped and only named ones added, not privileged, no privilege escalation,
  read-only root file system, every host path read-only but the lock file and state
  directory, requests and limits, a liveness probe on /healthz, a toleration of
  every taint.

Needs PyYAML, jsonschema and kubernetes-validate (`cargo xtask kubernetes` installs
them into a virtual environment under target/).
"""

import argparse
import json
import pathlib
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
CRD_SCHEMAS = ROOT / "scripts" / "crd-schemas"
# securityContext.appArmorProfile is a field since Kubernetes 1.30.
MIN_KUBERNETES = "1.30"
# The host paths the daemon may write: its lock file's directory and its state (dump)
# directory.
WRITABLE_HOST_PATHS = {"/run/leakscope", "/var/lib/leakscope"}
PROMETHEUS_RULE_HEADER = """\
# Generated from deploy/prometheus/rules.yml by `python3 scripts/check-kubernetes.py
# --write` (cargo xtask test fails when they differ): edit rules.yml, not this file.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: leakscope
  namespace: leakscope
  labels:
    app.kubernetes.io/name: leakscope
spec:
"""


def prometheus_rule_text() -> str:
    """rules.yml under `spec:`, its comments kept, its own header comment left out."""
    lines = RULES.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return PROMETHEUS_RULE_HEADER + body


def kubernetes_versions() -> list:
    """Every minor version from MIN_KUBERNETES to the newest with a schema."""
    newest = kv.latest_version()
    versions = sorted({kv.major_minor(v) for v in kv.all_versions()},
                      key=lambda v: tuple(int(p) for p in v.split(".")))
    return [v for v in versions
            if tuple(map(int, v.split("."))) >= tuple(map(int, MIN_KUBERNETES.split(".")))
            and tuple(map(int, v.split("."))) <= tuple(map(int, kv.major_minor(newest).split(".")))]


def crd_schema(doc: dict):
    """leakscope's own schema for a prometheus-operator object, if it is one."""
    group, _, version = doc.get("apiVersion", "").partition("/")
    if group != "monitoring.coreos.com":
        return None
    path = CRD_SCHEMAS / f"{doc.get('kind', '').lower()}-monitoring-{version}.json"
    if not path.is_file():
        raise SystemExit(f"no schema for {doc.get('kind')} {doc.get('apiVersion')} ({path})")
    return json.loads(path.read_text())


def validate(doc: dict, where: str, versions: list) -> list:
    """Schema errors of one object (empty when it validates)."""
    schema = crd_schema(doc)
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(doc)]
    errors = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where} (Kubernetes {version}): {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{where}: no schema: {e.message}")
    return errors


def daemonset_promises(ds: dict) -> list:
    """What the DaemonSet promises about its privileges, checked."""
    problems = []
    spec = ds["spec"]["template"]["spec"]
    if spec.get("hostPID") is not True:
        problems.append("hostPID is not true")
    if not any(t.get("operator") == "Exists" and "key" not in t
               for t in spec.get("tolerations", [])):
        problems.append("no toleration of every taint (operator: Exists, no key)")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        name = container["name"]
        sc = container.get("securityContext", {})
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop is not [ALL]")
        if not caps.get("add"):
            problems.append(f"{name}: no capabilities added explicitly")
        if "SYS_ADMIN" in caps.get("add", []):
            problems.append(f"{name}: adds SYS_ADMIN")
        for key, want in [("privileged", False), ("allowPrivilegeEscalation", False),
                          ("readOnlyRootFilesystem", True)]:
            if sc.get(key) is not want:
                problems.append(f"{name}: securityContext.{key} is not {want}")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{name}: no {kind}.{resource}")
        probe = container.get("livenessProbe", {}).get("httpGet", {})
        if probe.get("path") != "/healthz":
            problems.append(f"{name}: no liveness probe on /healthz")
        for mount in container.get("volumeMounts", []):
            host = volumes.get(mount["name"], {}).get("hostPath")
            if host and not mount.get("readOnly") and host["path"] not in WRITABLE_HOST_PATHS:
                problems.append(f"{name}: host path {host['path']} mounted writable")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="regenerate prometheusrule.yaml from rules.yml")
    args = parser.parse_args()
    failures = []

    generated = MANIFESTS / "prometheusrule.yaml"
    expected = prometheus_rule_text()
    if args.write:
        generated.write_text(expected)
    elif not generated.is_file() or generated.read_text() != expected:
        failures.append(f"{generated.relative_to(ROOT)} is not deploy/prometheus/rules.yml: "
                        "run `python3 scripts/check-kubernetes.py --write`")

    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    extra = set(kustomization) - {"apiVersion", "kind", "resources"}
    if extra:
        failures.append(f"kustomization.yaml uses {sorted(extra)}: this check applies "
                        "only `resources`")
    listed = kustomization.get("resources", [])
    present = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(listed) != present:
        failures.append(f"kustomization.yaml lists {sorted(listed)}, the directory has {present}")

    versions = kubernetes_versions()
    kinds = []
    for name in listed:
        for doc in yaml.safe_load_all((MANIFESTS / name).read_text()):
            if not doc:
                continue
            where = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            kinds.append(doc.get("kind"))
            failures.extend(validate(doc, where, versions))
            if doc.get("kind") == "DaemonSet":
                failures.extend(f"{where}: {p}" for p in daemonset_promises(doc))
    for kind in ("Namespace", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"):
        if kind not in kinds:
            failures.append(f"no {kind} among the manifests")

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"kubernetes manifests: {len(kinds)} objects ({', '.join(kinds)}) against "
          f"Kubernetes {versions[0]}-{versions[-1]} and the prometheus-operator schemas: "
          f"{'ok' if not failures else f'{len(failures)} problems'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
