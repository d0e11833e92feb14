/*
 * registry/fill.c: one upstream (or shared-store) fetch per in-flight digest
 * (or tag): the transfer, the temp file, hashing, verification, the commit
 * to the store, and telling its subscribers (fill_subscribe) how far it got.
 * It knows nothing of HTTP requests: a client streaming a fill (stream.c)
 * and a pre-warm job (fill_fetch) are both subscribers.  An upstream that
 * drops mid-body is resumed with Range.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

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
	struct readers *reading; /* by digest: held while listed */
	int hold; /* > 0 while telling subscribers (or persisting) */
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
	TAILQ_HEAD(, fill_sub) subs;
	struct upstream_xfer *xfer;
	int attempts;
	struct event *retry_ev;
	struct event *wake_ev;
	int64_t start_ms;
	int64_t progress_ms; /* last body byte (or the start) */
	int64_t upstream_ms;
	char why[96];	       /* failure, for subscribers */
	int persist_rc;	       /* set by the worker */
	struct db_blob meta;   /* the record the worker writes */
	struct db_tag tag_rec; /* the tag mapping it wrote (tag_put) */
	int tag_put;
	unsigned char *wbuf; /* received, not yet written (FILL_WBUF) */
	size_t wlen;
	int persist_failed;
	enum oci_err err;      /* how it failed, for replies */
	const char *err_why;   /* static detail for replies, or NULL */
	char up_cache[32];     /* the tier above's X-Cache, or "" */
	struct s3_xfer *sxfer; /* reading from the shared store */
	int shared;	       /* bytes came from the shared store */
};

/* One subscriber: a stream (stream.c) or a pre-warm fetch (fill_fetch). */
struct fill_sub {
	TAILQ_ENTRY(fill_sub) entry;
	struct fill *f;
	const struct fill_cbs *cbs;
	void *arg;
	int told_verified;
	fill_fetch_cb fetch_cb; /* fill_fetch's caller (arg is the sub) */
	void *fetch_arg;
};

static void fill_start_xfer(struct fill *);
static void fill_fail(struct fill *, enum oci_err, const char *);
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
		readers_del(f->reading, &f->digest);
		f->reading = NULL;
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
	if (f->hold == 0 && TAILQ_EMPTY(&f->subs) &&
	    (f->state == FILL_DONE || f->state == FILL_FAILED))
		fill_free(f);
}

/* What a subscriber is told: a snapshot, by value (see internal.h). */
static void
fill_note(const struct fill *f, struct fill_note *n)
{
	memset(n, 0, sizeof *n);
	n->avail = f->tmp != NULL ? blobstore_tmp_size(f->tmp) : 0;
	n->size = f->size;
	n->fd = f->tmp != NULL ? blobstore_tmp_fd(f->tmp) : -1;
	n->verified = fill_verified(f);
	n->digest = f->by_digest || fill_verified(f) ? &f->digest : NULL;
	if (f->kind == FILL_MANIFEST && fill_verified(f)) {
		n->body = f->mbuf;
		n->len = f->mlen;
		n->media_type = f->media_type;
	}
	n->up_cache = f->up_cache;
	n->upstream_ms = f->upstream_ms;
	n->err = f->err;
	n->why = f->err_why;
	if (f->state == FILL_FAILED || f->persist_failed)
		n->cause = f->why;
}

/*
 * Tells every subscriber where the fill is: bytes while a blob streams,
 * verified once (a blob's digest matched, or a manifest is done), stored
 * (the last call) once it is indexed.  Subscribers may leave (and finish)
 * meanwhile, and start other fills.
 */
