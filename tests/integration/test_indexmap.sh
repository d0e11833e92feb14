#!/usr/bin/env bash
# test_indexmap.sh: the LMDB map size is configurable (index_map_bytes,
# issue 10): the value reaches the index (LMDB records the map size in its
# meta pages), out-of-range values are refused by `serve --check`, and the
# index-full message says what to do.  (LMDB persists only increases of
# the map size, on the next write: the test raises it to 2 GiB and stores a
# blob.)
. "$(dirname "$0")/lib.sh"
t_init indexmap

BIN=$(ccprewarm_bin)
want=$((2 * 1024 * 1024 * 1024))
start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
echo "{\"index_map_bytes\": $want}" >"$T_TMP/ccp.json"
start_ccprewarm CCP "$UP_URL" --config "$T_TMP/ccp.json" || exit 1
D=$(seed_q '.images[] | select(.ref == "test/single-oci:v1") | .platforms[0].layers[0].digest')
req GET "$CCP_URL/v2/test/single-oci/blobs/$D"
[ "$R_CODE" = 200 ] || fail indexmap/store-a-blob "$(exchange)"
stop_clean CCP indexmap
# MDB_meta after the 16-byte page header: magic, version, address, mapsize;
# two meta pages (0 and 1), the newer one (higher txnid) counts.
got=$("$PY" - "$CCP_DATA/index/data.mdb" <<'PYEOF'
import struct, sys
d = open(sys.argv[1], "rb").read(8192)
metas = []
for off in (0, 4096):
    magic, version, addr, mapsize = struct.unpack_from("<IIQQ", d, off + 16)
    txnid = struct.unpack_from("<Q", d, off + 16 + 4 + 4 + 8 + 8 + 2 * 48 + 8)[0]
    if magic == 0xBEEFC0DE:
        metas.append((txnid, mapsize))
print(max(metas)[1] if metas else "none")
PYEOF
)
check indexmap/recorded "LMDB's map size is '$got', want $want" [ "$got" = "$want" ]
echo '{"index_map_bytes": 1}' >"$T_TMP/bad.json"
out=$("$BIN" serve --config "$T_TMP/bad.json" --check 2>&1)
rc=$?
check indexmap/too-small-refused "serve --check with index_map_bytes 1: exit $rc, '$out'" \
	eval '[ $rc -ne 0 ] && [[ $out == *index_map_bytes* ]]'
t_done
