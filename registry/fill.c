/*
 * registry/fill.c: one upstream fetch per in-flight digest (or tag), and
 * every request that wants it as a waiter.  Blob bytes go to a temp file
 * while they are hashed; waiters stream [their offset, written) from that
 * file and follow it as it grows.  No waiter receives its final byte before
 * the digest has verified, so corruption is always a cut connection, never
 * a clean reply.  An upstream that drops mid-body is resumed with Range.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

#define FILL_CHUNK_MAX (16 * 1024 * 1024)
#define FILL_MAX_ATTEMPTS 4
#define FILL_BACKOFF_MS 250
#define FILL_WBUF (256 * 1024)

enum fill_state {
	FILL_CONNECTING, /* waiting for upstream headers */
	FILL_STREAMING,	 /* body arriving */
	FILL_VERIFIED,	 /* digest matched; being stored (fsync, rename) */
	FILL_DONE,	 /* stored and indexed */
	FILL_FAILED,
};

static const char *const fill_state_names[] = {
    "connecting", "streaming", "verified", "done", "failed"};

struct fill {
	TAILQ_ENTRY(fill) entry; /* srv->fills while listed */
	struct server *srv;
	enum fill_kind kind;
	enum fill_state state;
	int listed;
	int hold; /* > 0 while iterating waiters */
	struct upstream *up;
	char repo[ROUTE_NAME_MAX];
	char tag[ROUTE_TAG_MAX + 1]; /* manifests by tag */
	int by_digest;
	struct digest digest;
	char *accept;
	int64_t size;		   /* -1 until known */
	uint64_t skip;		   /* resumed with a 200: bytes to drop */
	long status;		   /* upstream status of this attempt */
	struct blobstore_tmp *tmp; /* blobs */
	unsigned char *mbuf;	   /* manifests */
	size_t mlen;
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct digest claimed; /* upstream's Docker-Content-Digest */
	int have_claimed;
	TAILQ_HEAD(, req) waiters;
	TAILQ_HEAD(, fill_sub) subs; /* fill_fetch() callers */
	struct upstream_xfer *xfer;
	int attempts;
	struct event *retry_ev;
	struct event *wake_ev;
	int64_t start_ms;
	int64_t progress_ms; /* last body byte (or the start) */
	int64_t upstream_ms;
	char why[96];	     /* failure, for subscribers */
	int persist_rc;	     /* set by the worker */
	unsigned char *wbuf; /* received, not yet written (FILL_WBUF) */
	size_t wlen;
	int persist_failed;
	char up_cache[32];     /* the tier above's X-Cache, or "" */
	struct s3_xfer *sxfer; /* reading from the shared store */
	int shared;	       /* bytes came from the shared store */
};

/* A caller that wants the result, not the bytes (pre-warm jobs). */
struct fill_sub {
	TAILQ_ENTRY(fill_sub) entry;
	struct fill *f;
	fill_fetch_cb cb;
	void *arg;
};

static void fill_start_xfer(struct fill *);
static void fill_fail(struct fill *, enum oci_err, const char *);
static void fill_pump(struct req *);
static int fill_shared_start(struct fill *);
static int fill_shared_refetch(struct fill *, int discarded);

static void
fill_set_state(struct fill *f, enum fill_state st)
{
	char d[DIGEST_STRLEN];

	if (log_level_get() == LOG_LEVEL_DEBUG) {
		if (f->by_digest)
			digest_format(&f->digest, d);
		log_debug("fill %s/%s: %s -> %s", f->repo,
		    f->by_digest ? d : f->tag, fill_state_names[f->state],
		    fill_state_names[st]);
	}
	f->state = st;
}

/* The bytes in the temp file are the blob: a stream may complete. */
static int
fill_verified(const struct fill *f)
{
	return f->state == FILL_VERIFIED || f->state == FILL_DONE;
}

static void
fill_unlist(struct fill *f)
{
	if (f->listed) {
		TAILQ_REMOVE(&f->srv->fills, f, entry);
		f->srv->nfills--;
		f->listed = 0;
	}
}

static void
fill_free(struct fill *f)
{
	fill_unlist(f);
	upstream_xfer_cancel(f->xfer);
	s3_xfer_cancel(f->sxfer);
	if (f->retry_ev != NULL)
		event_free(f->retry_ev);
	if (f->wake_ev != NULL)
		event_free(f->wake_ev);
	blobstore_tmp_free(f->tmp);
	free(f->wbuf);
	free(f->mbuf);
	free(f->accept);
	free(f);
}

static void
fill_maybe_free(struct fill *f)
{
	if (f->hold == 0 && TAILQ_EMPTY(&f->waiters) && TAILQ_EMPTY(&f->subs) &&
	    (f->state == FILL_DONE || f->state == FILL_FAILED))
		fill_free(f);
}

