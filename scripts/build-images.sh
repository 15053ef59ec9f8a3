#!/usr/bin/env bash
# Build the local container images Dubernetes uses, with no container registry:
#
#   dubernetes/whoami:v1   examples/whoami as a static binary on an empty image
#   dubernetes/whoami:v2   the same, with WHOAMI_VERSION=v2
#   dubernetes/whoami:crash, :nolisten, :flaky, :slow
#                          v2 with a bad behaviour, for the safe-rollout tests:
#                          exits at once (code 3); never listens; serves, then
#                          exits after 2s (code 4); listens only after 3s
#   dubernetes/whoami:stubborn  the same, for slow-stop tests (WHOAMI_IGNORE_SIGTERM=1)
#   dubernetes/nginx:local-4
#                          Debian's nginx with its njs and Lua modules
#                          (libnginx-mod-http-js, libnginx-mod-http-lua with
#                          lua-resty-core and OpenResty's LuaJIT; extracted, not
#                          installed) on an empty image. The ingress routes with
#                          Lua's balancer (keep-alive to replicas, no reload on
#                          replica changes). Also nginx's stream module and its njs
#                          module (libnginx-mod-stream, libnginx-mod-stream-js), loaded
#                          only when a pod's `expose` asks for TCP listeners. Older
#                          tags (`:local-2`, `:local-3`) are no longer built.
#   dubernetes/probe:local Debian's microsocks (extracted) on an empty image: the swarm
#                          backend's probe agent on the overlay network
#   dubernetes/busybox:local
#                          Debian's busybox-static (extracted) on an empty image: a shell
#                          for tests of stateful pods (a counter kept on a volume)
#   dubernetes/names:local dubernetes-names (this workspace) as a static binary on an
#                          empty image: an instance's name responder (pod names)
#
# Needs: docker (daemon running), cargo/rustc, and Debian's apt for the nginx package
# and anything else missing. Idempotent; a second run mostly hits caches. Runs from any
# directory. Prints the tags it built on stdout, one a line (everything else goes to
# stderr).
#
# Environment:
#   DUBERNETES_DEB_CACHE  where downloaded .deb files are kept
#                         (default: ${XDG_CACHE_HOME:-$HOME/.cache}/dubernetes/debs)
set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHOAMI_DIR="$ROOT/examples/whoami"
WHOAMI_TARGET_DIR="$WHOAMI_DIR/target"
DEB_CACHE="${DUBERNETES_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dubernetes/debs}"

