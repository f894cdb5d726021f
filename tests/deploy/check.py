#!/usr/bin/env python3
"""Checks the security properties of deploy/ that schemas cannot: run by tests/deploy/run.sh.

Kubernetes: two replicas, probes on /healthz and /readyz, restricted pod security (non-root,
read-only root filesystem, no privilege escalation, every capability dropped, RuntimeDefault
seccomp) for every container, the keyring Secret mounted as a file, a default-deny NetworkPolicy.
Compose: PostgreSQL, two cellule replicas read-only without capabilities, a TLS proxy.
Containerfile: multi-stage, a numeric non-root USER, a HEALTHCHECK on /readyz.
systemd: LimitNOFILE and the main hardening options.
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2] / "deploy"
errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


def k8s_objects():
    for path in sorted((ROOT / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


objects = list(k8s_objects())
kinds = {(o["kind"], o["metadata"]["name"]): o for _, o in objects}
kustomization = yaml.safe_load((ROOT / "kubernetes" / "kustomization.yaml").read_text())
for res in kustomization["resources"]:
    check((ROOT / "kubernetes" / res).is_file(), f"kustomization: {res} missing")

ns = kinds.get(("Namespace", "cellule"))
check(ns is not None, "no Namespace cellule")
if ns:
    check(ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted",
          "namespace does not enforce the restricted Pod Security Standard")

dep = kinds.get(("Deployment", "cellule"))
check(dep is not None, "no Deployment cellule")
if dep:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    check(spec.get("replicas") == 2, "Deployment: replicas is not 2")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod: runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccomp RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, "pod: service account token mounted")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL")
        check("resources" in c and "limits" in c["resources"], f"{name}: resource limits")
    main = next(c for c in pod["containers"] if c["name"] == "cellule")
    check(main.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness on /healthz")
    check(main.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness on /readyz")
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    check("cellule-keyring" in secrets.values(), "keyring Secret not mounted as a volume")
    env = {e["name"]: e for e in main.get("env", [])}
    check("CELLULE_KEYRING" not in env, "keyring passed inline, not as a file")
    check("CELLULE_KEYRING_FILE" in env, "CELLULE_KEYRING_FILE not set")

policies = [o for (k, _), o in kinds.items() if k == "NetworkPolicy"]
check(any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
          and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies),
      "no default-deny NetworkPolicy")
check(any(p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "cellule"
          for p in policies), "no NetworkPolicy for the cellule pods")

compose = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
services = compose["services"]
check("postgres" in services, "compose: no postgres")
replicas = [s for n, s in services.items() if n.startswith("cellule-")]
check(len(replicas) == 2, "compose: not two cellule replicas")
for s in replicas:
    check(s.get("read_only") is True, "compose replica: read_only")
    check(s.get("cap_drop") == ["ALL"], "compose replica: cap_drop ALL")
    check(str(s.get("user", "")).split(":")[0] not in ("", "0", "root"), "compose replica: non-root user")
    check("/readyz" in " ".join(s.get("healthcheck", {}).get("test", [])), "compose replica: healthcheck /readyz")
proxy = services.get("proxy", {})
check("caddy" in proxy.get("image", "") and any("443" in str(p) for p in proxy.get("ports", [])),
      "compose: no TLS proxy on 443")
caddyfile = (ROOT / "compose" / "Caddyfile").read_text()
check("cellule-a:8080" in caddyfile and "cellule-b:8080" in caddyfile, "Caddyfile: not both replicas")

containerfile = (ROOT / "Containerfile").read_text().splitlines()
froms = [l for l in containerfile if l.startswith("FROM ")]
check(len(froms) >= 2, "Containerfile: not multi-stage")
users = [l.split()[1] for l in containerfile if l.startswith("USER ")]
check(bool(users) and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0",
      "Containerfile: no numeric non-root USER")
check(any(l.startswith("HEALTHCHECK") for l in containerfile)
      and "/readyz" in "\n".join(containerfile), "Containerfile: no HEALTHCHECK on /readyz")

unit = (ROOT / "cellule.service").read_text()
for key in ["LimitNOFILE=", "NoNewPrivileges=true", "ProtectSystem=strict", "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service", "PrivateTmp=true", "User=cellule"]:
    check(key in unit, f"cellule.service: {key}")

if errors:
    for e in errors:
        print(f"deploy: {e}", file=sys.stderr)
    sys.exit(1)
print("deploy: security properties hold")