/* Runs fn on every waiter; waiters may leave (and finish) meanwhile. */
static void
fill_each_waiter(struct fill *f, void (*fn)(struct req *))
{
	struct req *r, *next;

	f->hold++;
	for (r = TAILQ_FIRST(&f->waiters); r != NULL; r = next) {
		next = TAILQ_NEXT(r, wentry);
		fn(r);
	}
	f->hold--;
	fill_maybe_free(f);
}

/* Writes (and hashes) what fill_body_cb gathered; 0 or -1. */
static int
fill_flush(struct fill *f)
{
	if (f->wlen == 0 || f->tmp == NULL)
		return 0;
	if (blobstore_tmp_write(f->tmp, f->wbuf, f->wlen) == -1)
		return -1;
	f->wlen = 0;
	return 0;
}

/*
 * A write failed.  For lack of space: a 503 with the spec's error body
 * (or a cut stream), the partial file removed, the metric counted and an
 * eviction pass started; hits go on being served.
 */
static void
fill_write_failed(struct fill *f)
{
	struct server *srv = f->srv;
	uint64_t want;

	if (f->tmp != NULL && blobstore_tmp_nospace(f->tmp)) {
		want = f->size > 0 ? (uint64_t)f->size : 0;
		/* f may be freed by fill_fail */
		fill_fail(f, OCI_ERR_UNAVAILABLE,
		    "the mirror's disk is full; retry later");
		evict_nospace(srv, want);
		return;
	}
	fill_fail(f, OCI_ERR_INTERNAL, "cannot write the temp file");
}

static void
fill_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fill *f = arg;

	(void)fd;
	(void)what;
	if (fill_flush(f) == -1) {
		fill_write_failed(f);
		return;
	}
	fill_each_waiter(f, fill_pump);
}

/* Tells every subscriber how it ended; they may start other fills. */
static void
fill_notify_subs(struct fill *f, const char *why)
{
	struct fill_sub *sub;

	f->hold++;
	while ((sub = TAILQ_FIRST(&f->subs)) != NULL) {
		TAILQ_REMOVE(&f->subs, sub, entry);
		sub->cb(sub->arg,
		    f->state == FILL_DONE && why == NULL ? &f->digest : NULL,
		    f->state == FILL_DONE && why == NULL ? NULL : why);
		free(sub);
	}
	f->hold--;
}

/* Coalesces wake-ups: waiters are pumped once per loop iteration. */
static void
fill_wake(struct fill *f)
{
	if (!event_pending(f->wake_ev, EV_TIMEOUT | EV_READ | EV_WRITE, NULL))
		event_active(f->wake_ev, 0, 0);
}

/* The error a waiter gets, and the reply of each failure. */
static void
fill_fail_waiter(struct req *r)
{
	if (r->state == REQ_STREAMING) {
		req_abort(r, "upstream fetch failed");
		return;
	}
	if (r->fill_failed != NULL && r->fill_failed(r) == 0)
		return;
	req_error(r, r->fill_err, r->fill_why);
}

static void
fill_fail(struct fill *f, enum oci_err err, const char *why)
{
	struct req *r;

	if (f->state == FILL_FAILED || f->state == FILL_DONE ||
	    f->state == FILL_VERIFIED)
		return;
	fill_set_state(f, FILL_FAILED);
	fill_unlist(f); /* the next request starts afresh */
	upstream_xfer_cancel(f->xfer);
	f->xfer = NULL;
	s3_xfer_cancel(f->sxfer);
	f->sxfer = NULL;
	blobstore_tmp_free(f->tmp);
	f->tmp = NULL;
	TAILQ_FOREACH(r, &f->waiters, wentry) {
		r->fill_err = err;
		r->fill_why = why;
	}
	if (why == NULL && f->status > 0)
		snprintf(f->why, sizeof f->why, "%s (upstream answered %ld)",
		    oci_err_code(err), f->status);
	else
		xstrlcpy(f->why, why != NULL ? why : oci_err_code(err),
		    sizeof f->why);
	f->hold++;
	fill_notify_subs(f, f->why);
	f->hold--;
	fill_each_waiter(f, fill_fail_waiter);
}

/* Content-Range: bytes A-B/T -> A, or -1. */
static int64_t
fill_range_start(const char *cr)
{
	long long a;

	if (cr == NULL || sscanf(cr, "bytes %lld-", &a) != 1 || a < 0)
		return -1;
	return a;
}

/* Content-Range: bytes A-B/T -> T, or -1. */
static int64_t
fill_range_total(const char *cr)
{
	const char *slash = cr != NULL ? strchr(cr, '/') : NULL;
	long long t;

	if (slash == NULL || sscanf(slash + 1, "%lld", &t) != 1 || t < 0)
		return -1;
	return t;
}

