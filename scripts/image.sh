#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds tcptrack's OCI image offline, from this build tree and the host's
# Debian libraries only: the binary (debug info stripped), exactly the shared
# libraries ldd names and the dynamic loader, an nsswitch.conf for host names
# (-r, an IPFIX collector's name), and empty mount points. No shell, no
# package manager. Written to BUILD_DIR/tcptrack-image.tar (oci-archive,
# gzip layers), tagged tcptrack:VERSION.
# Usage: scripts/image.sh [BUILD_DIR]   (default: build; builds tcptrack if missing)
# Needs buildah (Debian: apt-get install buildah); root, or a working rootless buildah.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$src/build}")
out=$build/tcptrack-image.tar
binary=$build/tcptrack

command -v buildah >/dev/null || { echo "image.sh: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
if [ ! -x "$binary" ]; then
  cmake -S "$src" -B "$build"
  cmake --build "$build" -j2 --target tcptrack
fi

version=$("$binary" --version | awk '{ print $2; exit }')
[ -n "$version" ] || { echo "image.sh: cannot read the version from $binary --version" >&2; exit 1; }
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
interp=$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || { echo "image.sh: $binary has no program interpreter" >&2; exit 1; }

# A private vfs store, so nothing is left in the host's container storage
# (buildah still keeps its blob-info cache in /var/lib/containers/cache).
work=$(mktemp -d /tmp/tcptrack-image.XXXXXX)
ctr=tcptrack-image-$$
bh=(buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")
cleanup() {
  "${bh[@]}" rm "$ctr" >/dev/null 2>&1 || true
  "${bh[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The root file system, laid out like Debian 12's merged /usr.
root=$work/rootfs
libdir=usr/lib/$multiarch
mkdir -p "$root/usr/bin" "$root/$libdir" "$root/usr/lib64" "$root/etc" \
  "$root/proc" "$root/sys" "$root/dev" "$root/run/tcptrack"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
objcopy --strip-debug "$binary" "$root/usr/bin/tcptrack"
chmod 0755 "$root/usr/bin/tcptrack"

# Exactly what the dynamic linker loads: ldd's "name => path" lines (libbpf
# is not among them when it is linked statically, the default), each copied
# under its soname, and the loader at the path the binary asks for.
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $1 " " $3 }')
[ -n "$libs" ] || { echo "image.sh: ldd lists no libraries for $binary" >&2; exit 1; }
if grep -q '^libbpf' <<<"$libs"; then
  echo "image.sh: note: libbpf is linked dynamically (-DTCPTRACK_STATIC_LIBBPF=OFF); copying it too" >&2
fi
while read -r name path; do
  cp -L "$path" "$root/$libdir/$name"
done <<<"$libs"
loader=$(basename "$interp")
cp -L "$interp" "$root/$libdir/$loader"
ln -s "../lib/$multiarch/$loader" "$root/usr/lib64/$loader"
[ -e "$root$interp" ] || { echo "image.sh: the loader $interp is not reachable in the image" >&2; exit 1; }

# getnameinfo/getaddrinfo read /etc/hosts before DNS, as on the host
# (the kubelet mounts /etc/hosts and /etc/resolv.conf).
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod -R u=rwX,go=rX "$root"
chmod 1777 "$root/run/tcptrack"  # the lock directory's mode when tcptrack makes it

tar --sort=name --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .

created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
"${bh[@]}" from --name "$ctr" scratch >/dev/null
"${bh[@]}" add "$ctr" "$work/layer.tar" / >/dev/null
labels=(
  --label org.opencontainers.image.title=tcptrack
  --label "org.opencontainers.image.description=TCP connection tracker: eBPF classifiers count every TCP segment into its connection"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.created=$created"
  --label org.opencontainers.image.licenses=MIT
)
[ -z "${TCPTRACK_IMAGE_SOURCE:-}" ] || labels+=(--label "org.opencontainers.image.source=$TCPTRACK_IMAGE_SOURCE")
"${bh[@]}" config "${labels[@]}" --arch "$arch" --os linux --workingdir / --user 0:0 \
  --entrypoint '["/usr/bin/tcptrack"]' --cmd '' "$ctr"
rm -f "$out"
"${bh[@]}" commit --quiet --format oci --disable-compression=false --timestamp "$(date -u -d "$created" +%s)" \
  "$ctr" "oci-archive:$out:tcptrack:$version" >/dev/null

unpacked=$(du -sb --apparent-size "$root" | cut -f1)
layer=$(tar -tvf "$out" | awk '$6 ~ /^blobs\/sha256\// { if ($3 > max) max = $3 } END { print max + 0 }')
printf 'image.sh: %s (tcptrack:%s, %s): %s compressed (archive %s), %s unpacked\n' \
  "$out" "$version" "$arch" "$(numfmt --to=iec-i --suffix=B "$layer")" \
  "$(numfmt --to=iec-i --suffix=B "$(stat -c %s "$out")")" "$(numfmt --to=iec-i --suffix=B "$unpacked")"
