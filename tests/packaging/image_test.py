#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The OCI image, end to end (scripts/image.sh).

Builds the image from this build tree; `skopeo inspect` checks its labels,
entrypoint, OS and architecture; `skopeo copy` + `umoci unpack` give its root
file system, which must hold tcptrack, exactly the libraries ldd names, the
loader and nsswitch.conf, and no shell or package manager. Then the image's
own binary runs chrooted, as a pod would run it: in a private mount
namespace, the root file system bound read-only (readOnlyRootFilesystem),
/proc, /sys and /dev bound in, a fresh directory on /run/tcptrack (the
DaemonSet's hostPath). `--version`, `--check` (exit 0), and inside one of two
network namespaces joined by veth, one TCP connection per attach mode (TCX,
and legacy tc with TCPTRACK_DISABLE=tcx, which takes its lock in
/run/tcptrack) counted exactly: fwd_payload/rev_payload equal what the sockets
sent, and the Prometheus exporter (the DaemonSet's mode) serving the same
payload bytes. Everything (namespaces, temporary directories) is removed by
name, on failure too; mounts die with their mount namespace.

Usage: image_test.py --source-dir SRC --build-dir BUILD. Root only (exit 77).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TAG = "ttimg-%d" % os.getpid()
NS_A, NS_B = TAG + "-a", TAG + "-b"      # tcptrack and the client in A, the server in B
IF_A, IF_B = "ttimg%da" % (os.getpid() % 100000), "ttimg%db" % (os.getpid() % 100000)
ADDR_A, ADDR_B = "10.79.0.1", "10.79.0.2"
PROM_PORT = 9464
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "busybox", "toybox"}
PKG_MANAGERS = {"apt", "apt-get", "dpkg", "rpm", "yum", "dnf", "apk", "microdnf", "pip", "pip3"}

failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def run(cmd, timeout=120, check_rc=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s -> exit %d\nstdout: %s\nstderr: %s"
                           % (" ".join(cmd), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def mirror_hosts():
    """Host names of the apt sources: none may leak into the image's metadata."""
    hosts = set()
    for d, files in (("/etc/apt", ["sources.list"]),
                     ("/etc/apt/sources.list.d", os.listdir("/etc/apt/sources.list.d")
                      if os.path.isdir("/etc/apt/sources.list.d") else [])):
        for f in files:
            try:
                text = open(os.path.join(d, f), errors="replace").read()
            except OSError:
                continue
            hosts.update(re.findall(r"[a-z][a-z0-9+.-]*://([^/\s:]+)", text))
    return hosts


def chrooted(rootfs, lockdir, args, netns=None, env=None):
    """The command that runs the image's tcptrack as a pod would: private mount
    namespace, read-only root, /proc /sys /dev bound in, LOCKDIR on /run/tcptrack.
    With NETNS, inside that network namespace (whose /sys ip netns exec mounts)."""
    script = ('set -e; r="$1"; l="$2"; shift 2; '
              'mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"; '
              'mount --bind /proc "$r/proc"; mount --rbind /sys "$r/sys"; '
              'mount --rbind /dev "$r/dev"; mount --bind "$l" "$r/run/tcptrack"; '
              'exec chroot "$r" /usr/bin/tcptrack "$@"')
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
           rootfs, lockdir] + list(args)
    if env:
        cmd = ["env"] + ["%s=%s" % kv for kv in env.items()] + cmd
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    return cmd


def in_ns(ns, *cmd):
    return ["ip", "netns", "exec", ns] + list(cmd)


def wait_attached(proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run(in_ns(NS_A, "bpftool", "net", "show", "dev", IF_A), check_rc=False).stdout
        lines = [l for l in out.splitlines() if "tcptrack" in l]
        if any("ingress" in l for l in lines) and any("egress" in l for l in lines):
            return lines
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def scrape(port):
    code = ("import urllib.request,sys; "
            "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:%d/metrics', timeout=5)"
            ".read().decode())" % port)
    return run(in_ns(NS_A, sys.executable, "-c", code), timeout=20).stdout


def metric(text, name, labels):
    total = None
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        m = re.match(r"[^{]+\{([^}]*)\}\s+(\S+)", line)
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total = (total or 0) + float(m.group(2))
    return total


def transfer(rootfs, lockdir, traffic, label, sent, received, env=None):
    """One connection A -> B with SENT bytes up and RECEIVED down, watched by the
    image's tcptrack in A; its JSON rows and the exporter must agree with the sockets."""
    cmd = chrooted(rootfs, lockdir, ["-i", IF_A, "--format", "json", "--summary", "--interval",
                                     "1", "--prometheus", "127.0.0.1:%d" % PROM_PORT],
                   netns=NS_A, env=env)
    tt = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        if not check(wait_attached(tt) is not None, "%s: tcptrack did not attach" % label):
            return
        server = subprocess.Popen(in_ns(NS_B, sys.executable, traffic, "server", "--bind", ADDR_B,
                                        "--max-conns", "1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = json.loads(server.stdout.readline())
        client = run(in_ns(NS_A, sys.executable, traffic, "client", "--host", ADDR_B, "--port",
                           str(ready["port"]), "--conn", "%d:%d" % (sent, received)), timeout=60)
        conn = json.loads(client.stdout)["conns"][0]
        check(conn["sent"] == sent and conn["received"] == received,
              "%s: the sockets moved %s" % (label, conn))
        server.wait(timeout=20)
        time.sleep(2.5)  # two reports: the connection's CLOSED row is out
        metrics = scrape(PROM_PORT)
    finally:
        if tt.poll() is None:
            tt.send_signal(signal.SIGINT)
        try:
            out, err = tt.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            tt.kill()
            out, err = tt.communicate()
        if server and server.poll() is None:
            server.kill()
            server.wait()
    check(tt.returncode == 0, "%s: tcptrack exited %s: %s" % (label, tt.returncode, err[-1500:]))
    rows = []
    for line in out.splitlines():
        obj = json.loads(line)
        if obj.get("type") != "summary" and obj.get("sport") == conn["client_port"]:
            rows.append(obj)
    if not check(rows, "%s: no row for client port %d in:\n%s" % (label, conn["client_port"],
                                                                   out[-3000:])):
        return
    last = rows[-1]
    ok = check(last["fwd_payload"] == sent and last["rev_payload"] == received,
               "%s: fwd_payload/rev_payload %s/%s, the sockets sent %d/%d"
               % (label, last["fwd_payload"], last["rev_payload"], sent, received))
    check(last["state"] in ("CLOSED", "RESET") and last["src"] == ADDR_A and last["dst"] == ADDR_B,
          "%s: last row %s" % (label, last))
    up = metric(metrics, "tcptrack_bytes_total", {"interface": IF_A, "kind": "payload",
                                                 "direction": "client_to_server"})
    down = metric(metrics, "tcptrack_bytes_total", {"interface": IF_A, "kind": "payload",
                                                   "direction": "server_to_client"})
    ok &= check(up == sent and down == received,
                "%s: Prometheus payload fwd/rev %s/%s, expected %d/%d\n%s"
                % (label, up, down, sent, received, metrics[-2000:]))
    if ok:
        print("ok: %s: %d bytes up, %d down counted exactly (JSON %s row, /metrics)"
              % (label, sent, received, last["state"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--build-dir", required=True)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: needs root (buildah, chroot, network namespaces)")
        return 77
    for tool in ("buildah", "skopeo", "umoci", "unshare", "chroot", "ip", "bpftool", "ldd"):
        if not shutil.which(tool):
            print("FAIL: %s is not installed (scripts/setup.sh installs it)" % tool)
            return 1
    src, build = os.path.abspath(a.source_dir), os.path.abspath(a.build_dir)
    binary = os.path.join(build, "tcptrack")
    archive = os.path.join(build, "tcptrack-image.tar")
    traffic = os.path.join(src, "tests", "e2e", "traffic.py")
    work = tempfile.mkdtemp(prefix=TAG + ".")
    try:
        # --- build
        p = run(["bash", os.path.join(src, "scripts", "image.sh"), build], timeout=900)
        print(p.stdout.strip())
        version = run([binary, "--version"]).stdout.split()[1]

        # --- inspect
        meta = json.loads(run(["skopeo", "inspect", "oci-archive:" + archive]).stdout)
        config = json.loads(run(["skopeo", "inspect", "--config", "oci-archive:" + archive]).stdout)
        labels = meta.get("Labels") or {}
        check(labels.get("org.opencontainers.image.title") == "tcptrack", "title: %s" % labels)
        check(labels.get("org.opencontainers.image.version") == version,
              "version label %s, binary %s" % (labels.get("org.opencontainers.image.version"), version))
        check(labels.get("org.opencontainers.image.licenses") == "MIT", "licenses: %s" % labels)
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                           labels.get("org.opencontainers.image.created", "")), "created: %s" % labels)
        check(labels.get("org.opencontainers.image.description"), "no description")
        check(config["config"].get("Entrypoint") == ["/usr/bin/tcptrack"],
              "entrypoint %s" % config["config"].get("Entrypoint"))
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        check(meta.get("Architecture") == arch and meta.get("Os") == "linux",
              "platform %s/%s, expected linux/%s" % (meta.get("Os"), meta.get("Architecture"), arch))
        check(len(meta.get("Layers", [])) == 1, "layers: %s" % meta.get("Layers"))
        blob = json.dumps([meta, config])
        leaked = [h for h in mirror_hosts() if h in blob]
        check(not leaked, "package mirror host names in the image metadata: %s" % leaked)

        # --- unpack
        run(["skopeo", "copy", "--quiet", "oci-archive:" + archive, "oci:%s/oci:tcptrack" % work])
        run(["umoci", "unpack", "--image", "%s/oci:tcptrack" % work, "%s/bundle" % work])
        rootfs = os.path.join(work, "bundle", "rootfs")
        files, names = set(), set()
        for d, dirs, fs in os.walk(rootfs):
            for f in fs + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
                rel = os.path.relpath(os.path.join(d, f), rootfs)
                names.add(f)
                if not os.path.islink(os.path.join(d, f)):
                    files.add(rel)
        check(not (names & SHELLS), "shells in the image: %s" % (names & SHELLS))
        check(not (names & PKG_MANAGERS), "package managers in the image: %s" % (names & PKG_MANAGERS))
        ldd = run(["ldd", binary]).stdout
        needed = {m.group(1) for m in re.finditer(r"^\s*(\S+) => /", ldd, re.M)}
        interp = re.search(r"^\s*(/\S+) \(", ldd, re.M).group(1)
        multiarch = run(["gcc", "-print-multiarch"]).stdout.strip()
        want = {"usr/bin/tcptrack", "etc/nsswitch.conf"} | \
            {"usr/lib/%s/%s" % (multiarch, n) for n in needed | {os.path.basename(interp)}}
        check(files == want, "image files: extra %s, missing %s"
              % (sorted(files - want), sorted(want - files)))
        check(not any(n.startswith("libbpf") for n in needed), "libbpf linked dynamically: %s" % needed)
        check(os.path.exists(rootfs + interp), "loader %s missing in the image" % interp)
        for d in ("proc", "sys", "dev", "run/tcptrack"):
            check(os.path.isdir(os.path.join(rootfs, d)), "mount point /%s missing" % d)
        bid = lambda f: re.search(r"Build ID: (\w+)", run(["readelf", "-n", f]).stdout).group(1)
        check(bid(binary) == bid(os.path.join(rootfs, "usr/bin/tcptrack")),
              "the image's tcptrack is not this build's (build ID)")
        unpacked = sum(os.lstat(os.path.join(rootfs, f)).st_size for f in files)
        print("ok: inspected and unpacked: %d files, %.1f MiB, entrypoint /usr/bin/tcptrack, "
              "linux/%s, no shell or package manager" % (len(files), unpacked / 2**20, arch))

        # --- run the image's binary
        lockdir = os.path.join(work, "lock")
        os.mkdir(lockdir, 0o1777)
        p = run(chrooted(rootfs, lockdir, ["--version"]), check_rc=False)
        check(p.returncode == 0 and p.stdout.strip() == "tcptrack " + version,
              "--version in the image: %d %r %r" % (p.returncode, p.stdout, p.stderr))
        p = run(chrooted(rootfs, lockdir, ["--check"]), check_rc=False)
        check(p.returncode == 0, "--check in the image exit %d:\n%s%s" % (p.returncode, p.stdout, p.stderr))
        print("ok: --version and --check (exit %d) from the image" % p.returncode)

        run(["ip", "netns", "add", NS_A])
        run(["ip", "netns", "add", NS_B])
        run(["ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", IF_B, "netns", NS_B])
        for ns, ifc, addr in ((NS_A, IF_A, ADDR_A), (NS_B, IF_B, ADDR_B)):
            run(in_ns(ns, "ip", "addr", "add", addr + "/24", "dev", ifc))
            run(in_ns(ns, "ip", "link", "set", ifc, "up"))
            run(in_ns(ns, "ip", "link", "set", "lo", "up"))
        transfer(rootfs, lockdir, traffic, "tcx", 1_000_003, 250_007)
        transfer(rootfs, lockdir, traffic, "legacy tc", 700_001, 90_001,
                 env={"TCPTRACK_DISABLE": "tcx"})
        left = run(in_ns(NS_A, "bpftool", "net", "show", "dev", IF_A)).stdout
        check("tcptrack" not in left, "programs left attached:\n" + left)
        check(not os.listdir(lockdir), "lock files left: %s" % os.listdir(lockdir))
    except Exception as e:  # a step that could not run at all
        fail("%s: %s" % (type(e).__name__, e))
    finally:
        for ns in (NS_A, NS_B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