static int
fill_headers_cb(void *arg, const struct upstream_response *resp)
{
	struct fill *f = arg;
	int64_t total;
	uint64_t have = f->tmp != NULL ? blobstore_tmp_size(f->tmp) : 0;

	f->status = resp->status;
	f->upstream_ms = resp->duration_ms;
	if (resp->status != 200 && resp->status != 206)
		return 0; /* failed in fill_done_cb */
	if (resp->x_cache != NULL && f->up_cache[0] == '\0' &&
	    resp->x_cache[strspn(
		resp->x_cache, "ABCDEFGHIJKLMNOPQRSTUVWXYZ, ")] == '\0') {
		/* a cache above us (a parent tier): which of its tiers served
		 */
		xstrlcpy(f->up_cache, resp->x_cache, sizeof f->up_cache);
		metrics_tier_fill(
		    f->srv, strncmp(resp->x_cache, "HIT", 3) == 0);
	}
	if (f->kind == FILL_MANIFEST) {
		if (resp->content_length > OCI_MANIFEST_MAX)
			return -1;
		if (resp->content_type != NULL)
			xstrlcpy(f->media_type, resp->content_type,
			    sizeof f->media_type);
		if (resp->docker_content_digest != NULL &&
		    digest_parse(&f->claimed, resp->docker_content_digest) == 0)
			f->have_claimed = 1;
	} else if (resp->status == 206) {
		if (fill_range_start(resp->content_range) != (int64_t)have)
			return -1; /* not where we asked to resume */
		if (f->size < 0 &&
		    (total = fill_range_total(resp->content_range)) >= 0)
			f->size = total;
	} else {
		f->skip = have; /* upstream ignored Range: drop what we have */
		if (resp->content_length >= 0) {
			if (f->size >= 0 && f->size != resp->content_length)
				return -1;
			f->size = resp->content_length;
		}
	}
	if (f->state == FILL_CONNECTING)
		fill_set_state(f, FILL_STREAMING);
	/* make room before the bytes arrive (Content-Length) */
	if (f->kind == FILL_BLOB && f->size > (int64_t)have)
		evict_check(f->srv, (uint64_t)f->size - have);
	fill_wake(f);
	return 0;
}

/* Body bytes of a manifest fill, kept in memory (capped). */
static int
fill_keep_manifest(struct fill *f, const void *buf, size_t len)
{
	if (f->mlen + len > OCI_MANIFEST_MAX)
		return -1;
	f->mbuf = xreallocarray(f->mbuf, f->mlen + len, 1);
	memcpy(f->mbuf + f->mlen, buf, len);
	f->mlen += len;
	return 0;
}

/* Body bytes of a blob fill (from upstream or the bucket), to the temp file. */
static int
fill_keep_blob(struct fill *f, const void *buf, size_t len)
{
	if (f->size >= 0 &&
	    blobstore_tmp_size(f->tmp) + f->wlen + len > (uint64_t)f->size)
		return -1; /* longer than declared: cannot be the blob */
	/*
	 * curl hands over 16 KiB at a time; gather a loop pass's worth and
	 * write and hash it once (fill_flush, from the wake-up).
	 */
	if (f->wlen + len > FILL_WBUF && fill_flush(f) == -1)
		return -1;
	if (len > FILL_WBUF)
		return blobstore_tmp_write(f->tmp, buf, len);
	memcpy(f->wbuf + f->wlen, buf, len);
	f->wlen += len;
	fill_wake(f);
	return 0;
}

static int
fill_body_cb(void *arg, const void *buf, size_t len)
{
	struct fill *f = arg;
	const unsigned char *p = buf;

	f->progress_ms = clock_now_ms();
	metrics_upstream_bytes(f->srv, len);
	if (f->kind == FILL_MANIFEST)
		return fill_keep_manifest(f, buf, len);
	if (f->skip > 0) {
		size_t n = f->skip < len ? (size_t)f->skip : len;

		f->skip -= n;
		p += n;
		len -= n;
	}
	if (len == 0)
		return 0;
	return fill_keep_blob(f, p, len);
}

/* On a worker thread: only the temp file and the file system. */
static void
fill_persist_work(void *arg)
{
	struct fill *f = arg;

	f->persist_rc = blobstore_tmp_persist(f->tmp);
}

/* Back on the loop: index it; from now on the store serves it. */
static void
fill_persist_done(void *arg)
{
	struct fill *f = arg;
	struct db_blob meta;

	f->hold--;
	memset(&meta, 0, sizeof meta);
	meta.size = blobstore_tmp_size(f->tmp);
	meta.stored_at = meta.last_access = clock_wall_s();
	xstrlcpy(meta.upstream, upstream_name(f->up), sizeof meta.upstream);
	if (f->persist_rc == -1 ||
	    db_blob_put(f->srv->db, &f->digest, &meta) == -1) {
		/* Verified bytes went out; a later request fetches it again. */
		f->persist_failed = 1;
		xstrlcpy(f->why, "cannot store the blob", sizeof f->why);
	}
	fill_set_state(f, FILL_DONE);
	fill_unlist(f);
	if (!f->persist_failed && !f->shared)
		shared_upload_blob(f->srv, &f->digest);
	fill_notify_subs(f, f->persist_failed ? f->why : NULL);
	fill_wake(f);
	evict_check(f->srv, 0);
	fill_maybe_free(f);
}

