#!/usr/bin/env bash
# test_accept.sh: one client's Accept list never changes what a tag means
# for everyone (issue 10, defect 2).  A GET of a multi-arch tag with only a
# single-manifest type in Accept (the classic curl digest lookup) gets the
# linux/amd64 manifest, as upstream would answer it; a client that then
# asks with the full list still gets the index/list, and the narrow client
# is answered from the stored index (a HIT once its manifest is stored).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_net.sh"
t_init accept

start_registry UP || exit 1
seed_registry "$UP_URL" || exit 1
start_ccprewarm CCP "$UP_URL" || exit 1
M=$CCP_URL
FULL='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

# case_tag NAME REF NARROW-TYPE [full-first]
case_tag() {
	local name=$1 ref=$2 narrow=$3 repo tag idx amd i
	repo=${ref%%:*}
	tag=${ref##*:}
	idx=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .digest')
	amd=$(seed_q --arg r "$ref" '.images[] | select(.ref == $r) | .platforms[] | select(.platform.architecture == "amd64") | .digest')
	if [ "${4:-}" = full-first ]; then
		req GET "$M/v2/$repo/manifests/$tag" -H "Accept: $FULL"
		check "accept/$name/full-0" "full Accept: want the index $idx; $(exchange)" \
			[ "$R_CODE" = 200 -a "$(hdr docker-content-digest)" = "$idx" ]
	fi
	for i in 1 2; do
		req GET "$M/v2/$repo/manifests/$tag" -H "Accept: $narrow"
		check "accept/$name/narrow-$i" "narrow Accept: want the amd64 manifest $amd; $(exchange), digest $(hdr docker-content-digest)" \
			[ "$R_CODE" = 200 -a "$(hdr docker-content-digest)" = "$amd" -a "$(hdr content-type)" = "$narrow" ]
		req GET "$M/v2/$repo/manifests/$tag" -H "Accept: $FULL"
		check "accept/$name/full-$i" "full Accept after a narrow one: want the index $idx; $(exchange), digest $(hdr docker-content-digest), X-Cache $(hdr x-cache)" \
			[ "$R_CODE" = 200 -a "$(hdr docker-content-digest)" = "$idx" ]
	done
	req GET "$M/v2/$repo/manifests/$tag" -H "Accept: $narrow"
	check "accept/$name/narrow-hit" "narrow Accept with the index cached: X-Cache $(hdr x-cache), want HIT; $(exchange)" \
		[ "$R_CODE" = 200 -a "$(hdr x-cache)" = HIT -a "$(hdr docker-content-digest)" = "$amd" ]
}
case_tag docker-list test/multi-docker:v1 application/vnd.docker.distribution.manifest.v2+json
# distribution answers 404 to a narrow Accept for an uncached OCI index;
# once the index is cached the mirror answers like for a Docker list.
case_tag oci-index test/multi-oci:v1 application/vnd.oci.image.manifest.v1+json full-first
stop_clean CCP accept
t_done
