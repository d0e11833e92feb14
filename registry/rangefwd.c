/*
 * registry/rangefwd.c: a client's ranged GET for a blob this node neither
 * has nor is fetching, when its upstream is another ccprewarm (a parent
 * tier).  The Range goes up as the client sent it and the parent's 206 is
 * relayed as it arrives (through an unlinked temp file, so a slow client
 * never holds the transfer), while this node's own full fill of the blob
 * runs beside it: single flight, verified, stored; it is what every later
 * request joins.  The parent serves a child's range from its own single
 * fill (the origin still sees the blob once).  The relayed reply's last
 * byte waits until this node's fill has verified the blob and the relayed
 * bytes compare equal to that range of it (on a worker): like every reply
 * here, it completes only for bytes verified here, and is cut otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

#define RANGEFWD_CHUNK_MAX (16 * 1024 * 1024)
#define RANGEFWD_SPEC_MAX 64

enum rangefwd_state {
	RANGEFWD_HEADERS, /* waiting for the parent's answer */
	RANGEFWD_BODY,	  /* relaying the 206 */
	RANGEFWD_DONE,	  /* the parent's body is complete */
	RANGEFWD_FAILED,  /* cut: the client's reply is cut too */
	RANGEFWD_FALLBACK /* no 206: the request joins the fill instead */
};

/* The relayed bytes against the verified blob, on a worker. */
struct rangefwd_cmp {
	struct rangefwd *rf; /* NULL once the relay is gone */
	int relay_fd, blob_fd;
	uint64_t off, len;
	int equal;
};

struct rangefwd {
	struct req *r;
	enum rangefwd_state state;
	struct blobstore_tmp *tmp;
	struct event *wake_ev;
	struct fill_sub *sub; /* this node's full fill, until it ends */
	int fill_ok;	      /* it verified and stored the blob */
	int fill_failed;
	struct rangefwd_cmp *cmp; /* comparing */
	int verified;		  /* the relayed bytes are the blob's */
	long status;		  /* the parent's */
	uint64_t off;		  /* the 206's first byte */
	uint64_t want;		  /* bytes the 206 declared */
	uint64_t sent;		  /* bytes of tmp handed to the client */
};

/* The single range of a "bytes=" header ("A-B", "A-", "-S"), or -1. */
static int
rangefwd_spec(const char *h, char *out, size_t len)
{
	const char *p;
	size_t n;

	if (h == NULL || strncmp(h, "bytes=", 6) != 0)
		return -1;
	p = h + 6;
	n = strlen(p);
	if (n == 0 || n >= len || strspn(p, "0123456789-") != n ||
	    strchr(p, '-') == NULL || strchr(p, '-') != strrchr(p, '-') ||
	    strcmp(p, "-") == 0)
		return -1;
	memcpy(out, p, n + 1);
	return 0;
}

static void
rangefwd_free(struct rangefwd *rf)
{
	fill_fetch_cancel(rf->sub);
	if (rf->cmp != NULL)
		rf->cmp->rf = NULL; /* its completion frees it */
	if (rf->wake_ev != NULL)
		event_free(rf->wake_ev);
	blobstore_tmp_free(rf->tmp);
	free(rf);
}

/* req_finish: the transfer goes first, then what relayed it. */
static void
rangefwd_finish_cb(struct req *r)
{
	struct rangefwd *rf = r->rfwd;

	r->finish_cb = NULL;
	r->rfwd = NULL;
	upstream_xfer_cancel(r->xfer);
	r->xfer = NULL;
	if (rf != NULL)
		rangefwd_free(rf);
}

static void
rangefwd_wake(struct rangefwd *rf)
{
	if (!event_pending(rf->wake_ev, EV_TIMEOUT | EV_READ | EV_WRITE, NULL))
		event_active(rf->wake_ev, 0, 0);
}

static void rangefwd_pump(struct req *);

/* From the loop (never inside a curl callback): the next step. */
static void
rangefwd_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rangefwd *rf = arg;
	struct req *r = rf->r;

	(void)fd;
	(void)what;
	if (rf->state == RANGEFWD_FALLBACK) {
		/* the request is the fill's now; r->xfer is over */
		r->finish_cb = NULL;
		r->rfwd = NULL;
		rangefwd_free(rf);
		stream_attach(r, FILL_BLOB);
		return;
	}
	rangefwd_pump(r);
}