static void
fill_commit_blob(struct fill *f)
{
	struct digest got;
	char want[DIGEST_STRLEN], have[DIGEST_STRLEN];

	if (f->size >= 0 && blobstore_tmp_size(f->tmp) != (uint64_t)f->size) {
		if (f->shared && fill_shared_refetch(f, 0) == 0)
			return;
		fill_fail(f, OCI_ERR_UNAVAILABLE, "upstream body too short");
		return;
	}
	if (blobstore_tmp_verify(f->tmp, &f->digest, &got) == -1) {
		if (f->shared && fill_shared_refetch(f, 1) == 0)
			return;
		digest_format(&f->digest, want);
		digest_format(&got, have);
		metrics_digest_mismatch(f->srv);
		log_warn(
		    "digest mismatch from '%s' for %s@%s: got %s; nothing stored",
		    upstream_name(f->up), f->repo, want, have);
		fill_fail(f, OCI_ERR_UNAVAILABLE,
		    "upstream content did not match its digest");
		return;
	}
	if (f->size < 0)
		f->size = (int64_t)blobstore_tmp_size(f->tmp);
	/*
	 * Verified: waiters may send their last byte now.  The fsync and
	 * rename run on a worker; until they are done the fill stays listed,
	 * so new requests join it and read the same (verified) file.
	 */
	fill_set_state(f, FILL_VERIFIED);
	fill_wake(f);
	f->hold++;
	pool_submit(f->srv->pool, fill_persist_work, fill_persist_done, f);
}

static int
fill_store_manifest(struct fill *f, const struct digest *d)
{
	struct blobstore_tmp *tmp;
	struct db_blob meta;
	struct digest got;
	int rc;

	if ((rc = db_blob_get(f->srv->db, d, &meta)) == -1)
		return -1;
	if (rc == 1 || !blobstore_has(f->srv->store, d)) {
		if ((tmp = blobstore_tmp_new(f->srv->store)) == NULL)
			return -1;
		if (blobstore_tmp_write(tmp, f->mbuf, f->mlen) == -1 ||
		    blobstore_tmp_commit(tmp, d, &got) == -1) {
			blobstore_tmp_free(tmp);
			return -1;
		}
		blobstore_tmp_free(tmp);
		memset(&meta, 0, sizeof meta);
		meta.size = f->mlen;
		meta.stored_at = meta.last_access = clock_wall_s();
		xstrlcpy(
		    meta.media_type, f->media_type, sizeof meta.media_type);
		xstrlcpy(
		    meta.upstream, upstream_name(f->up), sizeof meta.upstream);
		if (db_blob_put(f->srv->db, d, &meta) == -1)
			return -1;
	}
	/*
	 * The tag's mapping is what upstream serves for the full Accept
	 * list; a narrower list may get one platform's manifest, which must
	 * not become the tag's meaning for everyone.
	 */
	if (!f->by_digest && oci_accepts_indexes(f->accept)) {
		struct db_tag t;

		memset(&t, 0, sizeof t);
		t.digest = *d;
		t.confirmed_at = clock_wall_s();
		xstrlcpy(t.media_type, f->media_type, sizeof t.media_type);
		if (db_tag_put(f->srv->db, upstream_name(f->up), f->repo,
			f->tag, &t) == -1)
			return -1;
		mcache_tag_put(
		    f->srv->mcache, upstream_name(f->up), f->repo, f->tag, &t);
	}
	/* verified above: the next hit is served from memory */
	mcache_blob_unref(
	    mcache_put(f->srv->mcache, d, f->media_type, f->mbuf, f->mlen));
	return 0;
}

static void
fill_commit_manifest(struct fill *f)
{
	struct digest got;
	char mt[OCI_MEDIA_TYPE_MAX];

	digest_buf(f->mbuf, f->mlen, &got);
	if ((f->by_digest && !digest_equal(&got, &f->digest)) ||
	    (f->have_claimed && !digest_equal(&got, &f->claimed))) {
		if (f->shared && fill_shared_refetch(f, 0) == 0)
			return;
		metrics_digest_mismatch(f->srv);
		log_warn(
		    "digest mismatch from '%s' for manifest %s:%s; nothing stored",
		    upstream_name(f->up), f->repo,
		    f->by_digest ? "(by digest)" : f->tag);
		fill_fail(f, OCI_ERR_UNAVAILABLE,
		    "upstream manifest did not match its digest");
		return;
	}
	if (oci_manifest_media_type(f->mbuf, f->mlen, mt, sizeof mt) == -1) {
		fill_fail(f, OCI_ERR_MANIFEST_INVALID,
		    "upstream sent a manifest that is not JSON");
		return;
	}
	/* The upstream's Content-Type is the manifest's own; fall back to
	 * its mediaType field only when upstream sent none. */
	if (f->media_type[0] == '\0')
		xstrlcpy(f->media_type, mt, sizeof f->media_type);
	f->digest = got;
	if (fill_store_manifest(f, &got) == -1)
		log_warn("cannot store manifest %s:%s; serving it uncached",
		    f->repo, f->tag);
	else if (!f->shared)
		shared_upload_mem(
		    f->srv, &got, f->media_type, f->mbuf, f->mlen);
	fill_set_state(f, FILL_DONE);
	fill_unlist(f);
	fill_notify_subs(f, NULL);
	fill_wake(f);
}

