/*
 * registry/stream.c: a client request as a subscriber of the fill for its
 * blob or manifest (fill.c).  A blob is streamed from the fill's temp file
 * as it grows, honouring Range and HEAD; no stream receives its last byte
 * before the digest has verified, so corruption is always a cut connection,
 * never a clean reply.  A manifest is replied whole once it is stored.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "internal.h"

#define STREAM_CHUNK_MAX (16 * 1024 * 1024)

struct stream {
	struct req *r;
	struct fill_sub *sub; /* NULL once the fill made its last call */
	enum fill_kind kind;
	/* what the fill told last (struct fill_note, kept) */
	int told;	/* a note arrived: the upstream's headers are in */
	int fd;		/* our dup of the temp file, -1 until told */
	uint64_t avail; /* bytes [0, avail) are in the file */
	int64_t size;	/* -1 until known */
	int verified;
	int64_t upstream_ms; /* -1 until subscribed */
	char up_cache[32];
	/* the reply */
	uint64_t off; /* next byte to send */
	uint64_t end; /* one past the last (UINT64_MAX: length unknown) */
	struct digest digest;	     /* a blob's */
	struct readers *reading_tab; /* the blob's file is being read */
};

enum stream_step
stream_window(uint64_t off, uint64_t end, uint64_t avail, int verified,
    uint64_t max, uint64_t *n)
{
	uint64_t limit;

	*n = 0;
	/*
	 * Length unknown when the reply started (chunked upstream): it ends
	 * where the verified file ends; until then the missing last chunk
	 * is what holds the reply back.
	 */
	if (end == UINT64_MAX && verified)
		end = avail;
	limit = avail < end ? avail : end;
	if (!verified && limit == end && limit > 0)
		limit--;
	if (off < limit) {
		*n = limit - off < max ? limit - off : max;
		return STREAM_SEND;
	}
	if (verified && off >= end)
		return STREAM_END;
	return STREAM_WAIT;
}

static void stream_pump(struct stream *);

static void
stream_sent_cb(struct req *r)
{
	if (r->stream != NULL)
		stream_pump(r->stream);
}

/* Starts the reply once the size (or that it is unknown) is known. */
static int
stream_start(struct stream *s)
{
	struct req *r = s->r;
	uint64_t start, end, size;
	int rr;

	xstrlcpy(r->up_cache, s->up_cache, sizeof r->up_cache);
	if (s->size < 0) {
		if (!s->verified && r->method == REQ_HEAD)
			return -1;
		s->off = 0;
		s->end = UINT64_MAX;
		req_stream_start(r, 200, -1, "application/octet-stream",
		    &s->digest, 0, UINT64_MAX, 0);
		return 0;
	}
	size = (uint64_t)s->size;
	rr = req_range(r, size, &start, &end);
	if (rr < 0) {
		stream_detach(r); /* frees s */
		req_range_invalid(r, size);
		return -1;
	}
	s->off = start;
	s->end = end;
	if (r->method == REQ_HEAD) {
		stream_detach(r);
		req_reply_mem(r, 200, "application/octet-stream",
		    &r->route.digest, NULL, (size_t)size);
		return -1;
	}
	req_stream_start(r, rr ? 206 : 200, (int64_t)(end - start),
	    "application/octet-stream", &s->digest, start, end, size);
	return 0;
}

/* Streams what has landed; holds back the last byte until verified. */
static void
stream_pump(struct stream *s)
{
	struct req *r = s->r;
	uint64_t start, n;

	if (r->chunk_pending || !s->told)
		return;
	if (r->state == REQ_WAITING && stream_start(s) == -1)
		return;
	switch (stream_window(
	    s->off, s->end, s->avail, s->verified, STREAM_CHUNK_MAX, &n)) {
	case STREAM_SEND:
		start = s->off;
		s->off += n;
		req_stream_file(r, s->fd, start, n, stream_sent_cb);
		break;
	case STREAM_END:
		req_stream_end(r);
		break;
	case STREAM_WAIT:
		break;
	}
}

/* Keeps what a note says; 0, or -1 if r was finished. */
static int
stream_take(struct stream *s, const struct fill_note *n)
{
	s->told = 1;
	s->avail = n->avail;
	s->size = n->size;
	s->verified = n->verified;
	s->upstream_ms = n->upstream_ms;
	xstrlcpy(s->up_cache, n->up_cache, sizeof s->up_cache);
	if (s->fd == -1 && n->fd != -1 && (s->fd = dup(n->fd)) == -1) {
		req_abort(s->r, "cannot dup fill fd");
		return -1;
	}
	return 0;
}