/* On a worker: relay[0, len) == blob[off, off + len)? */
static void
rangefwd_cmp_work(void *arg)
{
	struct rangefwd_cmp *c = arg;
	enum { CHUNK = 256 * 1024 };
	unsigned char *a = xmalloc(CHUNK), *b = xmalloc(CHUNK);
	uint64_t done = 0;
	ssize_t na, nb;
	size_t want;

	c->equal = 1;
	while (done < c->len && c->equal) {
		want = c->len - done < CHUNK ? (size_t)(c->len - done) : CHUNK;
		do
			na = pread(c->relay_fd, a, want, (off_t)done);
		while (na == -1 && errno == EINTR);
		do
			nb = pread(c->blob_fd, b, want, (off_t)(c->off + done));
		while (nb == -1 && errno == EINTR);
		if (na != (ssize_t)want || nb != (ssize_t)want ||
		    memcmp(a, b, want) != 0)
			c->equal = 0;
		done += want;
	}
	free(a);
	free(b);
}

static void
rangefwd_cmp_done(void *arg)
{
	struct rangefwd_cmp *c = arg;
	struct rangefwd *rf = c->rf;
	char d[DIGEST_STRLEN];

	close(c->relay_fd);
	close(c->blob_fd);
	if (rf != NULL) {
		rf->cmp = NULL;
		if (c->equal)
			rf->verified = 1;
		else {
			digest_format(&rf->r->route.digest, d);
			metrics_digest_mismatch(rf->r->srv);
			log_warn(
			    "relayed range of %s does not match the verified blob; cutting the reply",
			    d);
			rf->state = RANGEFWD_FAILED;
		}
		rangefwd_wake(rf);
	}
	free(c);
}

/* Everything relayed and the blob stored here: compare them. */
static void
rangefwd_cmp_start(struct rangefwd *rf)
{
	struct req *r = rf->r;
	struct rangefwd_cmp *c;
	off_t size;

	c = xcalloc(1, sizeof *c);
	c->off = rf->off;
	c->len = rf->want;
	c->blob_fd =
	    blobstore_open_blob(r->srv->store, &r->route.digest, &size);
	c->relay_fd = dup(blobstore_tmp_fd(rf->tmp));
	if (c->blob_fd == -1 || c->relay_fd == -1 ||
	    (uint64_t)size < c->off + c->len) {
		if (c->blob_fd != -1)
			close(c->blob_fd);
		if (c->relay_fd != -1)
			close(c->relay_fd);
		free(c);
		rf->state = RANGEFWD_FAILED;
		rangefwd_wake(rf);
		return;
	}
	c->rf = rf;
	rf->cmp = c;
	pool_submit(r->srv->pool, rangefwd_cmp_work, rangefwd_cmp_done, c);
}

static void
rangefwd_pump(struct req *r)
{
	struct rangefwd *rf = r->rfwd;
	uint64_t written, limit, n;

	if (rf == NULL || r->chunk_pending)
		return;
	/* before the parent's answer, a failed fill waits for it (a 404
	 * there is the client's answer, through the fill) */
	if (rf->state != RANGEFWD_BODY && rf->state != RANGEFWD_DONE &&
	    rf->state != RANGEFWD_FAILED)
		return;
	if (rf->state == RANGEFWD_FAILED || rf->fill_failed) {
		req_abort(r,
		    rf->fill_failed ? "the blob did not verify here"
				    : "upstream range transfer failed");
		return;
	}
	written = blobstore_tmp_size(rf->tmp);
	/* the last byte waits for the comparison with the verified blob */
	limit = rf->verified || written < rf->want ? written : rf->want - 1;
	if (rf->state == RANGEFWD_DONE && rf->fill_ok && !rf->verified &&
	    rf->cmp == NULL) {
		rangefwd_cmp_start(rf);
		if (rf->state == RANGEFWD_FAILED) {
			req_abort(r, "cannot compare the relayed range");
			return;
		}
	}
	if (rf->sent < limit) {
		n = limit - rf->sent;
		if (n > RANGEFWD_CHUNK_MAX)
			n = RANGEFWD_CHUNK_MAX;
		rf->sent += n;
		req_stream_file(r, blobstore_tmp_fd(rf->tmp), rf->sent - n, n,
		    rangefwd_pump);
		return;
	}
	if (rf->state == RANGEFWD_DONE && rf->verified && rf->sent == rf->want)
		req_stream_end(r);
}

/* "bytes A-B/T" -> A, B, T; 0 or -1. */
static int
rangefwd_content_range(
    const char *cr, uint64_t *a, uint64_t *b, uint64_t *total)
{
	unsigned long long x, y, t;
	int n = 0;

	if (cr == NULL ||
	    sscanf(cr, "bytes %llu-%llu/%llu%n", &x, &y, &t, &n) != 3 ||
	    cr[n] != '\0' || y < x || y >= t)
		return -1;
	*a = x;
	*b = y;
	*total = t;
	return 0;
}