static void
fill_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fill_start_xfer(arg);
}

/* Backoff on a timer, never sleep: 250 ms, 500 ms, 1 s. */
static void
fill_retry_later(struct fill *f, const char *why)
{
	struct timeval tv;
	int64_t ms = FILL_BACKOFF_MS << (f->attempts - 1);

	log_warn("upstream '%s' failed for %s (%s); retrying in %" PRId64 " ms",
	    upstream_name(f->up), f->repo, why, ms);
	if (f->kind == FILL_MANIFEST)
		f->mlen = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(f->retry_ev, &tv);
}

static void
fill_done_cb(void *arg, enum upstream_result res, const char *why)
{
	struct fill *f = arg;

	f->xfer = NULL;
	if (fill_flush(f) == -1 ||
	    (f->tmp != NULL && blobstore_tmp_nospace(f->tmp))) {
		fill_write_failed(f);
		return;
	}
	if (res == UPSTREAM_OK && f->status == 416 && f->tmp != NULL &&
	    blobstore_tmp_size(f->tmp) > 0 && f->attempts < FILL_MAX_ATTEMPTS &&
	    blobstore_tmp_reset(f->tmp) == 0) {
		/* a leftover partial file at or past the end: start over */
		fill_start_xfer(f);
		return;
	}
	if (res == UPSTREAM_OK && f->status >= 500 &&
	    f->attempts < FILL_MAX_ATTEMPTS) {
		metrics_upstream_result(f->srv, res, f->status);
		fill_retry_later(f, "upstream answered 5xx");
		return;
	}
	if (res == UPSTREAM_OK && f->status != 200 && f->status != 206) {
		/* an answer (404, 401, ...), not a failure of the upstream */
		metrics_upstream_result(f->srv, res, f->status);
		log_info("upstream '%s' answered %ld for %s",
		    upstream_name(f->up), f->status, f->repo);
		fill_fail(f,
		    oci_err_from_status(f->status, f->kind == FILL_BLOB),
		    f->status == 404 ? NULL : "upstream refused the request");
		return;
	}
	if (res == UPSTREAM_OK) {
		if (f->kind == FILL_BLOB)
			fill_commit_blob(f);
		else
			fill_commit_manifest(f);
		return;
	}
	metrics_upstream_result(f->srv, res, f->status);
	/*
	 * A blob that was arriving: resume from the byte reached, with
	 * backoff on a timer.  Manifests are small; refetch them whole.
	 */
	/*
	 * ...unless nothing has arrived for stall_total_s across attempts:
	 * an upstream that stalls every time would otherwise hold clients
	 * for FILL_MAX_ATTEMPTS stall timeouts.
	 */
	if ((res == UPSTREAM_EBODY ||
		(res == UPSTREAM_ECONNECT && f->state == FILL_STREAMING)) &&
	    f->attempts < FILL_MAX_ATTEMPTS &&
	    (f->srv->opts->stall_total_s <= 0 ||
		clock_now_ms() - f->progress_ms <
		    f->srv->opts->stall_total_s * 1000)) {
		fill_retry_later(f, why);
		return;
	}
	/* upstream.c logged a transfer that failed (once, with its URL) */
	if (res == UPSTREAM_ECONNECT || res == UPSTREAM_EBODY)
		log_debug("upstream '%s' failed for %s: %s",
		    upstream_name(f->up), f->repo,
		    why != NULL ? why : "unknown error");
	else
		log_warn("upstream '%s' failed for %s: %s",
		    upstream_name(f->up), f->repo,
		    why != NULL ? why : "unknown error");
	fill_fail(f,
	    res == UPSTREAM_EAUTH ? OCI_ERR_UNAUTHORIZED : OCI_ERR_UNAVAILABLE,
	    "upstream registry unavailable");
}

static void
fill_start_xfer(struct fill *f)
{
	static const struct upstream_cbs cbs = {
	    fill_headers_cb, fill_body_cb, fill_done_cb};
	struct upstream_req ureq;
	char path[ROUTE_NAME_MAX + 256], d[DIGEST_STRLEN];

	f->attempts++;
	f->status = 0;
	if (f->by_digest)
		digest_format(&f->digest, d);
	snprintf(path, sizeof path, "/v2/%s/%s/%s", f->repo,
	    f->kind == FILL_BLOB ? "blobs" : "manifests",
	    f->by_digest ? d : f->tag);
	memset(&ureq, 0, sizeof ureq);
	ureq.method = UPSTREAM_GET;
	ureq.path = path;
	ureq.repo = f->repo;
	ureq.accept = f->kind == FILL_MANIFEST ? f->accept : NULL;
	ureq.range_start = f->kind == FILL_BLOB && f->tmp != NULL &&
		blobstore_tmp_size(f->tmp) > 0
	    ? (int64_t)blobstore_tmp_size(f->tmp)
	    : -1;
	f->xfer = upstream_xfer_start(f->up, &ureq, &cbs, f);
	if (f->xfer == NULL)
		fill_fail(
		    f, OCI_ERR_INTERNAL, "cannot start upstream transfer");
}

