/*
 * registry/http.c: evhttp glue.  Owns struct req: it is created here for
 * every request, routed through the handler table, and freed by exactly one
 * req_finish(), which also writes the access-log line.  Reply helpers set
 * the common headers so handlers never do.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "../common/common.h"
#include "internal.h"

enum http_methods {
	HTTP_M_GET = 1 << 0,
	HTTP_M_HEAD = 1 << 1,
	HTTP_M_POST = 1 << 2,
	HTTP_M_DELETE = 1 << 3,
};

static void http_base_handle(struct req *);
static int http_base_hit(struct req *);

/* Routing is data: which methods each route takes, and who handles it. */
static const struct http_handler {
	enum route_kind kind;
	int methods; /* 0: refused with UNSUPPORTED (push, delete) */
	int needs_upstream;
	void (*fn)(struct req *);
	/* on a serving loop (not loop 0): 0 if answered there, from the
	 * store; -1 (nothing sent) relays the request to loop 0 */
	int (*hit)(struct req *);
} http_handlers[] = {
    {ROUTE_BASE, HTTP_M_GET | HTTP_M_HEAD, 0, http_base_handle, http_base_hit},
    {ROUTE_MANIFEST, HTTP_M_GET | HTTP_M_HEAD, 1, manifest_handle,
	manifest_hit},
    {ROUTE_BLOB, HTTP_M_GET | HTTP_M_HEAD, 1, blob_handle, blob_hit},
    {ROUTE_TAGS, HTTP_M_GET, 1, tags_handle, NULL},
    {ROUTE_UPLOAD, 0, 0, NULL, NULL},
    {ROUTE_CATALOG, 0, 0, NULL, NULL},
    {ROUTE_METRICS, HTTP_M_GET, 0, metrics_handle, NULL},
    {ROUTE_ADMIN, HTTP_M_GET | HTTP_M_POST | HTTP_M_DELETE, 0, admin_handle,
	NULL},
};

static const struct http_method {
	enum evhttp_cmd_type cmd;
	enum req_method method;
	int mask;
} http_methods_table[] = {
    {EVHTTP_REQ_GET, REQ_GET, HTTP_M_GET},
    {EVHTTP_REQ_HEAD, REQ_HEAD, HTTP_M_HEAD},
    {EVHTTP_REQ_POST, REQ_POST, HTTP_M_POST},
    {EVHTTP_REQ_DELETE, REQ_DELETE, HTTP_M_DELETE},
};

static const char *const http_cache_names[] = {
    [REQ_CACHE_NONE] = NULL,
    [REQ_CACHE_HIT] = "HIT",
    [REQ_CACHE_MISS] = "MISS",
    [REQ_CACHE_COALESCED] = "COALESCED",
    [REQ_CACHE_REVALIDATED] = "REVALIDATED",
    [REQ_CACHE_STALE] = "STALE",
};

static const char *
http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 206:
		return "Partial Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 416:
		return "Range Not Satisfiable";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

const char *
req_header(struct req *r, const char *name)
{
	if (r->ev == NULL)
		return NULL;
	return evhttp_find_header(
	    evhttp_request_get_input_headers(r->ev), name);
}

/*
 * All Accept header lines joined (Go clients send one line per type),
 * without Docker schema1 types unless nothing else is acceptable: asking
 * for schema1 makes distribution convert and sign a manifest on the fly,
 * whose bytes then match no digest.  NULL if the client sent none or
 * only wildcards (curl): then every manifest type is asked for.
 */
const char *
req_accept(struct req *r)
{
	static const char schema1[] =
	    "application/vnd.docker.distribution.manifest.v1";
	struct evkeyvalq *h;
	struct evkeyval *kv;
	struct evbuffer *b;
	const char *p;
	size_t n;
	int saw_schema1 = 0;

	if (r->accept != NULL || r->ev == NULL)
		return r->accept;
	b = evbuffer_new();
	h = evhttp_request_get_input_headers(r->ev);
	TAILQ_FOREACH(kv, h, next) {
		if (strcasecmp(kv->key, "Accept") != 0)
			continue;
		for (p = kv->value; *p != '\0'; p += n) {
			p += strspn(p, " \t,");
			n = strcspn(p, ",");
			if (n == 0)
				break;
			if (n >= sizeof schema1 - 1 &&
			    strncmp(p, schema1, sizeof schema1 - 1) == 0) {
				saw_schema1 = 1;
				continue;
			}
			/* "*" + "/" + "*" (curl's default) says nothing: all */
			if (memchr(p, '*', strcspn(p, ";,")) != NULL)
				continue;
			evbuffer_add_printf(b, "%s%.*s",
			    evbuffer_get_length(b) ? ", " : "", (int)n, p);
		}
	}
	if (evbuffer_get_length(b) > 0) {
		evbuffer_add(b, "", 1);
		r->accept = xstrdup((const char *)evbuffer_pullup(b, -1));
	} else if (saw_schema1)
		r->accept = xstrdup(req_header(r, "Accept"));
	evbuffer_free(b);
	return r->accept;
}

