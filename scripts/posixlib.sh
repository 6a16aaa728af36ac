# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are for the scripts that source this file
# Shared by the C build scripts (sources, build-posix, check-nosyscall, porting,
# test-posix): paths, the guest's C flags, stamps and the no-syscall check. Source it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POSIX_DIR="$ROOT/guest-kernel/posix"       # in the repository: sources.list, musl/, redis/
SOURCES_LIST="$POSIX_DIR/sources.list"
SRC_DIR="$ROOT/target/src"                 # unpacked upstream tarballs (scripts/sources)
SOURCES_CACHE="$ROOT/target/sources"       # apt-get source downloads
POSIX_OUT="$ROOT/target/posix"             # everything built from them
MUSL_PREFIX="$POSIX_OUT/musl"              # include/, lib/libc.a, bin/flexos-cc
HOST_DIR="$POSIX_OUT/host"                 # host smoke-test only: shim, flexos-host-cc
REDIS_OUT="$POSIX_OUT/redis"               # libredis.a and friends, link.txt
NGINX_OUT="$POSIX_OUT/nginx"               # libnginx.a, link.txt

# C code that runs in the guest: static, non-PIC, linked at 1 MiB, ring 3, frame
# pointers (the monitor walks the RBP chain for backtraces), no red zone and no stack
# protector, as guest-kernel/.cargo/config.toml gives SQLite. SSE stays on. One section
# per function and object, so the guest's link can drop what is unused (--gc-sections).
GUEST_CFLAGS=(-fno-pic -fno-pie -mno-red-zone -mcmodel=small -fno-stack-protector
    -fno-omit-frame-pointer -ffunction-sections -fdata-sections)

# The upstream version of a package in sources.list.
source_version() {
    local pkg version
    while read -r pkg version _; do
        [ "$pkg" = "$1" ] && { printf '%s\n' "$version"; return; }
    done <"$SOURCES_LIST"
    die "$1 is not in ${SOURCES_LIST#"$ROOT/"}"
}

# The verified tarball's sha256 of a package, from the stamp scripts/sources leaves.
source_sha256() {
    local version stamp
    version="$(source_version "$1")"
    stamp="$SRC_DIR/.$1-$version.stamp"
    [ -f "$stamp" ] || die "$1 $version is not fetched: run scripts/sources"
    cut -d' ' -f3 "$stamp"
}

# A hash of files and folders (names and contents) and of extra strings: the key of a
# build step's stamp.
inputs_hash() {
    local item
    {
        for item in "$@"; do
            if [ -d "$item" ]; then
                (cd "$item" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
            elif [ -f "$item" ]; then
                sha256sum "$item"
            else
                printf '%s\n' "$item"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

# Fails (status 1) if any of the given objects, archives or executables holds an
# instruction that enters the kernel: syscall, sysenter or int $0x80 (and sysret,
# sysexit). Prints each one with its file, archive member and function. Also fails on a
# file objdump cannot disassemble or that holds no code at all.
check_nosyscall() {
    local file status=0 out
    command -v objdump >/dev/null || die "objdump not found: install binutils"
    for file in "$@"; do
        [ -f "$file" ] || { printf 'check-nosyscall: %s: no such file\n' "$file" >&2; status=1; continue; }
        if ! out="$(LC_ALL=C objdump -d --no-show-raw-insn "$file" 2>&1)"; then
            printf 'check-nosyscall: %s: objdump failed: %s\n' "$file" "$(printf '%s' "$out" | tail -1)" >&2
            status=1
            continue
        fi
        if ! printf '%s\n' "$out" | awk -v file="$file" '
            /^In archive / { next }
            /:[ \t]+file format / { member = $1; sub(/:$/, "", member); next }
            /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
            /^ *[0-9a-f]+:\t/ {
                insns++
                split($0, part, "\t"); insn = part[2]; gsub(/ +/, " ", insn)
                if (insn ~ /^(syscall|sysenter|sysexit|sysret[lq]?)( |$)/ || insn ~ /^int +\$0x80( |$)/) {
                    where = (member != "" && member != file) ? file "(" member ")" : file
                    addr = $1; sub(/:$/, "", addr)
                    printf "check-nosyscall: %s: %s in %s at 0x%s\n", where, insn, fn, addr > "/dev/stderr"
                    bad++
                }
            }
            END {
                if (!insns) { printf "check-nosyscall: %s: no instructions found\n", file > "/dev/stderr"; exit 1 }
                exit bad > 0
            }'; then
            status=1
        fi
    done
    return "$status"
}