/* The shared store ------------------------------------------------------ */

static int
fill_shared_headers_cb(void *arg, int64_t length, const char *ctype)
{
	struct fill *f = arg;

	if (f->kind == FILL_MANIFEST) {
		if (length > OCI_MANIFEST_MAX)
			return -1;
		/* only a manifest type; else the mediaType field decides */
		if (ctype != NULL &&
		    strncmp(ctype, "application/vnd.", 16) == 0)
			xstrlcpy(f->media_type, ctype, sizeof f->media_type);
	} else if (length >= 0) {
		f->size = length;
		/* make room before the bytes arrive, as for upstream */
		evict_check(f->srv, (uint64_t)length);
	}
	f->shared = 1;
	f->status = 200;
	if (f->state == FILL_CONNECTING)
		fill_set_state(f, FILL_STREAMING);
	fill_wake(f);
	return 0;
}

static int
fill_shared_body_cb(void *arg, const void *buf, size_t len)
{
	struct fill *f = arg;

	if (f->kind == FILL_MANIFEST)
		return fill_keep_manifest(f, buf, len);
	return fill_keep_blob(f, buf, len);
}

/*
 * The bucket answered, or failed.  A complete object is verified like an
 * upstream body (fill_commit_*; a mismatch comes back through
 * fill_shared_refetch); anything else goes upstream, resuming after the
 * bytes already here, which the final digest check covers too.
 */
static void
fill_shared_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct fill *f = arg;
	struct s3_stats *st = s3_counters(shared_s3(f->srv));

	(void)why;
	f->sxfer = NULL;
	if (fill_flush(f) == -1 ||
	    (f->tmp != NULL && blobstore_tmp_nospace(f->tmp))) {
		fill_write_failed(f);
		return;
	}
	if (res == S3_OK) {
		if (f->kind == FILL_BLOB)
			fill_commit_blob(f);
		else
			fill_commit_manifest(f);
		if (f->shared &&
		    (f->state == FILL_VERIFIED || f->state == FILL_DONE))
			st->hits++;
		return;
	}
	if (res == S3_ENOTFOUND)
		st->misses++;
	if (f->kind == FILL_MANIFEST) {
		f->mlen = 0;
		f->shared = 0;
	} else if (f->tmp != NULL && blobstore_tmp_size(f->tmp) == 0)
		f->shared = 0;
	fill_start_xfer(f);
}

/* 0 if the bucket was asked for f's digest; -1: go upstream. */
static int
fill_shared_start(struct fill *f)
{
	static const struct s3_cbs cbs = {
	    fill_shared_headers_cb, fill_shared_body_cb, fill_shared_done_cb};
	struct s3 *s3 = shared_s3(f->srv);

	if (s3 == NULL || !f->by_digest ||
	    (f->tmp != NULL && blobstore_tmp_size(f->tmp) > 0))
		return -1;
	f->sxfer = s3_blob_get(s3, &f->digest, 0, &cbs, f);
	return f->sxfer != NULL ? 0 : -1;
}

/* A waiter that got bytes from the bad object: cut, it may retry. */
static void
fill_shared_cut(struct req *r)
{
	if (r->state == REQ_STREAMING)
		req_abort(r, "shared store object did not match its digest");
}

/*
 * The bucket's object did not hash to its name: treated as absent (and
 * reported); the fill starts over from upstream.  discarded: the temp
 * file was already thrown away by the digest check.  0, or -1 to fail.
 */
static int
fill_shared_refetch(struct fill *f, int discarded)
{
	char d[DIGEST_STRLEN];

	s3_counters(shared_s3(f->srv))->corrupt++;
	digest_format(&f->digest, d);
	log_warn("shared store object for %s does not match its digest; "
		 "treated as absent, fetching it from upstream",
	    f->by_digest ? d : f->tag);
	f->shared = 0;
	if (f->kind == FILL_MANIFEST) {
		f->mlen = 0;
		fill_start_xfer(f);
		return 0;
	}
	fill_each_waiter(f, fill_shared_cut);
	if (discarded || blobstore_tmp_reset(f->tmp) == -1) {
		blobstore_tmp_free(f->tmp);
		if ((f->tmp = blobstore_tmp_resume(
			 f->srv->store, &f->digest)) == NULL)
			return -1;
	}
	f->size = -1;
	f->skip = 0;
	f->wlen = 0;
	fill_set_state(f, FILL_CONNECTING);
	fill_start_xfer(f);
	return 0;
}

