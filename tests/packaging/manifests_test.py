#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""deploy/kubernetes, rendered: `kubectl kustomize` of base/, privileged/,
podmonitor/ and pods/, and the DaemonSet checked against the README's "Kubernetes"
section, which is where the rule is written: its capability table is the
exact list to add (everything else dropped), its mount table the exact
volume mounts. Also: host network, no host PID, the image entry, the
arguments the README gives, the metrics port in the args, the container
port, both probes and the scrape annotations; the resources follow from the
README's measured footprint table by the rule written beside it;
privileged/ has privileged: true and no capability list; podmonitor/ adds a
PodMonitor on that port; pods/ adds exactly the README's "pods/ adds" table
(host PID, capabilities, the cgroup mount) and the arguments it names.

Usage: manifests_test.py --source-dir SRC. No root; exit 77 without kubectl.
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import unittest

try:
    import yaml
except ImportError:  # a python3 other than Debian's: use Debian's python3-yaml
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml

SRC = None
PORT = 9464
ARGS = ["--format", "none", "--no-process", "--prometheus", "0.0.0.0:%d" % PORT]


def readme_section():
    with open(os.path.join(SRC, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Kubernetes\n(.*?)^## ", text, re.M | re.S)
    assert m, "README.md has no Kubernetes section"
    return m.group(1)


def documented_caps():
    """`CAP_X` rows of the README's capability table, as Kubernetes names (X)."""
    return sorted(re.findall(r"^\| `CAP_([A-Z_]+)` \|", readme_section(), re.M))


def documented_mounts():
    return sorted(re.findall(r"^\| `(/[^`]+)` \|", readme_section(), re.M))


def pods_additions():
    """The README's "pods/ adds" table: (host settings, capabilities, mount paths)."""
    rows = re.findall(r"^\| pods/: `([^`]+)`", readme_section(), re.M)
    caps = sorted(r[len("CAP_"):] for r in rows if r.startswith("CAP_"))
    mounts = sorted(r for r in rows if r.startswith("/"))
    host = sorted(r for r in rows if not r.startswith(("CAP_", "/")))
    return host, caps, mounts


def footprint_table():
    """The README's measured footprint (bench/footprint.sh): {scenario: {column: cell}}."""
    sec = readme_section()
    m = re.search(r"^(\| scenario \|.*)\n\|[-:| ]+\|\n((?:\|.*\n)+)", sec, re.M)
    assert m, "README.md's Kubernetes section has no footprint table (| scenario | ...)"
    cols = [c.strip() for c in m.group(1).strip("|").split("|")]
    rows = {}
    for line in m.group(2).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(cols, cells))
    return rows


def number(cell):
    return float(cell.replace(",", "").replace("*", ""))


def footprint_row(rows, name):
    found = [r for k, r in rows.items() if k.startswith(name)]
    assert len(found) == 1, "README footprint table: %d rows named %r" % (len(found), name)
    return found[0]


def measured_resources():
    """The rule the README states under its footprint table:
    requests: CPU = the 1,000-connection millicores rounded up to 10m; memory = its
    RSS + maps (64 CPUs) rounded up to 8 MiB. Limit: memory = 1.5 x the
    100,000-connection peak RSS + maps (64 CPUs), rounded up to 64 MiB. No CPU limit."""
    rows = footprint_table()
    k1 = footprint_row(rows, "1,000 connections")
    k100 = footprint_row(rows, "100,000 connections")
    maps = "maps MiB, 64 CPUs"
    cpu = max(10, math.ceil(number(k1["millicores"]) / 10) * 10)
    req = math.ceil((number(k1["RSS MiB"]) + number(k1[maps])) / 8) * 8
    lim = math.ceil(1.5 * (number(k100["peak RSS MiB"]) + number(k100[maps])) / 64) * 64
    return {"requests": {"cpu": "%dm" % cpu, "memory": "%dMi" % req},
            "limits": {"memory": "%dMi" % lim}}


def render(overlay):
    p = subprocess.run(["kubectl", "kustomize", os.path.join(SRC, "deploy", "kubernetes", overlay)],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (overlay, p.stderr))
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def one(docs, kind):
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, "%d %s objects rendered" % (len(found), kind)
    return found[0]


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = render("base")
        cls.privileged = render("privileged")
        cls.podmonitor = render("podmonitor")
        cls.pods = render("pods")

    def container(self, docs):
        ds = one(docs, "DaemonSet")
        cs = ds["spec"]["template"]["spec"]["containers"]
        self.assertEqual(len(cs), 1)
        return ds, cs[0]

    def test_readme_tables(self):
        # Parsed at all, and holding the two tcptrack refuses to run without
        # (Privileges::missing, src/sys/privileges.cpp).
        self.assertTrue({"BPF", "NET_ADMIN"} <= set(documented_caps()), documented_caps())
        self.assertIn("/run/tcptrack", documented_mounts())

    def test_capabilities_are_the_documented_set(self):
        _, c = self.container(self.base)
        caps = c["securityContext"]["capabilities"]
        self.assertEqual(caps.get("drop"), ["ALL"])
        self.assertEqual(sorted(caps.get("add", [])), documented_caps())
        sc = c["securityContext"]
        self.assertNotIn("privileged", sc)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["runAsUser"], 0)

    def test_host_namespaces(self):
        ds, _ = self.container(self.base)
        spec = ds["spec"]["template"]["spec"]
        self.assertIs(spec["hostNetwork"], True)
        self.assertFalse(spec.get("hostPID", False))   # --no-process
        self.assertFalse(spec.get("hostIPC", False))
        self.assertEqual(spec["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertEqual(spec["serviceAccountName"], "tcptrack")
        self.assertIs(spec["automountServiceAccountToken"], False)
        sa = one(self.base, "ServiceAccount")
        self.assertEqual(sa["metadata"]["namespace"], ds["metadata"]["namespace"])
        ns = one(self.base, "Namespace")
        self.assertEqual(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged")

    def test_mounts_are_the_documented_set(self):
        ds, c = self.container(self.base)
        mounts = c.get("volumeMounts", [])
        self.assertEqual(sorted(m["mountPath"] for m in mounts), documented_mounts())
        vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        for m in mounts:
            self.assertFalse(m.get("readOnly", False), m)   # the lock directory is written
            self.assertEqual(vols[m["name"]]["hostPath"]["path"], m["mountPath"])
            self.assertEqual(vols[m["name"]]["hostPath"]["type"], "DirectoryOrCreate")
        self.assertEqual(set(vols), {m["name"] for m in mounts})

    def test_image_args_port_probes(self):
        ds, c = self.container(self.base)
        self.assertEqual(c["image"], "tcptrack:0.1.0")
        self.assertNotIn("command", c)   # the image's entrypoint, /usr/bin/tcptrack
        self.assertEqual(c["args"], ARGS)
        self.assertNotIn("-i", c["args"])   # the node's default-route interface
        # --node-name's default, $NODE_NAME, from the node the pod runs on.
        self.assertIn({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                      c["env"])
        ports = c["ports"]
        self.assertEqual([(p["name"], p["containerPort"], p["protocol"]) for p in ports],
                         [("metrics", PORT, "TCP")])
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe]["httpGet"], {"path": "/healthz", "port": "metrics"}, probe)
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(ann["prometheus.io/port"], str(PORT))
        self.assertEqual(ann["prometheus.io/path"], "/metrics")
        self.assertEqual(c["resources"], measured_resources())
        sel = ds["spec"]["selector"]["matchLabels"]
        labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(sel.items() <= labels.items(), (sel, labels))
        tol = ds["spec"]["template"]["spec"]["tolerations"]
        self.assertIn({"operator": "Exists"}, tol)

    def test_privileged_overlay(self):
        _, c = self.container(self.privileged)
        sc = c["securityContext"]
        self.assertIs(sc["privileged"], True)
        self.assertNotIn("capabilities", sc)
        self.assertNotIn("allowPrivilegeEscalation", sc)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        _, b = self.container(self.base)
        for k in ("args", "ports", "volumeMounts", "image", "readinessProbe", "livenessProbe"):
            self.assertEqual(c[k], b[k], k)

    def test_pods_overlay(self):
        ds, c = self.container(self.pods)
        _, b = self.container(self.base)
        host, caps, mounts = pods_additions()
        self.assertEqual(host, ["hostPID: true"])
        self.assertIs(ds["spec"]["template"]["spec"]["hostPID"], True)
        sc = c["securityContext"]
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sorted(sc["capabilities"]["add"]), sorted(documented_caps() + caps))
        self.assertEqual(caps, ["DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"])
        got = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertEqual(sorted(got), sorted(documented_mounts() + mounts))
        vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        for path in mounts:
            self.assertIs(got[path].get("readOnly"), True, path)
            self.assertEqual(vols[got[path]["name"]]["hostPath"]["path"], path)
        # Process attribution on, per-pod series, pod interfaces by pattern, not the uplink.
        args = c["args"]
        self.assertNotIn("--no-process", args)
        self.assertIn("--prometheus-pods", args)
        self.assertNotIn("--all-interfaces", args)
        pats = [args[i + 1] for i, a in enumerate(args) if a == "-i"]
        self.assertEqual(pats, ["veth*", "cali*", "lxc*", "eni*", "azv*", "gke*"])
        for pat in pats:
            self.assertIn("`%s`" % pat, readme_section())
        self.assertEqual(args[args.index("--prometheus") + 1], "0.0.0.0:%d" % PORT)
        for k in ("image", "ports", "readinessProbe", "livenessProbe", "resources", "env"):
            self.assertEqual(c[k], b[k], k)

    def test_podmonitor_overlay(self):
        pm = one(self.podmonitor, "PodMonitor")
        self.assertEqual(pm["apiVersion"], "monitoring.coreos.com/v1")
        ds, c = self.container(self.podmonitor)
        self.assertEqual(pm["metadata"]["namespace"], ds["metadata"]["namespace"])
        eps = pm["spec"]["podMetricsEndpoints"]
        self.assertEqual([(e["port"], e["path"]) for e in eps], [("metrics", "/metrics")])
        self.assertIn("metrics", [p["name"] for p in c["ports"]])
        labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(pm["spec"]["selector"]["matchLabels"].items() <= labels.items())
        self.assertEqual(one(self.base, "DaemonSet"), ds)


def main():
    global SRC
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    a, rest = ap.parse_known_args()
    SRC = os.path.abspath(a.source_dir)
    if not shutil.which("kubectl"):
        print("SKIP: kubectl is not installed (Debian 12's kubernetes-client 1.20 carries "
              "kustomize 2.0, too old for these manifests' patches and labels)")
        return 77
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