static void
fill_tell(struct fill *f)
{
	struct fill_sub *sub, *next;
	struct fill_note n;

	f->hold++;
	for (sub = TAILQ_FIRST(&f->subs); sub != NULL; sub = next) {
		next = TAILQ_NEXT(sub, entry);
		fill_note(f, &n);
		if (fill_verified(f) && !sub->told_verified) {
			sub->told_verified = 1;
			if (sub->cbs->verified != NULL)
				sub->cbs->verified(sub->arg, &n);
		} else if (f->state == FILL_STREAMING && f->kind == FILL_BLOB &&
		    sub->cbs->bytes != NULL)
			sub->cbs->bytes(sub->arg, &n);
	}
	while (f->state == FILL_DONE && (sub = TAILQ_FIRST(&f->subs)) != NULL) {
		TAILQ_REMOVE(&f->subs, sub, entry);
		fill_note(f, &n);
		if (sub->cbs->stored != NULL)
			sub->cbs->stored(sub->arg, &n);
		free(sub);
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
	fill_tell(f);
}

/* Coalesces wake-ups: subscribers are told once per loop iteration. */
static void
fill_wake(struct fill *f)
{
	if (!event_pending(f->wake_ev, EV_TIMEOUT | EV_READ | EV_WRITE, NULL))
		event_active(f->wake_ev, 0, 0);
}

static void
fill_fail(struct fill *f, enum oci_err err, const char *why)
{
	struct fill_sub *sub;
	struct fill_note n;

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
	f->err = err;
	f->err_why = why;
	if (why == NULL && f->status > 0)
		snprintf(f->why, sizeof f->why, "%s (upstream answered %ld)",
		    oci_err_code(err), f->status);
	else
		xstrlcpy(f->why, why != NULL ? why : oci_err_code(err),
		    sizeof f->why);
	/* the last call for each; they may start other fills */
	f->hold++;
	while ((sub = TAILQ_FIRST(&f->subs)) != NULL) {
		TAILQ_REMOVE(&f->subs, sub, entry);
		fill_note(f, &n);
		if (sub->cbs->failed != NULL)
			sub->cbs->failed(sub->arg, &n);
		free(sub);
	}
	f->hold--;
	fill_maybe_free(f);
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
	if (f->kind == FILL_BLOB && f->size > (int64_t)have) {
		evict_check(f->srv, (uint64_t)f->size - have);
		blobstore_tmp_reserve(f->tmp, (uint64_t)f->size);
	}
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

/*
 * On a worker thread: the temp file, the file system, and once the file is
 * durable in place, its index record (an LMDB commit's fdatasync can wait
 * behind other blobs' writeback; the loop must not).
 */
static void
fill_persist_work(void *arg)
{
	struct fill *f = arg;

	f->persist_rc = blobstore_tmp_persist(f->tmp);
	if (f->persist_rc == 0)
		f->persist_rc = db_blob_put(f->srv->db, &f->digest, &f->meta);
}

/* Back on the loop: stored and indexed; from now on the store serves it. */
static void
fill_persist_done(void *arg)
{
	struct fill *f = arg;

	f->hold--;
	if (f->persist_rc == -1) {
		/* Verified bytes went out; a later request fetches it again. */
		f->persist_failed = 1;
		xstrlcpy(f->why, "cannot store the blob", sizeof f->why);
	}
	fill_set_state(f, FILL_DONE);
	fill_unlist(f);
	if (!f->persist_failed && !f->shared)
		shared_upload_blob(f->srv, &f->digest);
	fill_wake(f); /* stored: the subscribers' last call */
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
	 * Verified: streams may send their last byte now.  The fsync and
	 * rename run on a worker; until they are done the fill stays listed,
	 * so new requests join it and read the same (verified) file.
	 */
	fill_set_state(f, FILL_VERIFIED);
	fill_wake(f);
	memset(&f->meta, 0, sizeof f->meta);
	f->meta.size = blobstore_tmp_size(f->tmp);
	f->meta.stored_at = f->meta.last_access = clock_wall_s();
	xstrlcpy(
	    f->meta.upstream, upstream_name(f->up), sizeof f->meta.upstream);
	f->hold++;
	pool_submit(f->srv->pool, fill_persist_work, fill_persist_done, f);
}

/* The index entries of a durable manifest (or one already stored). */
static int
fill_index_manifest(struct fill *f, int put)
{
	struct db_blob meta;

	if (put) {
		memset(&meta, 0, sizeof meta);
		meta.size = f->mlen;
		meta.stored_at = meta.last_access = clock_wall_s();
		xstrlcpy(
		    meta.media_type, f->media_type, sizeof meta.media_type);
		xstrlcpy(
		    meta.upstream, upstream_name(f->up), sizeof meta.upstream);
		if (db_blob_put(f->srv->db, &f->digest, &meta) == -1)
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
		t.digest = f->digest;
		t.confirmed_at = clock_wall_s();
		xstrlcpy(t.media_type, f->media_type, sizeof t.media_type);
		if (db_tag_put(f->srv->db, upstream_name(f->up), f->repo,
			f->tag, &t) == -1)
			return -1;
		f->tag_rec = t; /* published from the loop */
		f->tag_put = 1;
		mcache_tag_put(
		    f->srv->mcache, upstream_name(f->up), f->repo, f->tag, &t);
	}
	/* verified above: the next hit is served from memory */
	mcache_blob_unref(mcache_put(
	    f->srv->mcache, &f->digest, f->media_type, f->mbuf, f->mlen));
	return 0;
}

/*
 * On a worker: the manifest's bytes to blobs/ (write, fsync, rename, fsync
 * of the directory), as a blob's persist, then its index entries.
 */
static void
fill_manifest_persist_work(void *arg)
{
	struct fill *f = arg;
	struct blobstore_tmp *tmp;
	struct digest got;

	f->persist_rc = -1;
	if ((tmp = blobstore_tmp_new(f->srv->store)) == NULL)
		return;
	if (blobstore_tmp_write(tmp, f->mbuf, f->mlen) == 0 &&
	    blobstore_tmp_commit(tmp, &f->digest, &got) == 0)
		f->persist_rc = fill_index_manifest(f, 1);
	blobstore_tmp_free(tmp);
}

/* Stored (or not): indexed, the fill leaves the table, subscribers told. */
static void
fill_manifest_finish(struct fill *f, int rc)
{
	if (rc == -1)
		log_warn("cannot store manifest %s:%s; serving it uncached",
		    f->repo, f->tag);
	else if (!f->shared) {
		shared_upload_mem(
		    f->srv, &f->digest, f->media_type, f->mbuf, f->mlen);
		if (f->tag_put)
			shared_tag_publish(f->srv, upstream_name(f->up),
			    f->repo, f->tag, &f->tag_rec);
	}
	fill_set_state(f, FILL_DONE);
	fill_unlist(f);
	fill_wake(f);
}

/* Back on the loop: stored and indexed (or not). */
static void
fill_manifest_persist_done(void *arg)
{
	struct fill *f = arg;

	f->hold--;
	fill_manifest_finish(f, f->persist_rc);
	fill_maybe_free(f);
}

static void
fill_commit_manifest(struct fill *f)
{
	struct db_blob meta;
	struct digest got;
	char mt[OCI_MEDIA_TYPE_MAX];
	int rc;

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
	/*
	 * Verified: waiters get the bytes from memory now, without waiting
	 * for the disk.  The file is written and fsynced on a worker and
	 * indexed when it is durable; until then the fill stays listed, and
	 * a request by tag or by this digest joins it.
	 */
	fill_set_state(f, FILL_VERIFIED);
	fill_wake(f);
	if ((rc = db_blob_get(f->srv->db, &got, &meta)) == 0 &&
	    blobstore_has(f->srv->store, &got)) {
		fill_manifest_finish(f, fill_index_manifest(f, 0));
		return;
	}
	if (rc == -1) {
		fill_manifest_finish(f, -1);
		return;
	}
	f->hold++;
	pool_submit(f->srv->pool, fill_manifest_persist_work,
	    fill_manifest_persist_done, f);
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

	(void)why;
	f->sxfer = NULL;
	if (fill_flush(f) == -1 ||
	    (f->tmp != NULL && blobstore_tmp_nospace(f->tmp))) {
		fill_write_failed(f);
		return;
	}
	if (res == S3_OK) {
		/* a failed refetch may fail the fill: keep f to read it */
		f->hold++;
		if (f->kind == FILL_BLOB)
			fill_commit_blob(f);
		else
			fill_commit_manifest(f);
		if (f->shared &&
		    (f->state == FILL_VERIFIED || f->state == FILL_DONE))
			shared_count(f->srv, SHARED_HIT);
		f->hold--;
		fill_maybe_free(f);
		return;
	}
	if (res == S3_ENOTFOUND)
		shared_count(f->srv, SHARED_MISS);
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

/* Subscribers that passed bytes of the bad object on give up (a cut). */
static void
fill_shared_cut(struct fill *f)
{
	struct fill_sub *sub, *next;
	struct fill_note n;

	f->hold++;
	for (sub = TAILQ_FIRST(&f->subs); sub != NULL; sub = next) {
		next = TAILQ_NEXT(sub, entry);
		fill_note(f, &n);
		if (sub->cbs->restarted != NULL)
			sub->cbs->restarted(sub->arg, &n);
	}
	f->hold--;
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

	shared_count(f->srv, SHARED_CORRUPT);
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
	fill_shared_cut(f);
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

static struct fill *
fill_find(struct server *srv, const struct fill_key *k)
{
	struct fill *f;

	TAILQ_FOREACH(f, &srv->fills, entry) {
		if (f->kind != k->kind)
			continue;
		if (k->by_digest) {
			/*
			 * content-addressed: any repository, any upstream;
			 * and a tag's manifest once verified (being stored)
			 */
			if ((f->by_digest || fill_verified(f)) &&
			    digest_equal(&f->digest, k->digest))
				return f;
		} else if (!f->by_digest && f->up == k->up &&
		    strcmp(f->repo, k->repo) == 0 &&
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
	if (f->by_digest) /* in flight: eviction and verify leave it alone */
		f->reading = readers_add(srv, &f->digest);
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

int
fill_busy(struct server *srv, const struct fill_key *k)
{
	return fill_find(srv, k) != NULL;
}

struct fill_sub *
fill_subscribe(struct server *srv, const struct fill_key *k,
    const struct fill_cbs *cbs, void *arg, enum fill_join *join)
{
	struct fill_sub *sub;
	struct fill *f;

	*join = FILL_JOINED;
	if ((f = fill_find(srv, k)) == NULL) {
		if ((f = fill_new(srv, k)) == NULL) {
			if (errno == ENOSPC || errno == EDQUOT)
				evict_nospace(srv, 0);
			return NULL;
		}
		*join = FILL_STARTED;
	}
	if (fill_verified(f))
		*join = FILL_JOINED_VERIFIED;
	sub = xcalloc(1, sizeof *sub);
	sub->f = f;
	sub->cbs = cbs;
	sub->arg = arg;
	TAILQ_INSERT_TAIL(&f->subs, sub, entry);
	if (*join != FILL_STARTED)
		fill_wake(f); /* tell it where the fill is */
	return sub;
}

void
fill_unsubscribe(struct fill_sub *sub)
{
	struct fill *f;

	if (sub == NULL)
		return;
	f = sub->f;
	TAILQ_REMOVE(&f->subs, sub, entry);
	free(sub);
	fill_maybe_free(f);
}

/* Pre-warm: the result, not the bytes. */
static void
fill_fetch_stored_cb(void *arg, const struct fill_note *n)
{
	struct fill_sub *sub = arg;

	sub->fetch_cb(
	    sub->fetch_arg, n->cause == NULL ? n->digest : NULL, n->cause);
}

static void
fill_fetch_failed_cb(void *arg, const struct fill_note *n)
{
	struct fill_sub *sub = arg;

	sub->fetch_cb(sub->fetch_arg, NULL, n->cause);
}

struct fill_sub *
fill_fetch(struct server *srv, struct upstream *up, const char *repo,
    enum fill_kind kind, const char *tag, const struct digest *d,
    fill_fetch_cb cb, void *arg)
{
	static const struct fill_cbs cbs = {
	    .stored = fill_fetch_stored_cb,
	    .failed = fill_fetch_failed_cb,
	};
	struct fill_key k;
	struct fill_sub *sub;
	enum fill_join join;

	memset(&k, 0, sizeof k);
	k.kind = kind;
	k.up = up;
	k.repo = repo;
	k.tag = tag != NULL ? tag : "";
	k.by_digest = tag == NULL;
	k.digest = d;
	if ((sub = fill_subscribe(srv, &k, &cbs, NULL, &join)) == NULL)
		return NULL;
	sub->arg = sub;
	sub->fetch_cb = cb;
	sub->fetch_arg = arg;
	return sub;
}

void
fill_fetch_cancel(struct fill_sub *sub)
{
	fill_unsubscribe(sub);
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