/* What a fill fetches: its identity for single flight. */
struct fill_key {
	enum fill_kind kind;
	struct upstream *up;
	const char *repo;
	const char *tag; /* "" when by digest */
	int by_digest;
	const struct digest *digest;
	const char *accept; /* manifests; NULL: everything */
};

static struct fill *
fill_find(struct server *srv, const struct fill_key *k)
{
	struct fill *f;

	TAILQ_FOREACH(f, &srv->fills, entry) {
		if (f->kind != k->kind || f->by_digest != k->by_digest)
			continue;
		if (f->by_digest) {
			/* content-addressed: any repository, any upstream */
			if (digest_equal(&f->digest, k->digest))
				return f;
		} else if (f->up == k->up && strcmp(f->repo, k->repo) == 0 &&
		    strcmp(f->tag, k->tag) == 0 &&
		    oci_accepts_indexes(f->accept) ==
			oci_accepts_indexes(k->accept))
			return f;
	}
	return NULL;
}

static struct fill *
fill_new(struct server *srv, const struct fill_key *k)
{
	struct fill *f;

	f = xcalloc(1, sizeof *f);
	f->srv = srv;
	f->kind = k->kind;
	f->state = FILL_CONNECTING;
	f->up = k->up;
	xstrlcpy(f->repo, k->repo, sizeof f->repo);
	xstrlcpy(f->tag, k->tag, sizeof f->tag);
	f->by_digest = k->by_digest;
	if (k->by_digest)
		f->digest = *k->digest;
	f->size = -1;
	f->accept = xstrdup(k->accept != NULL && k->accept[0] != '\0'
		? k->accept
		: oci_accept_all());
	f->start_ms = f->progress_ms = clock_now_ms();
	TAILQ_INIT(&f->waiters);
	TAILQ_INIT(&f->subs);
	f->retry_ev = evtimer_new(srv->base, fill_retry_cb, f);
	f->wake_ev = event_new(srv->base, -1, 0, fill_wake_cb, f);
	if (f->retry_ev == NULL || f->wake_ev == NULL)
		fatal("out of memory creating fill events");
	if (k->kind == FILL_BLOB)
		f->wbuf = xmalloc(FILL_WBUF);
	if (k->kind == FILL_BLOB &&
	    (f->tmp = blobstore_tmp_resume(srv->store, k->digest)) == NULL) {
		fill_free(f);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&srv->fills, f, entry);
	srv->nfills++;
	f->listed = 1;
	f->hold++;
	if (f->tmp != NULL && blobstore_tmp_complete(f->tmp)) {
		/* an earlier run had all of it: no upstream request at all */
		f->state = FILL_STREAMING;
		fill_commit_blob(f);
	} else if (fill_shared_start(f) == -1)
		fill_start_xfer(f);
	f->hold--;
	if (f->state == FILL_FAILED) {
		fill_maybe_free(f);
		return NULL;
	}
	return f;
}

static void
fill_req_key(struct req *r, enum fill_kind kind, struct fill_key *k)
{
	k->kind = kind;
	k->up = r->up;
	k->repo = r->route.name;
	k->tag = r->route.tag;
	k->by_digest = r->route.by_digest;
	k->digest = &r->route.digest;
	k->accept = req_accept(r);
}

int
fill_digest_busy(struct server *srv, const struct digest *d)
{
	struct fill *f;

	TAILQ_FOREACH(f, &srv->fills, entry)
		if (f->by_digest && digest_equal(&f->digest, d))
			return 1;
	return 0;
}

int
fill_in_flight(struct req *r, enum fill_kind kind)
{
	struct fill_key k;

	fill_req_key(r, kind, &k);
	return fill_find(r->srv, &k) != NULL;
}

struct fill_sub *
fill_fetch(struct server *srv, struct upstream *up, const char *repo,
    enum fill_kind kind, const char *tag, const struct digest *d,
    fill_fetch_cb cb, void *arg)
{
	struct fill_key k;
	struct fill_sub *sub;
	struct fill *f;

	memset(&k, 0, sizeof k);
	k.kind = kind;
	k.up = up;
	k.repo = repo;
	k.tag = tag != NULL ? tag : "";
	k.by_digest = tag == NULL;
	k.digest = d;
	if ((f = fill_find(srv, &k)) == NULL && (f = fill_new(srv, &k)) == NULL)
		return NULL;
	sub = xcalloc(1, sizeof *sub);
	sub->f = f;
	sub->cb = cb;
	sub->arg = arg;
	TAILQ_INSERT_TAIL(&f->subs, sub, entry);
	return sub;
}

void
fill_fetch_cancel(struct fill_sub *sub)
{
	struct fill *f;

	if (sub == NULL)
		return;
	f = sub->f;
	TAILQ_REMOVE(&f->subs, sub, entry);
	free(sub);
	fill_maybe_free(f);
}

