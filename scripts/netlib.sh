# Shared by scripts/net-up and net-down. Source it after lib.sh; do not run it.

# The namespace, tap and client address (defaults; options override).
NS=flexos-net
TAP=flexos0
ADDR=10.0.0.1/24

parse_net_args() {
    while (($#)); do
        case "$1" in
            --ns) NS="${2:?--ns needs a name}"; shift 2 ;;
            --tap) TAP="${2:?--tap needs a name}"; shift 2 ;;
            --addr) ADDR="${2:?--addr needs an address/prefix}"; shift 2 ;;
            -h|--help) sed -n '2,/^source/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac
    done
    # ip(8) limits: namespace names become file names, interface names 15 bytes.
    [[ "$NS" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "bad namespace name $NS"
    [[ "$TAP" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad tap name $TAP (at most 15 characters)"
}