const char *
req_body(struct req *r, size_t *len)
{
	struct evbuffer *in;
	size_t n;

	if (r->body == NULL && r->ev != NULL) {
		in = evhttp_request_get_input_buffer(r->ev);
		n = evbuffer_get_length(in);
		r->body = xmalloc(n + 1);
		evbuffer_copyout(in, r->body, n);
		r->body[n] = '\0';
		r->body_len = n;
	}
	if (len != NULL)
		*len = r->body_len;
	return r->body;
}

/*
 * Headers go out with writev and a large body with sendfile: two writes.
 * With Nagle on, the second waits for the client's delayed ACK (~40 ms a
 * request).  Cheap to set on every request of a connection.
 */
static void
http_nodelay(struct evhttp_connection *evcon)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	int one = 1;

	if (bev != NULL)
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof one);
}

static void
http_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct req *r = arg;

	(void)evcon;
	/*
	 * The client went away while we still owned the reply.  evhttp has
	 * detached the request from the connection (it is ours to complete,
	 * which frees it); the connection itself is being freed.
	 */
	r->client_gone = 1;
	r->evcon = NULL;
	req_finish(r, 499, "client closed the connection");
}

static void
http_headers(
    struct req *r, const char *ctype, const struct digest *d, int64_t length)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
	char buf[DIGEST_STRLEN + 2];
	char num[32], xc[64];

	evhttp_add_header(h, "Docker-Distribution-API-Version", "registry/2.0");
	if (ctype != NULL && ctype[0] != '\0')
		evhttp_add_header(h, "Content-Type", ctype);
	if (d != NULL) {
		r->served = *d;
		r->have_served = 1;
		digest_format(d, buf + 1);
		evhttp_add_header(h, "Docker-Content-Digest", buf + 1);
		buf[0] = '"';
		strcat(buf, "\"");
		evhttp_add_header(h, "ETag", buf);
	}
	if (length >= 0) {
		snprintf(num, sizeof num, "%" PRId64, length);
		evhttp_add_header(h, "Content-Length", num);
	}
	/* Not served from the store (an error, a pass-through, a local
	 * reply) is a MISS too: every response says where it came from. */
	/* Filled through a cache above (a parent tier): its X-Cache after
	 * ours, "MISS, HIT" (as CDNs chain it). */
	snprintf(xc, sizeof xc, "%s%s%s",
	    http_cache_names[r->cache != REQ_CACHE_NONE ? r->cache
							: REQ_CACHE_MISS],
	    r->up_cache[0] != '\0' ? ", " : "", r->up_cache);
	evhttp_add_header(h, "X-Cache", xc);
}

/*
 * A buffer for file segments.  Marked as draining to a socket so that
 * libevent keeps the segments as sendfile chains; without the flag it
 * materialises them (mmap or read) when they are added, which costs a copy
 * and shows the whole file in our RSS.
 */
#define HTTP_COPY_MAX (64 * 1024)

static struct evbuffer *
http_file_buffer(void)
{
	struct evbuffer *buf = evbuffer_new();

	evbuffer_set_flags(buf, EVBUFFER_FLAG_DRAINS_TO_FD);
	return buf;
}

static void http_retire(struct req *, const char *);

/* evhttp is done with the reply: no more callbacks for r. */
static void
http_unhand(struct req *r)
{
	if (r->handed == NULL)
		return;
	evhttp_request_set_on_complete_cb(r->handed, NULL, NULL);
	if (r->evcon != NULL)
		conn_set_closecb(r->loop->conns, r->evcon, NULL, NULL);
	r->handed = NULL;
	r->handed_done = 1;
}

/* evhttp has written the reply's last byte to the socket. */
static void
http_complete_cb(struct evhttp_request *ev, void *arg)
{
	struct req *r = arg;

	(void)ev;
	if (r->state != REQ_DONE) {
		/* from inside evhttp_send_reply_end: req_finish retires it */
		http_unhand(r);
		return;
	}
	http_retire(r, r->why);
}

/* The connection ended before the reply was all written. */
static void
http_handed_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct req *r = arg;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	size_t unsent =
	    bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;

	r->sent = unsent < r->sent ? r->sent - unsent : 0;
	if (r->state != REQ_DONE) {
		http_unhand(r);
		return;
	}
	http_retire(r, "client closed the connection before the end");
}

/*
 * The reply is evhttp's from here.  With a connection, the request stays
 * listed (the access line's duration and bytes are until the last byte is
 * handed to the kernel, and a drain waits for it) until evhttp completes it.
 */
static void
http_hand_over(struct req *r)
{
	if (r->evcon == NULL)
		return;
	r->handed = r->ev;
	evhttp_request_set_on_complete_cb(r->ev, http_complete_cb, r);
	conn_set_closecb(r->loop->conns, r->evcon, http_handed_close_cb, r);
}

