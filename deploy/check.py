#!/usr/bin/env python3
"""Checks of deploy/ that no schema validator makes: the rules that tie the
Kubernetes manifests, the systemd unit and the container recipe to the gateway's
drain, probes, ports and certificate reload. Run by .ci/run (needs PyYAML,
installed with yamllint). Exits 1 naming every broken rule."""
import re
import sys
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


defaults = tomllib.loads((DEPLOY / "gateway.toml").read_text())
docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s/gateway.yaml").read_text()) if d]
by_kind = {d["kind"]: d for d in docs}
for kind in ("ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget"):
    check(kind in by_kind, f"k8s: no {kind}")
if errors:
    sys.exit("\n".join(errors))

config = tomllib.loads(by_kind["ConfigMap"]["data"]["gateway.toml"])
drain = {**defaults["drain"], **config.get("drain", {})}
# After the drain the exit waits up to admin_timeouts.shutdown_grace_ms for the
# admin requests in progress: the kill must come after both.
admin_grace = {**defaults["admin_timeouts"], **config.get("admin_timeouts", {})}["shutdown_grace_ms"]
deadline_s = (drain["deadline_ms"] + admin_grace) / 1000
pod = by_kind["StatefulSet"]["spec"]["template"]["spec"]
grace = pod.get("terminationGracePeriodSeconds", 30)
check(grace > deadline_s, f"k8s: terminationGracePeriodSeconds {grace} must exceed drain.deadline_ms "
      f"plus admin_timeouts.shutdown_grace_ms ({deadline_s} s)")
(gw,) = [c for c in pod["containers"] if c["name"] == "gateway"]
check(gw.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "k8s: readiness probe must be /readyz")
check(gw.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "k8s: liveness probe must be /healthz")
pre = gw.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
check(pre[:1] == ["/usr/local/bin/outpost-admin"] and pre[-1:] == ["drain"], "k8s: preStop must run outpost-admin drain")
check(gw.get("securityContext", {}).get("readOnlyRootFilesystem") is True, "k8s: root filesystem must be read-only")
check(config.get("admin_listen", "").startswith("0.0.0.0:"), "k8s: admin_listen must be reachable by the kubelet's probes")
admin_port = int(config["admin_listen"].rsplit(":", 1)[1])
ports = {p["name"]: p for p in gw["ports"]}
check(ports.get("quic", {}).get("protocol") == "UDP", "k8s: the quic port must be UDP")
check(ports.get("admin", {}).get("containerPort") == admin_port, "k8s: the admin port must match admin_listen")
mounts = {m["mountPath"]: m for m in gw["volumeMounts"]}
tls = config.get("tls", {})
for key in ("cert_path", "key_path"):
    path = tls.get(key, "")
    mount = mounts.get(str(Path(path).parent))
    check(mount is not None, f"k8s: tls.{key} {path} is not in a mounted directory")
    check(mount is None or "subPath" not in mount,
          f"k8s: tls.{key}: a subPath mount never sees secret updates, so hot reload would not follow")
check(str(Path(config.get("data_dir", "data"))) in mounts, "k8s: data_dir must be a mounted (writable) volume")
svc = by_kind["Service"]["spec"]
check(all(p.get("protocol") == "UDP" for p in svc["ports"]), "k8s: the client Service is UDP only")
check(all(p.get("targetPort") != "admin" and p.get("port") != admin_port for p in svc["ports"]),
      "k8s: the admin port must not be on a Service")
check(by_kind["PodDisruptionBudget"]["spec"]["selector"] == by_kind["StatefulSet"]["spec"]["selector"],
      "k8s: the PodDisruptionBudget must select the gateways")

unit = (DEPLOY / "systemd/outpost-gateway.service").read_text()
m = re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.M)
stop_after = defaults["drain"]["deadline_ms"] + defaults["admin_timeouts"]["shutdown_grace_ms"]
check(m is not None and int(m.group(1)) > stop_after / 1000,
      "systemd: TimeoutStopSec must exceed drain.deadline_ms plus admin_timeouts.shutdown_grace_ms")
check(re.search(r"^KillSignal=SIGTERM$", unit, re.M) is not None, "systemd: KillSignal must be SIGTERM (drain)")

docker = (DEPLOY / "docker/Dockerfile").read_text()
check(re.search(r"^USER \d+", docker, re.M) is not None, "docker: must run as a numeric non-root USER")
check("EXPOSE 4433/udp 9433/tcp" in docker, "docker: must expose 4433/udp and 9433/tcp")
check("STOPSIGNAL SIGTERM" in docker, "docker: STOPSIGNAL must be SIGTERM (drain)")
check(len(re.findall(r"^FROM ", docker, re.M)) >= 2, "docker: must be multi-stage")

sysctl = (DEPLOY / "sysctl.d/60-outpost-udp.conf").read_text()
want = {"net.core.rmem_max": defaults["transport"]["udp_recv_buffer_bytes"],
        "net.core.wmem_max": defaults["transport"]["udp_send_buffer_bytes"]}
for key, size in want.items():
    m = re.search(rf"^{re.escape(key)} = (\d+)$", sysctl, re.M)
    check(m is not None and int(m.group(1)) >= size, f"sysctl: {key} must allow the gateway's {size}-byte buffer")

if errors:
    sys.exit("deploy/ checks failed:\n  " + "\n  ".join(errors))
print("deploy/ checks passed")
