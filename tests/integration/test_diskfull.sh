#!/usr/bin/env bash
# test_diskfull.sh: a full disk (issue 9; defect 3 of issue 10).  The store
# lives on a small tmpfs (unmounted by lib.sh's trap).  Partial files of
# fills interrupted by kill -9 fill most of it; a miss then runs out of
# space mid-blob: that fill fails cleanly (a 503 with the OCI error body, or
# a cut connection once bytes went out; never a bare 500), leaves no
# partial or blob file, counts ccprewarm_fill_nospace_total, hits go on,
# and the partials are evicted so the same pull then succeeds.  With a
# free-space floor configured, partials count against it and go first,
# oldest first, before a fill would cross it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
. "$(dirname "$0")/lib_prewarm.sh"
. "$(dirname "$0")/lib_store.sh"
t_init diskfull

if ! is_root; then
	skip diskfull/all "needs root to mount a tmpfs"
	t_done
	exit 0
fi
SMALL=$T_TMP/small
mkdir -p "$SMALL"
if ! mount -t tmpfs -o size=24m tmpfs "$SMALL"; then
	skip diskfull/all "cannot mount a tmpfs"
	t_done
	exit 0
fi
MIB=1048576

start_registry UP || exit 1
declare -A BLOB
for spec in H:1 P1:10 P2:10 B:12 B2:8; do
	n=${spec%%:*}
	make_blob "$T_TMP/$n" $((${spec##*:} * MIB))
	BLOB[$n]=$(push_blob "$UP_URL" plain/blobs "$T_TMP/$n") || { fail diskfull/push "cannot push $n"; exit 1; }
done
start_proxy PX "$UP_URL" pass --rate 3072 || exit 1

CCP_DATA_DIR=$SMALL/data start_ccprewarm CCP "$PX_URL" || exit 1
M=$CCP_URL
D=$CCP_DATA
get_blob() {
	req GET "$M/v2/plain/blobs/blobs/${BLOB[$1]}"
	[ "$R_CODE" = 200 ] && [ "sha256:$(sha256_of "$R_BODY")" = "${BLOB[$1]}" ]
}
get_blob H || fail diskfull/pull-H "$(exchange)"
stop CCP 10

# Two fills interrupted by kill -9 leave their partial files (kept a day
# for resuming): together most of the volume.
proxy_mode PX slow
make_partial CCP "$PX_URL" "${BLOB[P1]}" plain/blobs $((7 * MIB)) ||
	fail diskfull/partial-P1 "no 7 MiB partial file for P1"
sleep 1.1 # P1's partial is the older one
make_partial CCP "$PX_URL" "${BLOB[P2]}" plain/blobs $((7 * MIB)) ||
	fail diskfull/partial-P2 "no 7 MiB partial file for P2"
proxy_mode PX pass
note "after the partials: $(df -h "$SMALL" | tail -n 1)"
restart_ccprewarm CCP "$PX_URL" || exit 1
check diskfull/partials-kept "partial files after restart: $(ls "$D/tmp" | tr '\n' ' ')" \
	[ -f "$(partial_of "$D" "${BLOB[P1]}")" ] && [ -f "$(partial_of "$D" "${BLOB[P2]}")" ]

# -- a miss that runs out of space mid-blob
get_blob B
code=$R_CODE rc=$R_RC
if [ "$code" = 503 ] && [ "$(oci_error_code)" = UNAVAILABLE ]; then
	pass diskfull/nospace-answer
elif { [ "$code" = 200 ] || [ "$code" = 000 ]; } && [ "$rc" != 0 ] &&
	[ "sha256:$(sha256_of "$R_BODY")" != "${BLOB[B]}" ]; then
	pass diskfull/nospace-answer
	note "the stream had started: cut connection (status $code, curl rc $rc)"
else
	fail diskfull/nospace-answer "want 503 UNAVAILABLE or a cut stream; $(exchange)"
fi
check_eq diskfull/nospace-metric "$(metric_now "$M" ccprewarm_fill_nospace_total)" 1 "ccprewarm_fill_nospace_total"
check diskfull/no-partial-left "partial file of the failed fill: $(ls -l "$(partial_of "$D" "${BLOB[B]}")" 2>&1)" \
	[ ! -e "$(partial_of "$D" "${BLOB[B]}")" ]
check diskfull/no-blob-file "a file for the failed blob in blobs/" [ ! -e "$(store_path "$D" "${BLOB[B]}")" ]
get_blob H && check_eq diskfull/hits-served "$(hdr X-Cache)" HIT "X-Cache of the stored blob" ||
	fail diskfull/hits-served "$(exchange)"
gone() { [ ! -e "$(partial_of "$D" "${BLOB[P1]}")" ] && [ ! -e "$(partial_of "$D" "${BLOB[P2]}")" ]; }
wait_until 10 gone
check diskfull/partials-evicted "partials left after ENOSPC: $(ls "$D/tmp" | tr '\n' ' ')" gone
ccp_run gc gc --server "$M"
check_eq diskfull/gc "$CLI_RC" 0 "gc exit status"
get_blob B
check diskfull/same-pull-succeeds "after the eviction: $(exchange)" [ "$R_CODE" = 200 ] &&
	[ "sha256:$(sha256_of "$R_BODY")" = "${BLOB[B]}" ]
ccp_run v verify --server "$M"
check_eq diskfull/verify-clean "$CLI_RC" 0 "verify exit status ($(tail -n 1 "$CLI_OUT"))"
stop_clean CCP diskfull/first

# -- with a floor: partials count and go first, oldest first, only as needed
ccp_run gcall gc --data "$D" --max-bytes 1
proxy_mode PX slow
make_partial CCP "$PX_URL" "${BLOB[P1]}" plain/blobs $((7 * MIB)) ||
	fail diskfull/floor-partial-P1 "no partial for P1"
sleep 1.1
make_partial CCP "$PX_URL" "${BLOB[P2]}" plain/blobs $((7 * MIB)) ||
	fail diskfull/floor-partial-P2 "no partial for P2"
proxy_mode PX pass
note "before the floor test: $(df -h "$SMALL" | tail -n 1)"
restart_ccprewarm CCP "$PX_URL" --min-free-bytes 4M || exit 1
get_blob B2
check diskfull/floor-pull "$(exchange)" [ "$R_CODE" = 200 ]
check diskfull/floor-oldest-partial-first \
	"want P1's partial gone and P2's kept; tmp/ has: $(ls "$D/tmp" | tr '\n' ' ')" \
	[ ! -e "$(partial_of "$D" "${BLOB[P1]}")" ] && [ -e "$(partial_of "$D" "${BLOB[P2]}")" ]
check_eq diskfull/floor-no-nospace "$(metric_now "$M" ccprewarm_fill_nospace_total)" 0 "fills that ran out of space"
stop_clean CCP diskfull/second
t_done