/* Hands the finished reply to evhttp; the request is evhttp's from here. */
static void
http_send(struct req *r, int status, struct evbuffer *body)
{
	r->status = status;
	if (r->shadow) {
		/* its front sends it (and counts the bytes) */
		loop_shadow_reply(
		    r, status, r->method == REQ_HEAD ? NULL : body);
		evhttp_request_free(r->ev);
		r->ev = NULL;
		return;
	}
	if (body != NULL && r->method != REQ_HEAD)
		r->sent += evbuffer_get_length(body);
	http_hand_over(r);
	evhttp_send_reply(r->ev, status, http_reason(status),
	    r->method == REQ_HEAD ? NULL : body);
	r->ev = NULL;
}

void
req_error(struct req *r, enum oci_err err, const char *detail)
{
	int status = oci_err_status(err);
	struct evbuffer *buf;
	char *body;

	if (r->ev == NULL || r->state == REQ_STREAMING) {
		req_finish(r, status, detail);
		return;
	}
	body = oci_err_body(err, detail);
	buf = evbuffer_new();
	evbuffer_add(buf, body, strlen(body));
	http_headers(
	    r, "application/json", NULL, (int64_t)evbuffer_get_length(buf));
	if (err == OCI_ERR_UNAUTHORIZED)
		evhttp_add_header(evhttp_request_get_output_headers(r->ev),
		    "WWW-Authenticate", "Bearer realm=\"ccprewarm\"");
	if (err == OCI_ERR_TOOMANYREQUESTS && r->up != NULL &&
	    upstream_retry_after_s(r->up) > 0) {
		char secs[24];

		snprintf(
		    secs, sizeof secs, "%ld", upstream_retry_after_s(r->up));
		evhttp_add_header(evhttp_request_get_output_headers(r->ev),
		    "Retry-After", secs);
	}
	http_send(r, status, buf);
	evbuffer_free(buf);
	free(body);
	req_finish(r, status, detail);
}

void
req_reply_mem(struct req *r, int status, const char *ctype,
    const struct digest *d, const void *body, size_t len)
{
	struct evbuffer *buf = evbuffer_new();

	if (body != NULL && len > 0)
		evbuffer_add(buf, body, len);
	http_headers(r, ctype, d, (int64_t)len);
	http_send(r, status, buf);
	evbuffer_free(buf);
	req_finish(r, status, NULL);
}

int
req_range(struct req *r, uint64_t size, uint64_t *start, uint64_t *end)
{
	const char *h = req_header(r, "Range");
	const char *ir = req_header(r, "If-Range");
	char etag[DIGEST_STRLEN + 2];
	enum range_result rr;

	*start = 0;
	*end = size;
	/* RFC 9110 14.2: GET is the only method with range handling. */
	if (h == NULL || r->method != REQ_GET)
		return 0;
	/* If-Range (13.1.5): only our strong ETag keeps the Range; a date
	 * or another validator asks for the whole representation. */
	if (ir != NULL && r->routed && r->route.kind == ROUTE_BLOB) {
		etag[0] = '"';
		digest_format(&r->route.digest, etag + 1);
		strcat(etag, "\"");
		if (strcmp(ir, etag) != 0)
			return 0;
	} else if (ir != NULL)
		return 0;
	rr = range_parse(h, size, start, end);
	if (rr == RANGE_PARTIAL)
		r->ranged = 1;
	return rr == RANGE_UNSATISFIABLE ? -1 : rr == RANGE_PARTIAL;
}

static void
http_range_headers(struct req *r, uint64_t start, uint64_t end, uint64_t size)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
	char buf[96];

	evhttp_add_header(h, "Accept-Ranges", "bytes");
	if (r->ranged) {
		snprintf(buf, sizeof buf,
		    "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end - 1,
		    size);
		evhttp_add_header(h, "Content-Range", buf);
	}
}

/* 416 with the spec's error body and the size the client should know. */
void
req_range_invalid(struct req *r, uint64_t size)
{
	char buf[64];

	snprintf(buf, sizeof buf, "bytes */%" PRIu64, size);
	evhttp_add_header(
	    evhttp_request_get_output_headers(r->ev), "Content-Range", buf);
	req_error(r, OCI_ERR_RANGE_INVALID, "requested range not satisfiable");
}

/* Sending a stored file: eviction leaves its digest alone until sent. */
struct http_reader {
	struct readers *tab;
	struct digest d;
};

static void
http_reader_cb(const struct evbuffer_file_segment *seg, int flags, void *arg)
{
	struct http_reader *hr = arg;

	(void)seg;
	(void)flags;
	readers_del(hr->tab, &hr->d);
	free(hr);
}

/*
 * fd is owned by the segment from here on: EVBUF_FS_CLOSE_ON_FREE closes it
 * when the segment's last reference goes (sent, or the connection freed).
 * Without the flag libevent never closes it, and an evicted blob's file
 * stayed open, its space held, until the daemon hit its fd limit.
 */