static void
stream_bytes_cb(void *arg, const struct fill_note *n)
{
	struct stream *s = arg;

	if (stream_take(s, n) == 0)
		stream_pump(s);
}

static void
stream_verified_cb(void *arg, const struct fill_note *n)
{
	struct stream *s = arg;
	struct req *r = s->r;

	if (stream_take(s, n) == -1)
		return;
	if (s->kind == FILL_BLOB) {
		stream_pump(s);
		return;
	}
	/* a manifest: the fill keeps n's body alive while we run */
	xstrlcpy(r->up_cache, s->up_cache, sizeof r->up_cache);
	stream_detach(r);
	req_reply_mem(r, 200, n->media_type, n->digest, n->body, n->len);
}

/* The bytes told so far were a bad shared-store object: cut, or wait. */
static void
stream_restarted_cb(void *arg, const struct fill_note *n)
{
	struct stream *s = arg;

	(void)n;
	if (s->r->state == REQ_STREAMING) {
		req_abort(s->r, "shared store object did not match its digest");
		return;
	}
	if (s->fd != -1)
		close(s->fd); /* the next note may name another file */
	s->fd = -1;
	s->told = 0;
}

/* Stored: the stream already has everything it needs. */
static void
stream_stored_cb(void *arg, const struct fill_note *n)
{
	struct stream *s = arg;

	(void)n;
	s->sub = NULL;
}

/* The error a stream gets: a cut once streaming, else a reply. */
static void
stream_failed_cb(void *arg, const struct fill_note *n)
{
	struct stream *s = arg;
	struct req *r = s->r;

	s->sub = NULL;
	s->upstream_ms = n->upstream_ms;
	if (r->state == REQ_STREAMING) {
		req_abort(r, "upstream fetch failed");
		return;
	}
	if (r->fill_failed != NULL && r->fill_failed(r) == 0)
		return;
	req_error(r, n->err, n->why);
}

static void
stream_key(struct req *r, enum fill_kind kind, struct fill_key *k)
{
	memset(k, 0, sizeof *k);
	k->kind = kind;
	k->up = r->up;
	k->repo = r->route.name;
	k->tag = r->route.tag;
	k->by_digest = r->route.by_digest;
	k->digest = &r->route.digest;
	k->accept = req_accept(r);
}

static void
stream_finish_cb(struct req *r)
{
	stream_detach(r);
}

int
stream_attach(struct req *r, enum fill_kind kind)
{
	static const struct fill_cbs cbs = {
	    .bytes = stream_bytes_cb,
	    .verified = stream_verified_cb,
	    .restarted = stream_restarted_cb,
	    .stored = stream_stored_cb,
	    .failed = stream_failed_cb,
	};
	struct fill_key k;
	struct stream *s;
	enum fill_join join;
	int err;

	stream_key(r, kind, &k);
	s = xcalloc(1, sizeof *s);
	s->r = r;
	s->kind = kind;
	s->fd = -1;
	s->size = -1;
	s->upstream_ms = -1;
	s->digest = r->route.digest;
	if ((s->sub = fill_subscribe(r->srv, &k, &cbs, s, &join)) == NULL) {
		err = errno;
		free(s);
		if (err == ENOSPC || err == EDQUOT)
			req_error(r, OCI_ERR_UNAVAILABLE,
			    "the mirror's disk is full; retry later");
		else
			req_error(
			    r, OCI_ERR_INTERNAL, "cannot create temp file");
		return -1;
	}
	s->upstream_ms = 0;
	r->stream = s;
	r->finish_cb = stream_finish_cb;
	if (kind == FILL_BLOB && r->route.by_digest)
		/* a stream reads the blob's file until it is done */
		s->reading_tab = readers_add(r->srv, &s->digest);
	r->state = REQ_WAITING;
	r->cache = join == FILL_STARTED ? REQ_CACHE_MISS
	    : join == FILL_JOINED	? REQ_CACHE_COALESCED
					: REQ_CACHE_HIT;
	if (join == FILL_JOINED)
		metrics_coalesced(r->srv);
	return join == FILL_JOINED;
}

void
stream_detach(struct req *r)
{
	struct stream *s = r->stream;

	if (s == NULL)
		return;
	r->stream = NULL;
	if (r->finish_cb == stream_finish_cb)
		r->finish_cb = NULL;
	fill_unsubscribe(s->sub);
	readers_del(s->reading_tab, &s->digest);
	if (s->upstream_ms >= 0)
		r->upstream_ms = s->upstream_ms;
	if (s->fd != -1)
		close(s->fd);
	free(s);
}

int
stream_in_flight(struct req *r, enum fill_kind kind)
{
	struct fill_key k;

	stream_key(r, kind, &k);
	return fill_busy(r->srv, &k);
}