log() { echo "build-images: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
fi

APT_UPDATED=0
apt_update() {
	if [[ $APT_UPDATED -eq 0 ]]; then
		log "apt-get update"
		"${SUDO[@]}" apt-get update -qq >&2
		APT_UPDATED=1
	fi
}

# Install the given Debian packages unless they are installed already.
apt_install() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null ||
			missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	apt_update
	log "installing ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Candidate version of a Debian package, empty if unknown.
apt_candidate() {
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}

# Print the path of a cached .deb of package $1 (the candidate version when it can be
# downloaded; else any cached version, so that the build also works without apt).
fetch_deb() {
	local pkg=$1 cand f
	mkdir -p "$DEB_CACHE"
	cand="$(apt_candidate "$pkg")"
	if [[ -n $cand ]]; then
		for f in "$DEB_CACHE/${pkg}"_*.deb; do
			[[ -e $f ]] || continue
			if [[ $(dpkg-deb -f "$f" Package) == "$pkg" && $(dpkg-deb -f "$f" Version) == "$cand" ]]; then
				echo "$f"
				return 0
			fi
		done
		log "apt-get download $pkg=$cand"
		if (cd "$DEB_CACHE" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$cand" >&2); then
			for f in "$DEB_CACHE/${pkg}"_*.deb; do
				if [[ -e $f && $(dpkg-deb -f "$f" Version) == "$cand" ]]; then
					echo "$f"
					return 0
				fi
			done
		fi
		log "warning: could not download $pkg=$cand, trying the cache"
	fi
	local best="" best_ver="" ver
	for f in "$DEB_CACHE/${pkg}"_*.deb; do
		[[ -e $f ]] || continue
		ver="$(dpkg-deb -f "$f" Version)"
		if [[ -z $best ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
			best="$f"
			best_ver="$ver"
		fi
	done
	[[ -n $best ]] || return 1
	echo "$best"
}

# --- tools -------------------------------------------------------------------------
command -v docker >/dev/null 2>&1 || die "docker CLI not found (install docker.io and start dockerd)"
docker info >/dev/null 2>&1 || die "cannot reach the docker daemon (is dockerd running? are you in the docker group?)"
command -v cargo >/dev/null 2>&1 || die "cargo not found (a Rust toolchain is needed)"
command -v rustc >/dev/null 2>&1 || die "rustc not found (a Rust toolchain is needed)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found (a Debian-based host is needed)"
apt_install libc-bin gcc libc6-dev

# The legacy builder needs no buildx and pulls nothing for FROM scratch.
if ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/dubernetes-images.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

docker_build() { # docker_build CONTEXT TAG [docker build args...]
	local ctx=$1 tag=$2
	shift 2
	log "docker build $tag"
	docker build --tag "$tag" "$@" "$ctx" >&2
}

# --- whoami ------------------------------------------------------------------------
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
[[ -n $HOST_TRIPLE ]] || die "cannot tell rustc's host target"
log "cargo build examples/whoami (static, $HOST_TRIPLE)"
(
	cd "$WHOAMI_DIR"
	RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
		--target "$HOST_TRIPLE" --target-dir "$WHOAMI_TARGET_DIR" >&2
)
WHOAMI_BIN="$WHOAMI_TARGET_DIR/$HOST_TRIPLE/release/whoami"
[[ -x $WHOAMI_BIN ]] || die "$WHOAMI_BIN was not built"
if ! LC_ALL=C ldd "$WHOAMI_BIN" 2>&1 | grep -E 'not a dynamic executable|statically linked' >/dev/null; then
	die "$WHOAMI_BIN is not statically linked"
fi

mkdir -p "$STAGE/whoami"
cp "$ROOT/images/whoami/Dockerfile" "$STAGE/whoami/Dockerfile"
cp "$WHOAMI_BIN" "$STAGE/whoami/whoami"
docker_build "$STAGE/whoami" dubernetes/whoami:v1 --build-arg WHOAMI_VERSION=v1
docker_build "$STAGE/whoami" dubernetes/whoami:v2 --build-arg WHOAMI_VERSION=v2
# Bad revisions: v2 plus one environment variable (FROM a local image pulls nothing).
WHOAMI_VARIANTS=(
	"crash WHOAMI_EXIT_CODE=3"
	"nolisten WHOAMI_NO_LISTEN=1"
	"flaky WHOAMI_DIE_AFTER_MS=2000"
	"slow WHOAMI_STARTUP_DELAY_MS=3000"
)
for variant in "${WHOAMI_VARIANTS[@]}"; do
	read -r tag setting <<<"$variant"
	mkdir -p "$STAGE/whoami-$tag"
	printf 'FROM dubernetes/whoami:v2\nENV %s\n' "$setting" >"$STAGE/whoami-$tag/Dockerfile"
	docker_build "$STAGE/whoami-$tag" "dubernetes/whoami:$tag"
done
# The same app, for tests of slow stops: run it with WHOAMI_IGNORE_SIGTERM=1.
docker_build "$STAGE/whoami" dubernetes/whoami:stubborn --build-arg WHOAMI_VERSION=stubborn

# --- name responder -------------------------------------------------------------------
# Its own target dir: static flags must not invalidate the workspace's build cache.
log "cargo build dubernetes-names (static, $HOST_TRIPLE)"
(
	cd "$ROOT"
	RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -p dubernetes-names \
		--target "$HOST_TRIPLE" --target-dir "$ROOT/target/names-static" >&2
)
NAMES_BIN="$ROOT/target/names-static/$HOST_TRIPLE/release/dubernetes-names"
[[ -x $NAMES_BIN ]] || die "$NAMES_BIN was not built"
if ! LC_ALL=C ldd "$NAMES_BIN" 2>&1 | grep -E 'not a dynamic executable|statically linked' >/dev/null; then
	die "$NAMES_BIN is not statically linked"
fi
mkdir -p "$STAGE/names/names"
cp "$ROOT/images/names/Dockerfile" "$STAGE/names/Dockerfile"
cp "$NAMES_BIN" "$STAGE/names/dubernetes-names"
printf 'end\n' >"$STAGE/names/names/table"
chmod 0755 "$STAGE/names/names"
chmod 0644 "$STAGE/names/names/table"
docker_build "$STAGE/names" dubernetes/names:local

# --- nginx -------------------------------------------------------------------------
# Package lists are needed to know the candidate versions (empty on a fresh machine).
if [[ -z $(apt_candidate nginx-common) ]]; then
	apt_update || log "warning: apt-get update failed, using cached packages"
fi
DEB_ROOT="$STAGE/deb"
mkdir -p "$DEB_ROOT"
NGINX_DEB=""
# The package holding /usr/sbin/nginx: `nginx` since bookworm, nginx-core/-light before.
for pkg in nginx nginx-core nginx-light; do
	deb="$(fetch_deb "$pkg")" || continue
	if dpkg-deb -c "$deb" | grep -E '\./usr/sbin/nginx$' >/dev/null; then
		NGINX_DEB="$deb"
		break
	fi
done
[[ -n $NGINX_DEB ]] || die "no Debian package with /usr/sbin/nginx could be downloaded"
COMMON_DEB="$(fetch_deb nginx-common)" || die "cannot download nginx-common"
# njs: the ingress picks replicas per request from files (no reload on replica changes).
NJS_DEB="$(fetch_deb libnginx-mod-http-js)" || die "cannot download libnginx-mod-http-js (nginx's njs module)"
# TCP services (pods' `expose`): the stream module and its njs module, same way.
STREAM_DEB="$(fetch_deb libnginx-mod-stream)" || die "cannot download libnginx-mod-stream (nginx's stream module)"
STREAM_JS_DEB="$(fetch_deb libnginx-mod-stream-js)" || die "cannot download libnginx-mod-stream-js (njs for nginx's stream module)"
log "using $(basename "$NGINX_DEB"), $(basename "$COMMON_DEB"), $(basename "$NJS_DEB"), $(basename "$STREAM_DEB") and $(basename "$STREAM_JS_DEB")"
dpkg-deb -x "$NGINX_DEB" "$DEB_ROOT"
dpkg-deb -x "$COMMON_DEB" "$DEB_ROOT"
dpkg-deb -x "$NJS_DEB" "$DEB_ROOT"
dpkg-deb -x "$STREAM_DEB" "$DEB_ROOT"
dpkg-deb -x "$STREAM_JS_DEB" "$DEB_ROOT"
NJS_SO=usr/lib/nginx/modules/ngx_http_js_module.so
[[ -f $DEB_ROOT/$NJS_SO ]] || die "$NJS_SO not found in $(basename "$NJS_DEB")"
STREAM_SO=usr/lib/nginx/modules/ngx_stream_module.so
STREAM_JS_SO=usr/lib/nginx/modules/ngx_stream_js_module.so
[[ -f $DEB_ROOT/$STREAM_SO ]] || die "$STREAM_SO not found in $(basename "$STREAM_DEB")"
[[ -f $DEB_ROOT/$STREAM_JS_SO ]] || die "$STREAM_JS_SO not found in $(basename "$STREAM_JS_DEB")"
# Lua: the ingress's balancer picks each request's replica and keeps idle connections
# to the replicas (no reload on replica changes). Debian's module with its NDK
# dependency, OpenResty's LuaJIT (libluajit2) and lua-resty-core (which the module
# requires), extracted like nginx. Their libraries need not be on the host: ldd looks
# for them in the extracted tree.
LUA_SO=usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_SO=usr/lib/nginx/modules/ndk_http_module.so
for pkg in libnginx-mod-http-ndk libnginx-mod-http-lua lua-resty-core lua-resty-lrucache libluajit2-5.1-2 libpcre3; do
	deb="$(fetch_deb "$pkg")" || die "cannot download $pkg (the ingress's Lua module)"
	log "using $(basename "$deb")"
	dpkg-deb -x "$deb" "$DEB_ROOT"
done
for f in "$LUA_SO" "$NDK_SO" usr/share/lua/5.1/resty/core.lua usr/share/lua/5.1/ngx/balancer.lua; do
	[[ -f $DEB_ROOT/$f ]] || die "$f not found in the extracted Lua packages"
done
DEB_LIB_PATH="$(find "$DEB_ROOT" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"

# The shared libraries nginx links to must be on the host for ldd to find them: install
# the library packages the nginx package depends on (first alternative of each).
mapfile -t LIB_PKGS < <(dpkg-deb -f "$NGINX_DEB" Depends | tr ',' '\n' |
	sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | grep -E '^(lib|zlib)' || true)
[[ ${#LIB_PKGS[@]} -eq 0 ]] || apt_install "${LIB_PKGS[@]}"

RFS="$STAGE/nginx/rootfs"
mkdir -p "$RFS"
install -D -m 0755 "$DEB_ROOT/usr/sbin/nginx" "$RFS/usr/sbin/nginx"
install -D -m 0644 "$DEB_ROOT/$NJS_SO" "$RFS/$NJS_SO"
install -D -m 0644 "$DEB_ROOT/$LUA_SO" "$RFS/$LUA_SO"
install -D -m 0644 "$DEB_ROOT/$NDK_SO" "$RFS/$NDK_SO"
install -D -m 0644 "$DEB_ROOT/$STREAM_SO" "$RFS/$STREAM_SO"
install -D -m 0644 "$DEB_ROOT/$STREAM_JS_SO" "$RFS/$STREAM_JS_SO"
mkdir -p "$RFS/usr/share/lua/5.1"
cp -R "$DEB_ROOT/usr/share/lua/5.1/." "$RFS/usr/share/lua/5.1/"

LDD_OUT="$(LC_ALL=C ldd "$DEB_ROOT/usr/sbin/nginx" && LC_ALL=C ldd "$DEB_ROOT/$NJS_SO" &&
	LC_ALL=C LD_LIBRARY_PATH="$DEB_LIB_PATH" ldd "$DEB_ROOT/$LUA_SO" &&
	LC_ALL=C ldd "$DEB_ROOT/$NDK_SO" &&
	LC_ALL=C ldd "$DEB_ROOT/$STREAM_SO" && LC_ALL=C ldd "$DEB_ROOT/$STREAM_JS_SO")" ||
	die "ldd failed on nginx or its modules"
if grep -q 'not found' <<<"$LDD_OUT"; then
	die "libraries of nginx missing on the host:"$'\n'"$LDD_OUT"
fi
# "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
mapfile -t LIBS < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$LDD_OUT" | sort -u)
[[ ${#LIBS[@]} -gt 0 ]] || die "ldd listed no libraries for nginx"
for lib in "${LIBS[@]}"; do
	# Libraries found in the extracted packages go to their place in the image.
	install -D -m 0755 "$(readlink -f "$lib")" "$RFS${lib#"$DEB_ROOT"}"
done

# Configuration files from the Debian package (mime.types, *_params, charset maps).
mkdir -p "$RFS/etc/nginx/conf.d"
for f in mime.types fastcgi_params fastcgi.conf scgi_params uwsgi_params proxy_params koi-utf koi-win win-utf; do
	if [[ -f "$DEB_ROOT/etc/nginx/$f" ]]; then
		install -m 0644 "$DEB_ROOT/etc/nginx/$f" "$RFS/etc/nginx/$f"
	fi
done
[[ -f $RFS/etc/nginx/mime.types ]] || die "mime.types not found in $(basename "$COMMON_DEB")"

# Directories compiled into Debian's nginx (see `nginx -V`), and the usual ones.
mkdir -p "$RFS"/var/lib/nginx/{body,fastcgi,proxy,scgi,uwsgi} "$RFS/var/log/nginx" \
	"$RFS/var/cache/nginx" "$RFS/run" "$RFS/var/lock" "$RFS/usr/lib/nginx/modules" \
	"$RFS/usr/share/nginx/html" "$RFS/etc/nginx/modules-enabled" "$RFS/tmp" "$RFS/etc/dubernetes/endpoints"
chmod 1777 "$RFS/tmp"
ln -sfn ../run "$RFS/var/run"
ln -sfn /dev/stdout "$RFS/var/log/nginx/access.log"
ln -sfn /dev/stderr "$RFS/var/log/nginx/error.log"

# The project's own files (nginx.conf, conf.d/default.conf, passwd, group, html) last.
cp -R "$ROOT/images/nginx/rootfs/." "$RFS/"
cp "$ROOT/images/nginx/Dockerfile" "$STAGE/nginx/Dockerfile"
docker_build "$STAGE/nginx" dubernetes/nginx:local-4

# --- probe agent (swarm backend) ----------------------------------------------------
PROBE_DEB="$(fetch_deb microsocks)" || die "cannot download microsocks"
log "using $(basename "$PROBE_DEB")"
mkdir -p "$STAGE/probe-deb"
dpkg-deb -x "$PROBE_DEB" "$STAGE/probe-deb"
PRFS="$STAGE/probe/rootfs"
install -D -m 0755 "$STAGE/probe-deb/usr/bin/microsocks" "$PRFS/usr/bin/microsocks"
LDD_OUT="$(LC_ALL=C ldd "$PRFS/usr/bin/microsocks")" || die "ldd failed on microsocks"
if grep -q 'not found' <<<"$LDD_OUT"; then
	die "libraries of microsocks missing on the host:"$'\n'"$LDD_OUT"
fi
mapfile -t LIBS < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$LDD_OUT")
for lib in "${LIBS[@]}"; do
	install -D -m 0755 "$(readlink -f "$lib")" "$PRFS$lib"
done
cp "$ROOT/images/probe/Dockerfile" "$STAGE/probe/Dockerfile"
docker_build "$STAGE/probe" dubernetes/probe:local

# --- busybox (tests of stateful pods) -------------------------------------------------
BUSYBOX_DEB="$(fetch_deb busybox-static)" || die "cannot download busybox-static"
log "using $(basename "$BUSYBOX_DEB")"
mkdir -p "$STAGE/busybox-deb"
dpkg-deb -x "$BUSYBOX_DEB" "$STAGE/busybox-deb"
BRFS="$STAGE/busybox/rootfs"
install -D -m 0755 "$STAGE/busybox-deb/bin/busybox" "$BRFS/bin/busybox"
# Statically linked: it runs on the host too, to list its applets.
mapfile -t APPLETS < <("$BRFS/bin/busybox" --list)
[[ ${#APPLETS[@]} -gt 0 ]] || die "busybox lists no applets"
for applet in "${APPLETS[@]}"; do
	[[ $applet == busybox || ! $applet =~ ^[a-z0-9._-]+$ ]] || ln -sfn busybox "$BRFS/bin/$applet"
done
mkdir -p "$BRFS/tmp" "$BRFS/data"
chmod 1777 "$BRFS/tmp"
cp "$ROOT/images/busybox/Dockerfile" "$STAGE/busybox/Dockerfile"
docker_build "$STAGE/busybox" dubernetes/busybox:local

for tag in dubernetes/whoami:v1 dubernetes/whoami:v2 dubernetes/whoami:{crash,nolisten,flaky,slow,stubborn} dubernetes/nginx:local-4 dubernetes/probe:local dubernetes/busybox:local dubernetes/names:local; do
	docker image inspect "$tag" >/dev/null || die "$tag missing after build"
	echo "$tag"
done