static int
http_add_stored(struct req *r, struct evbuffer *buf, int fd, uint64_t off,
    uint64_t len, const struct digest *d)
{
	struct evbuffer_file_segment *seg;
	struct http_reader *hr;
	int rc;

	if ((seg = evbuffer_file_segment_new(fd, (ev_off_t)off, (ev_off_t)len,
		 EVBUF_FS_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		return -1;
	}
	if (d != NULL) {
		hr = xcalloc(1, sizeof *hr);
		hr->d = *d;
		hr->tab = readers_add(r->srv, d);
		evbuffer_file_segment_add_cleanup_cb(seg, http_reader_cb, hr);
	}
	rc = evbuffer_add_file_segment(buf, seg, 0, (ev_off_t)len);
	evbuffer_file_segment_free(seg); /* the buffer holds its own ref */
	return rc == 0 ? 0 : -1;
}

void
req_reply_file(struct req *r, int fd, uint64_t size, const char *ctype,
    const struct digest *d)
{
	uint64_t start, end;
	struct evbuffer *buf;
	int rr, status;

	if ((rr = req_range(r, size, &start, &end)) < 0) {
		close(fd);
		req_range_invalid(r, size);
		return;
	}
	status = rr ? 206 : 200;
	http_headers(r, ctype, d, (int64_t)(end - start));
	http_range_headers(r, start, end, size);
	buf = http_file_buffer();
	if (r->method == REQ_HEAD || end == start)
		close(fd);
	else if (end - start <= HTTP_COPY_MAX) {
		/*
		 * Small (manifests, configs): one copy is cheaper than a
		 * sendfile, and headers and body leave in one write.
		 */
		char small[HTTP_COPY_MAX];
		ssize_t n =
		    pread(fd, small, (size_t)(end - start), (off_t)start);

		close(fd);
		if (n != (ssize_t)(end - start)) {
			evbuffer_free(buf);
			req_error(
			    r, OCI_ERR_INTERNAL, "cannot read stored file");
			return;
		}
		evbuffer_add(buf, small, (size_t)n);
	} else if (http_add_stored(r, buf, fd, start, end - start, d) == -1) {
		evbuffer_free(buf);
		req_error(r, OCI_ERR_INTERNAL, "cannot send stored file");
		return;
	}
	http_send(r, status, buf);
	evbuffer_free(buf);
	req_finish(r, status, NULL);
}

void
req_reply_cached(struct req *r, struct mcache_blob *b, const struct digest *d)
{
	uint64_t start, end;
	struct evbuffer *buf;
	const unsigned char *p;
	size_t len;
	int rr, status;

	p = mcache_blob_bytes(b, &len);
	if ((rr = req_range(r, len, &start, &end)) < 0) {
		mcache_blob_unref(b);
		req_range_invalid(r, len);
		return;
	}
	status = rr ? 206 : 200;
	http_headers(r, mcache_blob_type(b), d, (int64_t)(end - start));
	http_range_headers(r, start, end, len);
	buf = evbuffer_new();
	if (r->method != REQ_HEAD && end > start)
		evbuffer_add(buf, p + start, (size_t)(end - start));
	mcache_blob_unref(b);
	http_send(r, status, buf);
	evbuffer_free(buf);
	req_finish(r, status, NULL);
}

void
req_stream_start(struct req *r, int status, int64_t length, const char *ctype,
    const struct digest *d, uint64_t start, uint64_t end, uint64_t total)
{
	http_headers(r, ctype, d, length);
	if (length >= 0)
		http_range_headers(r, start, end, total);
	r->status = status;
	r->state = REQ_STREAMING;
	if (r->shadow) {
		loop_shadow_start(r, status);
		return;
	}
	evhttp_send_reply_start(r->ev, status, http_reason(status));
}

void
req_chunk_sent(struct req *r)
{
	void (*cb)(struct req *);

	if (!r->chunk_pending)
		return;
	r->chunk_pending = 0;
	cb = r->sent_cb;
	r->sent_cb = NULL;
	if (cb != NULL)
		cb(r);
}

static void
http_chunk_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	req_chunk_sent(arg);
}

void
req_stream_file(struct req *r, int fd, uint64_t off, uint64_t len,
    void (*sent_cb)(struct req *))
{
	struct evbuffer *buf;
	int dfd;

	if (r->shadow) {
		if (loop_shadow_file(r, fd, off, len) == -1) {
			req_abort(r, "cannot dup fill fd");
			return;
		}
		r->chunk_pending = 1;
		r->sent_cb = sent_cb;
		r->sent += len;
		return;
	}
	if ((dfd = dup(fd)) == -1) {
		req_abort(r, "cannot dup fill fd");
		return;
	}
	buf = http_file_buffer();
	/* Not evbuffer_add_file: on its failures dfd would stay open. */
	if (http_add_stored(r, buf, dfd, off, len, NULL) == -1) {
		evbuffer_free(buf);
		req_abort(r, "cannot queue file segment");
		return;
	}
	r->chunk_pending = 1;
	r->sent_cb = sent_cb;
	r->sent += len;
	evhttp_send_reply_chunk_with_cb(r->ev, buf, http_chunk_cb, r);
	evbuffer_free(buf);
}

void
req_stream_end(struct req *r)
{
	if (r->shadow) {
		loop_shadow_end(r);
		evhttp_request_free(r->ev);
		r->ev = NULL;
		req_finish(r, r->status, NULL);
		return;
	}
	http_hand_over(r);
	evhttp_send_reply_end(r->ev);
	r->ev = NULL;
	req_finish(r, r->status, NULL);
}

void
req_abort(struct req *r, const char *why)
{
	if (r->ev != NULL && r->shadow) {
		evhttp_request_free(r->ev); /* its front is cut at retire */
		r->ev = NULL;
	} else if (r->ev != NULL) {
		if (r->evcon != NULL) {
			/*
			 * Freeing the connection closes the socket before the
			 * declared Content-Length (or the last chunk): the
			 * client sees a broken transfer, never a clean reply.
			 * It also frees the request.
			 */
			conn_set_closecb(r->loop->conns, r->evcon, NULL, NULL);
			evhttp_connection_free(r->evcon);
			r->evcon = NULL;
		} else
			evhttp_send_reply_end(r->ev); /* detached: frees */
		r->ev = NULL;
	}
	req_finish(r, r->status ? r->status : 502, why);
}

/*
 * An access line is built on the stack (a long path spills to the heap)
 * and handed to the log whole: lines are never torn.
 */
struct http_line {
	char *p;
	size_t len, cap;
	char stack[1024];
};

static void
http_line_add(struct http_line *l, const char *s, size_t n)
{
	if (l->len + n > l->cap) {
		size_t cap = (l->len + n) * 2;
		char *p = xmalloc(cap);

		memcpy(p, l->p, l->len);
		if (l->p != l->stack)
			free(l->p);
		l->p = p;
		l->cap = cap;
	}
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void
http_line_str(struct http_line *l, const char *s)
{
	http_line_add(l, s, strlen(s));
}

/*
 * Numbers without printf: vsnprintf was two thirds of a line's cost
 * (callgrind, docs/perf/experiments.md).  width pads with zeros.
 */
static void
http_line_num(struct http_line *l, int64_t v, int width)
{
	char buf[24];
	char *p = buf + sizeof buf;
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0 || buf + sizeof buf - p < width);
	if (v < 0)
		*--p = '-';
	http_line_add(l, p, (size_t)(buf + sizeof buf - p));
}

static void
http_json_str(struct http_line *l, const char *s)
{
	const char *run;
	char esc[8];

	http_line_add(l, "\"", 1);
	while (*s != '\0') {
		unsigned char c;

		for (run = s; (c = (unsigned char)*s) != '\0' && c != '"' &&
		     c != '\\' && c >= 0x20 && c < 0x7f;
		     s++)
			;
		http_line_add(l, run, (size_t)(s - run));
		if (c == '\0')
			break;
		if (c == '"' || c == '\\')
			snprintf(esc, sizeof esc, "\\%c", c);
		else
			snprintf(esc, sizeof esc, "\\u%04x", c);
		http_line_add(l, esc, strlen(esc));
		s++;
	}
	http_line_add(l, "\"", 1);
}

static void
http_access_log(struct req *r, const char *why)
{
	static const char *const methods[] = {
	    "GET", "HEAD", "POST", "DELETE", "OTHER"};
	struct http_line l = {.len = 0, .cap = sizeof l.stack};
	struct timespec ts;
	struct tm tm;

	if (r->srv->alog == NULL)
		return;
	l.p = l.stack;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* {"time":"2026-11-30T05:44:58.623Z" */
	http_line_str(&l, "{\"time\":\"");
	http_line_num(&l, tm.tm_year + 1900, 4);
	http_line_add(&l, "-", 1);
	http_line_num(&l, tm.tm_mon + 1, 2);
	http_line_add(&l, "-", 1);
	http_line_num(&l, tm.tm_mday, 2);
	http_line_add(&l, "T", 1);
	http_line_num(&l, tm.tm_hour, 2);
	http_line_add(&l, ":", 1);
	http_line_num(&l, tm.tm_min, 2);
	http_line_add(&l, ":", 1);
	http_line_num(&l, tm.tm_sec, 2);
	http_line_add(&l, ".", 1);
	http_line_num(&l, ts.tv_nsec / 1000000, 3);
	http_line_str(&l, "Z\",\"method\":\"");
	http_line_str(&l, methods[r->method]);
	http_line_str(&l, "\",\"path\":");
	http_json_str(&l, r->path != NULL ? r->path : "");
	http_line_str(&l, ",\"status\":");
	http_line_num(&l, r->status, 0);
	http_line_str(&l, ",\"bytes\":");
	http_line_num(&l, (int64_t)r->sent, 0);
	http_line_str(&l, ",\"duration_ms\":");
	http_line_num(&l, clock_now_ms() - r->start_ms, 0);
	/* as X-Cache says: a local reply or an error is a MISS too */
	http_line_str(&l, ",\"cache\":\"");
	http_line_str(&l,
	    http_cache_names[r->cache != REQ_CACHE_NONE ? r->cache
							: REQ_CACHE_MISS]);
	http_line_add(&l, "\"", 1);
	if (r->upstream_ms >= 0) {
		http_line_str(&l, ",\"upstream_ms\":");
		http_line_num(&l, r->upstream_ms, 0);
	}
	if (why != NULL) {
		http_line_str(&l, ",\"error\":");
		http_json_str(&l, why);
	}
	http_line_add(&l, "}\n", 2);
	alog_line(r->srv->alog, l.p, l.len);
	if (l.p != l.stack)
		free(l.p);
}

/* The end of r: its access line, and free. */
static void
http_retire(struct req *r, const char *why)
{
	struct server *srv = r->srv;

	http_unhand(r);
	if (r->shadow) {
		/* its front counts and logs it */
		loop_shadow_retire(r, why);
		TAILQ_REMOVE(&r->loop->reqs, r, entry);
		__atomic_sub_fetch(&r->loop->nreqs, 1, __ATOMIC_RELEASE);
		goto out;
	}
	pthread_mutex_lock(&srv->hook_mu);
	if (srv->req_hook != NULL) {
		struct req_summary sum = {
		    .method = r->method,
		    .cache = r->cache,
		    .routed = r->routed,
		    .route = r->routed ? &r->route : NULL,
		    .up = r->up,
		    .status = r->status,
		    .sent = r->sent,
		    .start_ms = r->start_ms,
		    .upstream_ms = r->upstream_ms,
		    .peer = r->peer,
		    .served = r->have_served ? &r->served : NULL,
		};

		srv->req_hook(srv->req_hook_arg, &sum);
	}
	pthread_mutex_unlock(&srv->hook_mu);
	http_access_log(r, why);
	TAILQ_REMOVE(&r->loop->reqs, r, entry);
	__atomic_sub_fetch(&r->loop->nreqs, 1, __ATOMIC_RELEASE);
	__atomic_sub_fetch(&srv->nlive, 1, __ATOMIC_RELEASE);
out:
	free(r->why);
	free(r->path);
	free(r->accept);
	free(r->body);
	free(r);
}

void
req_finish(struct req *r, int status, const char *why)
{
	struct server *srv = r->srv;

	if (r->state == REQ_DONE) {
		/* again (shutting down): evhttp's writing is over too */
		if (r->handed != NULL)
			http_retire(r, "shutting down");
		return;
	}
	if (r->ev != NULL) {
		/*
		 * Not handed to evhttp yet.  Nothing went out: the reply is
		 * the error for status.  A stream (or a lost client): cut.
		 * Either re-enters here with r->ev == NULL.
		 */
		if (r->state != REQ_STREAMING && !r->client_gone)
			req_error(r,
			    status >= 500 ? OCI_ERR_UNAVAILABLE
					  : OCI_ERR_INTERNAL,
			    why);
		else
			req_abort(r, why);
		return;
	}
	r->state = REQ_DONE;
	if (r->finish_cb != NULL)
		r->finish_cb(r);
	if (r->status == 0)
		r->status = status;
	if (r->xfer != NULL) {
		upstream_xfer_cancel(r->xfer);
		r->xfer = NULL;
	}
	if (r->link != NULL && !r->shadow)
		loop_front_gone(r);
	if (r->evcon != NULL && r->handed == NULL && !r->handed_done)
		conn_set_closecb(r->loop->conns, r->evcon, NULL, NULL);
	if (r->px.body != NULL)
		evbuffer_free(r->px.body);
	r->px.body = NULL;
	if (!r->shadow)
		metrics_request_done(srv, r);
	if (r->handed != NULL) {
		r->why = why != NULL ? xstrdup(why) : NULL;
		return;
	}
	http_retire(r, why);
}

static void
http_base_handle(struct req *r)
{
	req_reply_mem(r, 200, "application/json", NULL, "{}", 2);
}

static int
http_base_hit(struct req *r)
{
	http_base_handle(r);
	return 0;
}

void
req_hook_set(struct server *srv, req_hook_fn fn, void *arg)
{
	pthread_mutex_lock(&srv->hook_mu);
	srv->req_hook = fn;
	srv->req_hook_arg = arg;
	pthread_mutex_unlock(&srv->hook_mu);
}

/* The peer's address, kept: the connection may be gone at req_finish. */
static void
http_peer(struct req *r)
{
	char *addr = NULL;
	ev_uint16_t port;

	if (r->evcon == NULL)
		return;
	evhttp_connection_get_peer(r->evcon, &addr, &port);
	if (addr != NULL)
		xstrlcpy(r->peer, addr, sizeof r->peer);
}

/*
 * evhttp calls the request callback a second time, with the URI cleared,
 * when a connection fails with a buffer error while the reply is ours: find
 * our request and finish it (that completes evhttp's side too).
 */
static void
http_failed_request(struct loop *l, struct evhttp_request *ev)
{
	struct req *r;

	TAILQ_FOREACH(r, &l->reqs, entry) {
		if (r->ev == ev) {
			r->client_gone = 1;
			req_abort(r, "connection failed");
			return;
		}
	}
	evhttp_send_error(ev, 400, NULL);
}

/*
 * Two Content-Length headers that disagree leave the request's framing
 * ambiguous (the classic request-smuggling set-up); evhttp reads the first.
 * 1 if so.
 */
static int
http_length_conflict(struct evhttp_request *ev)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	struct evkeyval *kv;
	const char *first = NULL;

	TAILQ_FOREACH(kv, h, next) {
		if (strcasecmp(kv->key, "Content-Length") != 0)
			continue;
		if (first == NULL)
			first = kv->value;
		else if (strcmp(first, kv->value) != 0)
			return 1;
	}
	return 0;
}

/*
 * Routes r and runs its handler.  On a serving loop (not loop 0) only a
 * store hit is answered there; any other request is relayed to loop 0.
 */
static void
http_dispatch(struct req *r, struct evhttp_request *ev, int m)
{
	struct server *srv = r->srv;
	const struct evhttp_uri *uri;
	struct evhttp_uri *own = NULL;
	const struct http_handler *h = NULL;
	enum oci_err err;
	const char *why, *path;
	size_t i;

	/*
	 * evhttp 2.1 has no connection cap; live requests are what hold
	 * fds, transfers and temp files, so they are capped here, and idle
	 * connections are closed by the idle timeout.
	 */
	if (!r->shadow && srv->opts->max_requests > 0 &&
	    __atomic_load_n(&srv->nlive, __ATOMIC_ACQUIRE) >
		(size_t)srv->opts->max_requests) {
		evhttp_add_header(
		    evhttp_request_get_output_headers(ev), "Retry-After", "1");
		evhttp_add_header(evhttp_request_get_output_headers(ev),
		    "Connection", "close");
		req_error(
		    r, OCI_ERR_UNAVAILABLE, "too many requests in progress");
		return;
	}

	if (http_length_conflict(ev)) {
		evhttp_add_header(evhttp_request_get_output_headers(ev),
		    "Connection", "close");
		req_error(r, OCI_ERR_SIZE_INVALID,
		    "conflicting Content-Length headers");
		return;
	}
	if (r->shadow)
		uri = own = evhttp_uri_parse_with_flags(
		    r->path, EVHTTP_URI_NONCONFORMANT);
	else
		uri = evhttp_request_get_evhttp_uri(ev);
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL ||
	    route_parse(
		path, evhttp_uri_get_query(uri), &r->route, &err, &why) == -1) {
		if (path == NULL) {
			err = OCI_ERR_NOT_FOUND;
			why = "no path";
		}
		if (own != NULL)
			evhttp_uri_free(own);
		req_error(r, err, why);
		return;
	}
	if (own != NULL)
		evhttp_uri_free(own);
	r->routed = 1;
	for (i = 0; i < nitems(http_handlers); i++) {
		if (http_handlers[i].kind == r->route.kind) {
			h = &http_handlers[i];
			break;
		}
	}
	if (h == NULL || h->fn == NULL || (h->methods & m) == 0) {
		req_error(r, OCI_ERR_UNSUPPORTED,
		    "this is a read-only pull-through cache");
		return;
	}
	if (h->needs_upstream &&
	    (r->up = route_upstream(srv->upstreams, srv->nupstreams, &r->route,
		 &err, &why)) == NULL) {
		req_error(r, err, why);
		return;
	}
	if (__atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE)) {
		req_error(r, OCI_ERR_UNAVAILABLE, "shutting down");
		return;
	}
	if (r->loop->id != 0) {
		if (h->hit == NULL || h->hit(r) == -1) {
			r->relay_mask = m;
			loop_relay(r);
		}
		return;
	}
	h->fn(r);
}