int
fill_attach(struct req *r, enum fill_kind kind)
{
	struct fill_key k;
	struct fill *f;
	int joined = 1;

	fill_req_key(r, kind, &k);
	if ((f = fill_find(r->srv, &k)) == NULL) {
		if ((f = fill_new(r->srv, &k)) == NULL) {
			if (errno == ENOSPC || errno == EDQUOT) {
				evict_nospace(r->srv, 0);
				req_error(r, OCI_ERR_UNAVAILABLE,
				    "the mirror's disk is full; retry later");
			} else
				req_error(r, OCI_ERR_INTERNAL,
				    "cannot create temp file");
			return -1;
		}
		joined = 0;
	}
	r->fill = f;
	if (kind == FILL_BLOB && f->by_digest) {
		/* a waiter reads the blob's file until it is done */
		r->reading = f->digest;
		r->reading_tab = evict_reader_add(r->srv, &f->digest);
	}
	r->state = REQ_WAITING;
	r->cache = joined ? REQ_CACHE_COALESCED : REQ_CACHE_MISS;
	if (fill_verified(f)) {
		/* complete and verified on disk, only not renamed yet */
		r->cache = REQ_CACHE_HIT;
		joined = 0;
		fill_wake(f);
	}
	TAILQ_INSERT_TAIL(&f->waiters, r, wentry);
	if (joined) {
		metrics_coalesced(r->srv);
		fill_wake(f);
	}
	return joined;
}

void
fill_detach(struct req *r)
{
	struct fill *f = r->fill;

	if (f == NULL)
		return;
	TAILQ_REMOVE(&f->waiters, r, wentry);
	r->fill = NULL;
	evict_reader_del(r->reading_tab, &r->reading);
	r->reading_tab = NULL;
	r->upstream_ms = f->upstream_ms;
	fill_maybe_free(f);
}

void
fill_abort_all(struct server *srv)
{
	struct fill *f;

	while ((f = TAILQ_FIRST(&srv->fills)) != NULL) {
		f->hold++;
		fill_fail(f, OCI_ERR_UNAVAILABLE, "shutting down");
		f->hold--;
		fill_maybe_free(f);
	}
}

static void
fill_sent_cb(struct req *r)
{
	fill_pump(r);
}

static void
fill_pump_manifest(struct req *r)
{
	struct fill *f = r->fill;
	const void *body = f->mbuf;
	size_t len = f->mlen;

	if (f->state != FILL_DONE)
		return;
	fill_detach(r);
	xstrlcpy(r->up_cache, f->up_cache, sizeof r->up_cache);
	/* f stays alive: fill_each_waiter holds it while we run */
	req_reply_mem(r, 200, f->media_type, &f->digest, body, len);
}

/* Stream what has landed; hold back the last byte until verified. */
static void
fill_pump_blob(struct req *r)
{
	struct fill *f = r->fill;
	uint64_t written, limit, start, end, n;
	int rr;

	if (r->chunk_pending || f->state == FILL_CONNECTING)
		return;
	written = blobstore_tmp_size(f->tmp);
	if (r->state == REQ_WAITING) {
		xstrlcpy(r->up_cache, f->up_cache, sizeof r->up_cache);
		if (f->size < 0) {
			if (!fill_verified(f) && r->method == REQ_HEAD)
				return;
			r->off = 0;
			r->end = UINT64_MAX;
			req_stream_start(r, 200, -1, "application/octet-stream",
			    &f->digest, 0);
		} else {
			rr = req_range(r, (uint64_t)f->size, &start, &end);
			if (rr < 0) {
				fill_detach(r);
				req_range_invalid(r, (uint64_t)f->size);
				return;
			}
			r->off = start;
			r->end = end;
			if (r->method == REQ_HEAD) {
				fill_detach(r);
				req_reply_mem(r, 200,
				    "application/octet-stream", &f->digest,
				    NULL, (size_t)f->size);
				return;
			}
			req_stream_start(r, rr ? 206 : 200,
			    (int64_t)(end - start), "application/octet-stream",
			    &f->digest, (uint64_t)f->size);
		}
	}
	/*
	 * Length unknown when the reply started (chunked upstream): r->end
	 * is UINT64_MAX, and ends where the verified file ends.  f->size is
	 * no guide here: the commit fills it in once the digest matches.
	 */
	end = r->end;
	if (end == UINT64_MAX && fill_verified(f))
		end = written;
	limit = written < end ? written : end;
	if (!fill_verified(f) && limit == end && limit > 0)
		limit--;
	if (r->off < limit) {
		n = limit - r->off;
		if (n > FILL_CHUNK_MAX)
			n = FILL_CHUNK_MAX;
		start = r->off;
		r->off += n;
		req_stream_file(
		    r, blobstore_tmp_fd(f->tmp), start, n, fill_sent_cb);
		return;
	}
	if (fill_verified(f) && r->off >= end)
		req_stream_end(r);
}

static void
fill_pump(struct req *r)
{
	if (r->fill == NULL)
		return;
	if (r->fill->kind == FILL_MANIFEST)
		fill_pump_manifest(r);
	else
		fill_pump_blob(r);
}
