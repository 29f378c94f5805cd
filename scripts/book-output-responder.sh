#!/usr/bin/env bash
# scripts/book-output-responder.sh -- record, for the book's chapters 4 and 5 and its
# troubleshooting appendix, the bytes of real ping exchanges with the responder and what
# the programs and the kernel print when things go wrong.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

In a network namespace created for the purpose (removed again afterwards), record
into book/src/output/:

the bytes of real exchanges between the kernel's ping and 05_full_responder
(chapter 5), read back from its --pcap file with tshark:
  echo-bytes.txt         one echo request and our reply, in hex
  echo-fields.txt        lengths and checksums (verified by tshark) of the echo
                         requests and replies for ping -s 56, -s 1 (odd length),
                         -s 1472 (a full frame) and -R (IPv4 options)
  echo-options.txt       what ping -R prints: the route our reply brought back

and each fault the troubleshooting appendix describes, as a student would see it:
  faults-down-up.txt     tap4 goes down and up under 05_full_responder
  faults-busy.txt        a second 05_full_responder on the same tap4 (EBUSY)
  faults-deleted.txt     tap4 deleted under 05_full_responder (exit status 1)
  faults-no-tap.txt      05_full_responder with no tap4 prepared (EPERM)
  faults-wrong-kind.txt  attaching to a TUN device (EINVAL)
  faults-eacces.txt      /dev/net/tun with mode 0600 (EACCES)
  faults-enoent.txt      no /dev/net/tun at all
  faults-created.txt     05_full_responder run as root before setup: it creates a
                         transient tap4, down and without an address, and says
                         what the kernel's side needs; those commands, then ping
  intro-tun4.txt         02_hexdump on a TUN (the introduction's exercise 3)
  faults-no-carrier.txt  nothing attached: NO-CARRIER, linkdown, and who answers
                         172.16.1.1 (the kernel) and 172.16.1.2 (nobody)
  faults-no-pi.txt       a frame read without IFF_NO_PI: 4 extra bytes in front
  faults-truncated.txt   a 1514-byte frame read into a 1500-byte buffer
The last two use a few lines of python3 (skipped, with a warning, without it).
The /dev/net/tun faults are made in a private mount namespace (unshare -m): the
real device node is never touched.

The programs run as --user, never as root, as in the lab. Needs root (namespaces),
ip, ping, tshark, setpriv, unshare and python3. Builds the chapter programs first (cargo build
--release --bins, as the user behind sudo when there is one).

Options:
  --netns NAME      the namespace to create and remove (default: tapbook-responder-PID);
                    it must not exist yet
  --user NAME       the unprivileged user who runs the programs (default: \$SUDO_USER,
                    else nobody)
  --out DIR         where to write the files (default: book/src/output)
  --bin-dir DIR     use the binaries in DIR instead of building them
  -h, --help        this help
EOF
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
NS=tapbook-responder-$$
OUT=$ROOT/book/src/output
LAB_USER=
BIN_DIR=

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NS=$2; shift 2 ;;
        --user) need_value "$1" $#; LAB_USER=$2; shift 2 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
TB_NETNS=$NS
validate_common
need_root "$@"
for tool in ip ping tshark setpriv unshare python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/doctor.sh says which package has it)"
done
netns_exists && die "network namespace $NS exists already; choose another with --netns"
if [[ -z $LAB_USER ]]; then
    LAB_USER=$(unprivileged_user)
fi
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
LAB_GID=$(id -g -- "$LAB_USER")
((LAB_UID != 0)) || die "--user must not be root: the faults are those of an unprivileged user"
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

# ---- binaries, copied where --user can run them ----------------------------------------
if [[ -z $BIN_DIR ]]; then
    build=(cargo build --release --bins --quiet)
    step "building: $(show_cmd "${build[@]}")"
    (cd "$ROOT" && as_invoking_user "${build[@]}")
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
    BIN_DIR=$TARGET/release
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-responder.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
BIN=$WORK/bin
mkdir -p -- "$BIN"
for b in 01_open_clone 02_hexdump 05_full_responder; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing (build with: cargo build --release --bins)"
    install -m 0755 -- "$BIN_DIR/$b" "$BIN/$b"
done
chmod 0755 -- "$WORK" "$BIN"
REC=$WORK/out
mkdir -p -- "$REC"
RUN=$WORK/run                 # the programs' working directory (the pcap goes there)
install -d -m 0755 -o "$LAB_UID" -g "$LAB_GID" -- "$RUN"
# Run from / so that nothing shows where the script was started.
cd /