static void
http_request_cb(struct evhttp_request *ev, void *arg)
{
	struct loop *l = arg;
	struct server *srv = l->srv;
	struct req *r;
	size_t i;
	int m;

	if (evhttp_request_get_uri(ev) == NULL) {
		http_failed_request(l, ev);
		return;
	}
	r = xcalloc(1, sizeof *r);
	r->srv = srv;
	r->loop = l;
	r->ev = ev;
	r->evcon = evhttp_request_get_connection(ev);
	r->start_ms = clock_now_ms();
	r->upstream_ms = -1;
	r->path = xstrdup(evhttp_request_get_uri(ev));
	r->method = REQ_OTHER;
	m = 0;
	for (i = 0; i < nitems(http_methods_table); i++) {
		if (http_methods_table[i].cmd ==
		    evhttp_request_get_command(ev)) {
			r->method = http_methods_table[i].method;
			m = http_methods_table[i].mask;
		}
	}
	TAILQ_INSERT_TAIL(&l->reqs, r, entry);
	__atomic_add_fetch(&l->nreqs, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&srv->nlive, 1, __ATOMIC_RELEASE);
	http_peer(r);
	http_nodelay(r->evcon);
	conn_dispatched(l->conns, r->evcon);
	conn_set_closecb(l->conns, r->evcon, http_close_cb, r);
	http_dispatch(r, ev, m);
}

