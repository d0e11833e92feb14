# tests/integration/lib_s3.sh: a real S3-compatible object store for the
# shared-store tests: Ceph's RADOS Gateway (Debian's radosgw) on a one-node
# Ceph cluster on loopback: ceph-mon, ceph-mgr, one ceph-osd on memstore
# (RAM, capped), small memory targets, msgr v1 only, one keyring for every
# daemon (cephx: with auth off, an OSD may send its first command before it
# has the monitor map, and the monitor refuses it as 'wrong fsid').  Everything lives under $T_TMP/ceph; each daemon is started
# with lib.sh's _spawn, so the test's EXIT trap stops it by process group.
#
# Source after lib.sh.  start_s3 sets:
#   S3_URL S3_PORT S3_REGION S3_ACCESS S3_SECRET S3_CREDS (credentials file)
#   S3_SECS (seconds the cluster took to come up)
# s3_cli ARGS...   curl with AWS SigV4 against S3_URL (path-style)

S3_REGION=us-east-1
S3_ACCESS=CCPTESTACCESSKEY0001
S3_SECRET=ccp-test-secret-key-0001-not-secret

# s3_deps: 0 if the Ceph daemons are installed.
s3_deps() {
	command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
		command -v ceph-mgr >/dev/null && command -v radosgw >/dev/null &&
		command -v radosgw-admin >/dev/null && command -v monmaptool >/dev/null
}

# _s3_ceph ARGS...: the ceph CLI against our cluster.
_s3_ceph() {
	timeout 60 ceph -c "$S3_CONF" --connect-timeout 20 "$@"
}

start_s3() {
	local d t0 monport rgwport fsid uuid end
	if ! s3_deps; then
		return 2
	fi
	t0=$(date +%s.%N)
	d=$T_TMP/ceph
	mkdir -p "$d/mon" "$d/osd/ceph-0" "$d/mgr/ceph-x" "$d/rgw" "$d/run" "$d/log"
	monport=$(free_port S3MON)
	rgwport=$(free_port S3)
	fsid=$(cat /proc/sys/kernel/random/uuid)
	S3_CONF=$d/ceph.conf
	cat >"$S3_CONF" <<-EOF
	[global]
	fsid = $fsid
	mon host = v1:127.0.0.1:$monport
	mon initial members = a
	public network = 127.0.0.0/8
	ms bind msgr2 = false
	ms bind ipv6 = false
	auth cluster required = cephx
	auth service required = cephx
	auth client required = cephx
	run dir = $d/run
	admin socket = $d/run/\$name.asok
	log file = $T_OUT/ceph-\$name.daemon.log
	pid file = $d/run/\$name.pid
	keyring = $d/keyring
	osd pool default size = 1
	osd pool default min size = 1
	osd pool default pg num = 8
	osd pool default pgp num = 8
	osd pool default pg autoscale mode = off
	osd crush chooseleaf type = 0
	mon allow pool size one = true
	mon warn on pool no redundancy = false
	mon max pg per osd = 1000
	mon data avail warn = 1
	mon data avail crit = 0
	osd objectstore = memstore
	memstore device bytes = 1073741824
	osd memory target = 536870912
	osd data = $d/osd/\$cluster-\$id
	mon data = $d/mon/\$cluster-\$id
	mgr data = $d/mgr/\$cluster-\$id
	osd max object name len = 460
	osd max object namespace len = 64
	osd op num shards = 1
	osd op num threads per shard = 2
	mgr initial modules =
	mon pg warn min per osd = 0
	[client.rgw.test]
	rgw frontends = beast endpoint=127.0.0.1:$rgwport
	rgw data = $d/rgw
	rgw thread pool size = 32
	rgw enable usage log = false
	rgw lc debug interval = 10
	debug rgw = ${S3_DEBUG:-1}
	EOF
	{
		ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. \
			--cap mon 'allow *'
		ceph-authtool "$d/keyring" --gen-key -n client.admin \
			--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
		ceph-authtool "$d/keyring" --gen-key -n osd.0 \
			--cap mon 'allow profile osd' --cap osd 'allow *' \
			--cap mgr 'allow profile osd'
		ceph-authtool "$d/keyring" --gen-key -n mgr.x \
			--cap mon 'allow profile mgr' --cap osd 'allow *'
		ceph-authtool "$d/keyring" --gen-key -n client.rgw.test \
			--cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
	} >>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$monport]" \
		"$d/monmap" >>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	ceph-mon -c "$S3_CONF" --mkfs -i a --monmap "$d/monmap" \
		--keyring "$d/keyring" \
		>>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	_spawn S3MON "$T_OUT/ceph-mon.log" ceph-mon -c "$S3_CONF" -i a -f
	end=$((SECONDS + 120))
	until _s3_ceph -s >/dev/null 2>&1; do
		alive S3MON && [ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
	_spawn S3MGR "$T_OUT/ceph-mgr.log" ceph-mgr -c "$S3_CONF" -i x -f
	uuid=$(cat /proc/sys/kernel/random/uuid)
	_s3_ceph osd new "$uuid" 0 >>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	ceph-osd -c "$S3_CONF" -i 0 --mkfs --osd-uuid "$uuid" \
		>>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	_spawn S3OSD "$T_OUT/ceph-osd.log" ceph-osd -c "$S3_CONF" -i 0 -f
	end=$((SECONDS + 120))
	until _s3_ceph osd stat 2>/dev/null | grep -q '1 up'; do
		alive S3OSD && [ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
	_spawn S3RGW "$T_OUT/radosgw.log" radosgw -c "$S3_CONF" -n client.rgw.test -f
	S3_PORT=$rgwport
	S3_URL=http://127.0.0.1:$rgwport
	end=$((SECONDS + 180))
	until curl -s -o /dev/null -m 2 "$S3_URL/"; do
		alive S3RGW && [ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
	timeout 120 radosgw-admin -c "$S3_CONF" -n client.rgw.test user create \
		--uid ccptest --display-name ccptest \
		--access-key "$S3_ACCESS" --secret "$S3_SECRET" \
		>>"$T_OUT/ceph-setup.log" 2>&1 || return 1
	S3_CREDS=$T_TMP/s3-credentials
	printf '{"access_key_id": "%s", "secret_access_key": "%s"}\n' \
		"$S3_ACCESS" "$S3_SECRET" >"$S3_CREDS"
	chmod 600 "$S3_CREDS"
	S3_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	note "ceph (mon, mgr, osd on memstore, radosgw) up in ${S3_SECS}s at $S3_URL (load: $(cut -d' ' -f1-3 /proc/loadavg))"
}

# s3_cli ARGS...: curl signing with AWS SigV4 (path-style URLs).  curl
# signs the hash of what it sends only for in-memory bodies; radosgw wants
# the header whenever the payload is not hashed, so say so.
s3_cli() {
	curl -sS -m 60 --aws-sigv4 "aws:amz:$S3_REGION:s3" \
		--user "$S3_ACCESS:$S3_SECRET" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

# s3_mb BUCKET: create a bucket; 0 on success.
s3_mb() {
	local code
	code=$(s3_cli -o /dev/null -w '%{http_code}' -X PUT "$S3_URL/$1")
	[ "$code" = 200 ]
}