# ---- helpers ----------------------------------------------------------------------------
NSX=(ip netns exec "$NS")
# The programs name the network namespace they run in, in their Fix: lines (they find
# it in /run/netns). The book shows the commands a student types in a namespace of their
# own, unnamed, so the programs run with /run/netns hidden, as it is for the student.
HIDE_NETNS=(unshare --mount --propagation private sh -c 'mount -t tmpfs tapbook-hide /run/netns && exec "$@"' sh)
AS_USER=("${NSX[@]}" "${HIDE_NETNS[@]}" setpriv --reuid "$LAB_UID" --regid "$LAB_GID" --clear-groups --)
AS_ROOT=("${NSX[@]}" "${HIDE_NETNS[@]}")
ns() { "${NSX[@]}" "$@"; }

# record FILE SHOWN CMD...: append "$ SHOWN" and the output of CMD (stdout and stderr,
# as a terminal shows them) to FILE. A failing CMD is what we are here for.
record() {
    local file=$REC/$1 shown=$2
    shift 2
    [[ -e $file ]] && printf '\n' >>"$file"
    printf '$ %s\n' "$shown" >>"$file"
    "$@" </dev/null >>"$file" 2>&1 || true
}

# note FILE TEXT: a line of commentary in a recording, as a shell comment.
note() { printf '\n# %s\n' "$2" >>"$REC/$1"; }