void
http_shadow_new(struct loop *l, struct loop_link *link, enum req_method method,
    int mask, const char *path, const char *peer, struct evkeyvalq *headers,
    struct evbuffer *body)
{
	struct evhttp_request *ev = evhttp_request_new(NULL, NULL);
	struct evkeyval *kv;
	struct req *r;

	if (ev == NULL)
		fatal("out of memory relaying a request");
	TAILQ_FOREACH(kv, headers, next)
		evhttp_add_header(
		    evhttp_request_get_input_headers(ev), kv->key, kv->value);
	if (body != NULL)
		evbuffer_add_buffer(evhttp_request_get_input_buffer(ev), body);
	r = xcalloc(1, sizeof *r);
	r->srv = l->srv;
	r->loop = l;
	r->shadow = 1;
	r->link = link;
	loop_shadow_attach(r);
	r->ev = ev;
	r->start_ms = clock_now_ms();
	r->upstream_ms = -1;
	r->path = xstrdup(path);
	r->method = method;
	xstrlcpy(r->peer, peer, sizeof r->peer);
	TAILQ_INSERT_TAIL(&l->reqs, r, entry);
	__atomic_add_fetch(&l->nreqs, 1, __ATOMIC_RELEASE);
	http_dispatch(r, ev, mask);
}