static int
rangefwd_headers_cb(void *arg, const struct upstream_response *resp)
{
	struct req *r = arg;
	struct rangefwd *rf = r->rfwd;
	uint64_t a, b, total;

	r->upstream_ms = resp->duration_ms;
	rf->status = resp->status;
	if (resp->status != 206 ||
	    rangefwd_content_range(resp->content_range, &a, &b, &total) == -1 ||
	    resp->content_length != (int64_t)(b - a + 1)) {
		/* not a range we can relay: the fill serves it instead */
		rf->state = RANGEFWD_FALLBACK;
		return -1;
	}
	if (resp->x_cache != NULL)
		xstrlcpy(r->up_cache, resp->x_cache, sizeof r->up_cache);
	r->cache = REQ_CACHE_MISS;
	r->ranged = 1;
	rf->off = a;
	rf->want = b - a + 1;
	rf->state = RANGEFWD_BODY;
	req_stream_start(r, 206, (int64_t)rf->want, "application/octet-stream",
	    &r->route.digest, a, b + 1, total);
	return 0;
}

static int
rangefwd_body_cb(void *arg, const void *buf, size_t len)
{
	struct req *r = arg;
	struct rangefwd *rf = r->rfwd;

	metrics_upstream_bytes(r->srv, len);
	if (blobstore_tmp_size(rf->tmp) + len > rf->want ||
	    blobstore_tmp_write(rf->tmp, buf, len) == -1)
		return -1;
	rangefwd_wake(rf);
	return 0;
}

static void
rangefwd_done_cb(void *arg, enum upstream_result res, const char *why)
{
	struct req *r = arg;
	struct rangefwd *rf = r->rfwd;

	(void)why;
	r->xfer = NULL;
	metrics_upstream_result(r->srv, res, rf->status);
	if (rf->state == RANGEFWD_BODY)
		rf->state = res == UPSTREAM_OK &&
			blobstore_tmp_size(rf->tmp) == rf->want
		    ? RANGEFWD_DONE
		    : RANGEFWD_FAILED;
	else if (rf->state == RANGEFWD_HEADERS)
		rf->state = RANGEFWD_FALLBACK; /* no answer: the fill's turn */
	rangefwd_wake(rf);
}

/* This node's full fill ended: the relay may finish (or is cut). */
static void
rangefwd_fill_cb(void *arg, const struct digest *d, const char *why)
{
	struct rangefwd *rf = arg;

	(void)why;
	rf->sub = NULL; /* fill.c frees it */
	if (d != NULL)
		rf->fill_ok = 1;
	else
		rf->fill_failed = 1;
	rangefwd_wake(rf);
}

int
rangefwd_start(struct req *r)
{
	static const struct upstream_cbs cbs = {
	    rangefwd_headers_cb, rangefwd_body_cb, rangefwd_done_cb};
	char spec[RANGEFWD_SPEC_MAX], path[ROUTE_NAME_MAX + 128];
	char hex[DIGEST_STRLEN];
	struct upstream_req ureq;
	struct rangefwd *rf;

	if (r->method != REQ_GET || !upstream_is_cache(r->up) ||
	    r->finish_cb != NULL || req_header(r, "If-Range") != NULL ||
	    rangefwd_spec(req_header(r, "Range"), spec, sizeof spec) == -1)
		return -1;
	rf = xcalloc(1, sizeof *rf);
	rf->r = r;
	if ((rf->tmp = blobstore_tmp_new(r->srv->store)) == NULL) {
		free(rf);
		return -1;
	}
	if ((rf->wake_ev = event_new(
		 r->srv->base, -1, 0, rangefwd_wake_cb, rf)) == NULL)
		fatal("out of memory creating a range relay event");
	/* the whole blob, verified and stored, beside the relayed range */
	rf->sub = fill_fetch(r->srv, r->up, r->route.name, FILL_BLOB, NULL,
	    &r->route.digest, rangefwd_fill_cb, rf);
	if (rf->sub == NULL) {
		/* no fill to verify against: the usual way */
		rangefwd_free(rf);
		return -1;
	}
	digest_format(&r->route.digest, hex);
	snprintf(path, sizeof path, "/v2/%s/blobs/%s", r->route.name, hex);
	memset(&ureq, 0, sizeof ureq);
	ureq.method = UPSTREAM_GET;
	ureq.path = path;
	ureq.repo = r->route.name;
	ureq.range_start = -1;
	ureq.range = spec;
	r->rfwd = rf;
	r->finish_cb = rangefwd_finish_cb;
	r->state = REQ_WAITING;
	if ((r->xfer = upstream_xfer_start(r->up, &ureq, &cbs, r)) == NULL) {
		rf->state = RANGEFWD_FALLBACK;
		rangefwd_wake(rf);
	}
	return 0;
}
