/*
 * registry/blob.c: GET/HEAD /v2/<name>/blobs/<digest>.  A stored blob is
 * sent with sendfile (Range honoured); anything else joins or starts the
 * fill for its digest.  A HEAD for a blob we neither have nor are fetching
 * is asked of the shared store, then upstream, and not stored, unless it
 * comes from a ccprewarm child (a tier): then it starts the fill and is
 * answered from it.  A cold ranged GET below a parent tier is relayed
 * (rangefwd.c) beside the fill.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "internal.h"

static void
blob_head_done(struct req *r, const struct passthru_result *px)
{
	if (px->res != UPSTREAM_OK) {
		req_error(
		    r, OCI_ERR_UNAVAILABLE, "upstream registry unavailable");
		return;
	}
	if (px->status != 200) {
		req_error(r, oci_err_from_status(px->status, 1), NULL);
		return;
	}
	r->cache = REQ_CACHE_MISS;
	req_reply_mem(r, 200, "application/octet-stream", &r->route.digest,
	    NULL, px->length >= 0 ? (size_t)px->length : 0);
}

/*
 * A ccprewarm below us (a child in a tier) asks HEAD first when its own
 * client did: fill then, so that the chain warms from a HEAD too (a parent
 * that only filled on GET would leave the tier cold).
 */
static int
blob_from_child(struct req *r)
{
	const char *ua = req_header(r, "User-Agent");

	return ua != NULL && strncmp(ua, "ccprewarm/", 10) == 0;
}

/* A HEAD nobody here can answer: asked upstream, nothing stored. */
static void
blob_head_upstream(struct req *r)
{
	char path[ROUTE_NAME_MAX + DIGEST_STRLEN + 32], hex[DIGEST_STRLEN];

	digest_format(&r->route.digest, hex);
	snprintf(path, sizeof path, "/v2/%s/blobs/%s", r->route.name, hex);
	passthru_start(r, UPSTREAM_HEAD, path, NULL, blob_head_done);
}

/*
 * The shared store's answer to a HEAD on its object: there (a size, as a
 * GET from the bucket would stream it, verified then) or upstream.
 */
static void
blob_shared_head_cb(struct req *r, enum s3_result res, int64_t length,
    const char *body, size_t len)
{
	(void)body;
	(void)len;
	if (res == S3_OK && length >= 0) {
		shared_count(r->srv, SHARED_HIT);
		r->cache = REQ_CACHE_MISS;
		req_reply_mem(r, 200, "application/octet-stream",
		    &r->route.digest, NULL, (size_t)length);
		return;
	}
	if (res == S3_ENOTFOUND)
		shared_count(r->srv, SHARED_MISS);
	blob_head_upstream(r);
}

/* A stored blob: 0 if it answered, -1 (nothing sent) if not stored.
 * Safe on any loop (LMDB reads, the store's files). */
int
blob_hit(struct req *r)
{
	struct server *srv = r->srv;
	const struct digest *d = &r->route.digest;
	struct db_blob meta;
	off_t size;
	int fd;

	if (db_blob_get(srv->db, d, &meta) != 0 ||
	    (fd = blobstore_open_blob(srv->store, d, &size)) == -1)
		return -1;
	db_touch(srv->db, d, clock_wall_s());
	r->cache = REQ_CACHE_HIT;
	req_reply_file(r, fd, (uint64_t)size, "application/octet-stream", d);
	return 0;
}

void
blob_handle(struct req *r)
{
	const struct digest *d = &r->route.digest;

	if (blob_hit(r) == 0)
		return;
	/*
	 * Upstream said 429: until its Retry-After has passed, a miss is
	 * answered here (with the time left) rather than asked again.
	 * With a shared store the fill asks the bucket first.
	 */
	if (!stream_in_flight(r, FILL_BLOB) && shared_s3(r->srv) == NULL &&
	    upstream_retry_after_s(r->up) > 0) {
		req_error(r, OCI_ERR_TOOMANYREQUESTS,
		    "upstream registry is rate limiting; retry later");
		return;
	}
	if (r->method == REQ_HEAD && !stream_in_flight(r, FILL_BLOB) &&
	    !blob_from_child(r)) {
		/* the bucket first, as for a GET */
		if (shared_head_blob(r, d, blob_shared_head_cb) == -1)
			blob_head_upstream(r);
		return;
	}
	/* a cold ranged GET below a parent tier: the Range goes up too */
	if (r->method == REQ_GET && !stream_in_flight(r, FILL_BLOB) &&
	    rangefwd_start(r) == 0)
		return;
	stream_attach(r, FILL_BLOB);
}