void
req_relayed(struct req *r, const struct loop_relay *a)
{
	r->cache = a->cache;
	r->upstream_ms = a->upstream_ms;
	r->served = a->served;
	r->have_served = a->have_served;
	xstrlcpy(r->up_cache, a->up_cache, sizeof r->up_cache);
}

static void
http_copy_output(struct req *r, struct evkeyvalq *headers)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, headers, next)
		evhttp_add_header(h, kv->key, kv->value);
}

void
req_relay_start(struct req *r, int status, struct evkeyvalq *headers)
{
	http_copy_output(r, headers);
	r->status = status;
	r->state = REQ_STREAMING;
	evhttp_send_reply_start(r->ev, status, http_reason(status));
}

void
req_relay_reply(struct req *r, int status, struct evkeyvalq *headers,
    struct evbuffer *body, const char *why)
{
	http_copy_output(r, headers);
	http_send(r, status, body);
	req_finish(r, status, why);
}

void
req_relay_end(struct req *r, const char *why)
{
	http_hand_over(r);
	evhttp_send_reply_end(r->ev);
	r->ev = NULL;
	req_finish(r, r->status, why);
}

/* An SO_REUSEPORT listener on the configured address (every loop has
 * one; the kernel spreads connections over them). */
static struct evhttp_bound_socket *
http_bind_reuseport(struct loop *l, const char *host, unsigned short port)
{
	struct evutil_addrinfo hints, *ai = NULL;
	struct evconnlistener *lev;
	char service[8];
	int err;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	snprintf(service, sizeof service, "%u", port);
	if ((err = evutil_getaddrinfo(host, service, &hints, &ai)) != 0) {
		errno = EADDRNOTAVAIL;
		return NULL;
	}
	lev = evconnlistener_new_bind(l->base, NULL, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE |
		LEV_OPT_CLOSE_ON_EXEC,
	    -1, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (lev == NULL)
		return NULL;
	return evhttp_bind_listener(l->http, lev);
}

int
http_start(struct loop *l, int reuseport, unsigned short port)
{
	const struct server_opts *o = l->srv->opts;

	if ((l->http = evhttp_new(l->base)) == NULL) {
		log_error("cannot create the http server");
		return -1;
	}
	evhttp_set_allowed_methods(l->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
		EVHTTP_REQ_OPTIONS);
	evhttp_set_default_content_type(l->http, NULL);
	evhttp_set_timeout(l->http, (int)o->idle_timeout_s);
	evhttp_set_max_headers_size(l->http, 64 * 1024);
	evhttp_set_max_body_size(l->http, 64 * 1024);
	evhttp_set_gencb(l->http, http_request_cb, l);
	if (reuseport)
		l->bound = http_bind_reuseport(l, o->listen_host, port);
	else
		l->bound = evhttp_bind_socket_with_handle(
		    l->http, o->listen_host, port);
	if (l->bound == NULL) {
		log_error("cannot listen on '%s:%u': %s", o->listen_host, port,
		    strerror(errno));
		return -1;
	}
	l->conns =
	    conn_guard_new(l->base, l->http, l->bound, o->header_timeout_s);
	return 0;
}

/* Stops accepting; live requests carry on. */
void
http_stop(struct loop *l)
{
	if (l->bound != NULL) {
		conn_guard_stop(l->conns);
		evhttp_del_accept_socket(l->http, l->bound);
		l->bound = NULL;
	}
}

void
http_free(struct loop *l)
{
	if (l->http != NULL)
		evhttp_free(l->http);
	l->http = NULL;
	conn_guard_free(l->conns);
	l->conns = NULL;
}

unsigned short
http_port(const struct loop *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	evutil_socket_t fd;

	if (l->bound == NULL)
		return 0;
	fd = evhttp_bound_socket_get_fd(l->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}