# start LOG CMD...: run CMD in the background (its output into $WORK/LOG); sets STARTED.
STARTED=
start() {
    local log=$WORK/$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

wait_for() {
    local what=$1 tenths=$(($2 * 10))
    shift 2
    until "$@"; do
        ((tenths-- > 0)) || die "timed out waiting for $what"
        sleep 0.1
    done
}
carrier_on() { ns ip -o link show dev tap4 2>/dev/null | grep -q LOWER_UP; }

expect() {
    grep -qF -- "$2" "$REC/$1" || die "$1 does not contain '$2': the run did not go as the book says. It reads:
$(sed 's/^/    /' "$REC/$1")"
}

# The kernel's side of tap4 gets a fixed MAC, as in scripts/book-output.sh, so that the
# bytes are the same from one recording to the next (a student's tap4 has a random one).
lab() {
    "$ROOT/scripts/setup.sh" --netns "$NS" --user "$LAB_USER" >/dev/null
    ns ip link set dev tap4 address 02:00:00:00:00:01
}
responder() { "${AS_USER[@]}" "$BIN/05_full_responder"; }

# ---- the lab ------------------------------------------------------------------------------
say "Recording in network namespace $NS as user $LAB_USER."
ip netns add "$NS"
ns ip link set lo up
lab
step "lab ready: tap4 owned by $LAB_USER"

# ---- the bytes of a ping -----------------------------------------------------------------
step "echo requests and replies, into a pcap"
start echo.log "${AS_USER[@]}" env -C "$RUN" "$BIN/05_full_responder" --quiet --pcap tapbook.pcap
pid=$STARTED
wait_for "05_full_responder to attach" 10 carrier_on
sleep 1
for size in 56 1 1472; do
    ns ping -c 1 -W 2 -s "$size" 172.16.1.2 >"$WORK/ping-$size.log" 2>&1 ||
        die "ping -s $size got no answer: $(cat "$WORK/ping-$size.log")"
done
record echo-options.txt "ping -R -c 1 172.16.1.2" ns ping -R -c 1 -W 2 172.16.1.2
expect echo-options.txt "1 received"
# The route both ways, our address twice (arrival and departure), as in Linux's own reply.
expect echo-options.txt "RR: 	172.16.1.1"
[[ $(grep -cx '	172.16.1.2' "$REC/echo-options.txt") -eq 2 ]] ||
    die "echo-options.txt: 172.16.1.2 is not on the route twice, as in Linux's reply: $(cat "$REC/echo-options.txt")"
kill -TERM "$pid"
wait "$pid" || die "05_full_responder did not exit 0 on SIGTERM: $(cat "$WORK/echo.log")"
# tshark as the user who owns the file, in a home of its own (it looks for settings).
tshark_user() { "${AS_USER[@]}" env HOME="$RUN" tshark -r "$RUN/tapbook.pcap" "$@" 2>/dev/null; }
# The first echo request and the reply right after it.
first_pair=$(tshark_user -Y icmp -T fields -e frame.number | head -n 2 | paste -sd, -)
first_pair=${first_pair/,/ || frame.number == }
record echo-bytes.txt "tshark -r tapbook.pcap -x -Y 'frame.number == ${first_pair}'" \
    tshark_user -x -Y "frame.number == $first_pair"
expect echo-bytes.txt "08 00 45 00"
CHECK=(-o ip.check_checksum:TRUE)
record echo-fields.txt "tshark -r tapbook.pcap -o ip.check_checksum:TRUE -Y icmp -T fields -E header=y -e frame.len -e ip.hdr_len -e ip.len -e ip.checksum.status -e icmp.type -e icmp.checksum.status" \
    tshark_user "${CHECK[@]}" -Y icmp -T fields -E header=y -e frame.len -e ip.hdr_len -e ip.len \
    -e ip.checksum.status -e icmp.type -e icmp.checksum.status
expect echo-fields.txt "138	60	124	1	8	1"
expect echo-fields.txt "138	60	124	1	0	1"
sed -i '/^tshark: $/d' "$REC"/echo-*.txt

# ---- nothing attached ---------------------------------------------------------------------
step "no carrier"
F=faults-no-carrier.txt
record $F "ip link show tap4" ns ip link show dev tap4
record $F "ip route show dev tap4" ns ip route show dev tap4
record $F "ping -c 2 -W 1 172.16.1.2" ns ping -c 2 -W 1 172.16.1.2
record $F "ping -c 1 172.16.1.1" ns ping -c 1 -W 1 172.16.1.1
expect $F "NO-CARRIER"
expect $F "linkdown"
expect $F "1 received"

# ---- down and up ----------------------------------------------------------------------------
step "down and up"
F=faults-down-up.txt
start responder.log responder
pid=$STARTED
wait_for "05_full_responder to attach" 10 carrier_on
sleep 1
record $F "ping -c 1 -W 1 172.16.1.2" ns ping -c 1 -W 1 172.16.1.2
record $F "sudo ip link set tap4 down" ns ip link set dev tap4 down
record $F "ping -c 1 -W 1 172.16.1.2" ns ping -c 1 -W 1 172.16.1.2
record $F "sudo ip link set tap4 up" ns ip link set dev tap4 up
wait_for "tap4 to come back" 10 carrier_on
sleep 1
record $F "ping -c 1 -W 2 172.16.1.2" ns ping -c 1 -W 2 172.16.1.2
expect $F "Network is unreachable"
[[ $(grep -c ' 1 received' "$REC/$F") -eq 2 ]] || die "$F: the responder did not answer before and after"

# ---- a second instance ----------------------------------------------------------------------
step "a second instance"
F=faults-busy.txt
rc=0
responder >"$WORK/second.log" 2>&1 || rc=$?
{
    printf '$ cargo run -q --bin 05_full_responder     # a second one, while the first runs\n'
    cat "$WORK/second.log"
    printf '$ echo $?\n%s\n' "$rc"
} >"$REC/$F"
expect $F "EBUSY"

# ---- the interface is deleted -----------------------------------------------------------------
step "interface deleted"
F=faults-deleted.txt
ns ip link del dev tap4
rc=0
wait "$pid" || rc=$?
{
    printf '$ cargo run -q --bin 05_full_responder\n'
    # The deletion comes where the counters start (after the last blank line).
    awk 'NR == FNR { if ($0 == "") last = FNR; next }
         FNR == last { print "# ... meanwhile, in another terminal:  sudo ip link del tap4" }
         { print }' "$WORK/responder.log" "$WORK/responder.log"
    printf '$ echo $?\n%s\n' "$rc"
} >"$REC/$F"
expect $F "has been deleted"
((rc == 1)) || die "05_full_responder exited with $rc when tap4 was deleted (expected 1)"

# ---- no tap prepared ----------------------------------------------------------------------------
step "no tap prepared"
F=faults-no-tap.txt
record $F "cargo run -q --bin 05_full_responder" responder
expect $F "EPERM"

# ---- a TUN where a TAP should be ------------------------------------------------------------------
step "wrong kind"
F=faults-wrong-kind.txt
ns ip tuntap add dev tun5 mode tun user "$LAB_USER"
record $F "sudo ip tuntap add dev tun5 mode tun user $LAB_USER" true
record $F "cargo run -q --bin 01_open_clone -- --iface tun5" "${AS_USER[@]}" "$BIN/01_open_clone" --iface tun5
expect $F "EINVAL"
ns ip link del dev tun5

# ---- /dev/net/tun itself, in a private mount namespace -------------------------------------------
lab
step "/dev/net/tun unusable"
# in_mount_ns SCRIPT ARGS...: run SCRIPT (sh) in the lab's network namespace and a
# private mount namespace, where it may cover /dev/net/tun without anyone else seeing.
in_mount_ns() { ns unshare --mount --propagation private sh -c "$@"; }
STAT="stat -c '%A %U %G, character device %Hr:%Lr: %n'"
F=faults-eacces.txt
{
    printf '$ %s /dev/net/tun     # after: sudo chmod 0600 /dev/net/tun\n' "$STAT"
    # shellcheck disable=SC2016 # expanded by the inner sh
    in_mount_ns '
        set -e
        d=$(mktemp -d)
        mknod "$d/tun" c 10 200
        chmod 0600 "$d/tun"
        mount --bind "$d/tun" /dev/net/tun
        '"$STAT"' /dev/net/tun
        echo "\$ cargo run -q --bin 05_full_responder"
        shift
        "$@" || true
        umount /dev/net/tun
        rm -r "$d"' sh "${AS_USER[@]:3}" "$BIN/05_full_responder"
} >"$REC/$F" 2>&1
expect $F "Permission denied"

F=faults-enoent.txt
{
    printf '$ %s /dev/net/tun\n' "$STAT"
    # shellcheck disable=SC2016 # expanded by the inner sh
    in_mount_ns '
        set -e
        d=$(mktemp -d)
        chmod 0755 "$d"
        mount --bind "$d" /dev/net
        '"$STAT"' /dev/net/tun 2>&1 || true
        echo "\$ cargo run -q --bin 05_full_responder"
        shift
        "$@" || true
        umount /dev/net
        rmdir "$d"' sh "${AS_USER[@]:3}" "$BIN/05_full_responder"
} >"$REC/$F" 2>&1
expect $F "does not exist"

# ---- root before any setup: the program creates tap4 itself -------------------------------------
step "tap4 created by the program"
F=faults-created.txt
ns ip link del dev tap4
start created.log "${AS_ROOT[@]}" "$BIN/05_full_responder"
pid=$STARTED
wait_for "05_full_responder to start" 10 grep -q "Ctrl-C to stop" "$WORK/created.log"
{
    printf '$ sudo target/release/05_full_responder     # as root, before scripts/setup.sh\n'
    cat "$WORK/created.log"
    printf '# ... in another terminal:\n'
} >"$REC/$F"
record $F "ping -c 1 -W 1 172.16.1.2" ns ping -c 1 -W 1 172.16.1.2
expect $F "Network is unreachable"
# The commands 05 printed, run as printed (as root: without their "sudo").
mapfile -t fixes < <(sed -n 's/^    sudo ip //p' "$WORK/created.log")
((${#fixes[@]} == 2)) || die "$F: 05 did not print two ip commands: $(cat "$WORK/created.log")"
for fix in "${fixes[@]}"; do
    read -ra words <<<"$fix"
    record $F "sudo ip $fix" ns ip "${words[@]}"
done
record $F "ping -c 1 -W 2 172.16.1.2" ns ping -c 1 -W 2 172.16.1.2
expect $F " 1 received"
kill -TERM "$pid"
wait "$pid" || true
lab

# ---- the introduction's exercise 3: a TUN is not a TAP --------------------------------------------
step "02_hexdump on a TUN"
F=intro-tun4.txt
ns ip tuntap add dev tun4 mode tun
record $F "sudo ip tuntap add dev tun4 mode tun" true
record $F "sudo target/release/02_hexdump --iface tun4" "${AS_ROOT[@]}" "$BIN/02_hexdump" --iface tun4
expect $F "it is a TUN"
ns ip link del dev tun4

# ---- what the descriptor gives without IFF_NO_PI, and to a short buffer ----------------------------
# The system's python3: one under root's home (pyenv) is out of --user's reach.
PYTHON=
for candidate in /usr/bin/python3 "$(command -v python3 || true)"; do
    if [[ -n $candidate && -x $candidate ]] &&
        setpriv --reuid "$LAB_UID" --regid "$LAB_GID" --clear-groups -- "$candidate" -c '' 2>/dev/null; then
        PYTHON=$candidate
        break
    fi
done
if [[ -n $PYTHON ]]; then
    step "no IFF_NO_PI, and a short buffer"
    # The reader: python3 -c "$read_frame_py" FLAGS BUFLEN OFFSET HEX [ip] attaches to
    # tap4 with the TUNSETIFF flags FLAGS, reads into a BUFLEN-byte buffer, and shows the
    # first frame whose bytes at OFFSET are HEX; with "ip", also what its IPv4 total
    # length says the frame's length was.
    read_frame_py='
import fcntl, os, select, struct, sys
flags, buflen, at, want = int(sys.argv[1], 0), int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
TUNSETIFF = 0x400454CA
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"tap4", flags))
print("attached to tap4 with flags 0x%04x, reading into a %d-byte buffer" % (flags, buflen), flush=True)
while select.select([fd], [], [], 5)[0]:
    frame = os.read(fd, buflen)
    if frame[at:at + len(want)] == want:
        break
else:
    sys.exit("no such frame came")
print("read() returned %d bytes; the first 24:" % len(frame))
print(" ".join("%02x" % b for b in frame[:24]))
if len(sys.argv) > 5:
    ip_total = int.from_bytes(frame[16:18], "big")
    print("the IPv4 total length inside says %d, so the frame on the wire was 14 + %d = %d bytes:"
          % (ip_total, ip_total, 14 + ip_total))
    print("the last %d bytes were cut off, silently" % (14 + ip_total - len(frame)))
'
    # py_demo FILE SHOWN: run the Python reader with PY_ARGS as --user, then ping with
    # PING_ARGS; record what the reader printed.
    py_demo() {
        local file=$1 shown=$2
        start py.log "${AS_USER[@]}" "$PYTHON" -c "$read_frame_py" "${PY_ARGS[@]}"
        local py=$STARTED
        wait_for "python3 to attach" 10 carrier_on
        sleep 0.5
        ns ping "${PING_ARGS[@]}" 172.16.1.2 >/dev/null 2>&1 || true
        wait "$py" || true
        {
            printf '# %s\n' "$shown"
            cat "$WORK/py.log"
        } >"$REC/$file"
    }
    # Without IFF_NO_PI: 2 bytes of flags and the 2-byte protocol (the EtherType) come
    # before the frame. Wait for the kernel's ARP request: protocol 0x0806 at offset 2.
    ns ip neigh flush dev tap4
    PY_ARGS=(0x0002 2048 2 0806)
    PING_ARGS=(-c 1 -W 1)
    py_demo faults-no-pi.txt "the python3 reader in scripts/book-output-responder.sh, attached with IFF_TAP only (no IFF_NO_PI); then: ping -c 1 172.16.1.2"
    expect faults-no-pi.txt "00 00 08 06 ff ff ff ff ff ff"
    # A 1500-byte buffer, as the C program had, and a ping whose frame is 1514 bytes. The
    # kernel needs our MAC first: a static entry, as nobody answers ARP here.
    ns ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4 nud permanent
    PY_ARGS=(0x1002 1500 12 0800 ip)
    PING_ARGS=(-c 1 -W 1 -s 1472)
    py_demo faults-truncated.txt "the python3 reader in scripts/book-output-responder.sh, IFF_TAP | IFF_NO_PI, with a 1500-byte buffer; then: ping -c 1 -s 1472 172.16.1.2"
    expect faults-truncated.txt "were cut off"
else
    warn "no python3 that $LAB_USER can run: faults-no-pi.txt and faults-truncated.txt left as they were"
fi

# ---- publish --------------------------------------------------------------------------------------
# Lines wider than the book's column, continued on the next line (see book-output-wrap.py).
"$ROOT/scripts/book-output-wrap.py" "$REC"/*.txt
cp -- "$REC"/*.txt "$OUT"/
if [[ -n ${SUDO_UID:-} ]]; then
    chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"/faults-*.txt "$OUT"/echo-*.txt "$OUT"/intro-*.txt
fi
say ""
say "Wrote $(find "$REC" -name '*.txt' | wc -l) files to $OUT: $(cd -- "$REC" && echo *.txt)"
say "Namespace $NS removed."
