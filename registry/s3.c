/*
 * registry/s3.c: the shared blob store, an S3-compatible bucket (Ceph RGW,
 * MinIO, AWS S3) that several nodes read and fill, objects named by digest.
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4, path-style URLs) and
 * run on the upstream client's multi handle (upstream_ext_start), so they
 * share the one event loop with every other transfer.  A circuit breaker
 * keeps a dead or failing bucket from costing every request a timeout.
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "../common/common.h"
#include "registry.h"

#define S3_EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* XML answers (errors, listings, multipart ids) are read up to this. */
#define S3_XML_MAX (4 * 1024 * 1024)
#define S3_OPEN_MIN_MS 2000
#define S3_OPEN_MAX_MS 60000
#define S3_PART_MIN (5 * 1024 * 1024) /* S3's smallest non-last part */
#define S3_PARTS_MAX 10000
#define S3_COMPLETE_END "</CompleteMultipartUpload>"

struct s3 {
	struct upstream_client *uc;
	struct event_base *base;
	char *url; /* endpoint, no trailing '/' */
	char *bucket;
	char *prefix; /* "" or "ci/" (with its '/') */
	char *sigv4;  /* "aws:amz:REGION:s3" */
	char *userpwd;
	uint64_t multipart_min; /* blobs from this size go in parts */
	uint64_t part_size;
	long connect_timeout_ms;
	long response_timeout_ms; /* GET/HEAD: to the status line */
	long low_speed_time_s;
	int64_t open_until_ms; /* breaker: skip the bucket until then */
	int64_t open_ms;
	struct s3_stats stats;
	struct pool *pool; /* hashes multipart parts; NULL: no multipart */
	LIST_HEAD(, s3_xfer) xfers;
	LIST_HEAD(, s3_upload) uploads;
};

enum s3_xfer_state {
	S3_XFER_RUNNING,
	S3_XFER_BODY, /* final headers delivered */
	S3_XFER_DONE,
};

/* One HTTP request to the bucket. */
struct s3_xfer {
	struct s3 *s3;
	enum s3_xfer_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct upstream_ext *ext;
	struct event *answer_ev; /* GET/HEAD: no status line in time */
	char *url;
	long status;
	int64_t length;
	char etag[128];
	char ctype[128];
	struct s3_cbs cbs;
	void *arg;
	char *xml; /* error or XML answers, NUL-terminated */
	size_t xlen;
	int keep_xml; /* a 2xx body is XML the caller wants */
	/* upload source: a file range or memory */
	int fd;
	uint64_t off, end;
	char *mem;
	size_t memlen, memoff;
	char errbuf[CURL_ERROR_SIZE];
	LIST_ENTRY(s3_xfer) link;
};

/* A multipart upload: initiate, the parts one after another, complete. */
struct s3_upload {
	struct s3 *s3;
	struct digest digest;
	int fd;
	uint64_t size;
	unsigned npart, nparts;
	char *upload_id;
	char (*etags)[128];
	struct s3_xfer *x;
	struct s3_parthash *hashing; /* a part being hashed on the pool */
	struct s3_cbs cbs;
	void *arg;
	LIST_ENTRY(s3_upload) link;
};

/* A part's SHA-256, computed on a worker from the verified blob file. */
struct s3_parthash {
	struct s3_upload *u; /* NULL once the upload is gone */
	int fd;		     /* its own dup */
	uint64_t off, end;
	struct digest d;
	int rc;
};

/* Breaker --------------------------------------------------------------- */

int
s3_usable(const struct s3 *s3)
{
	return clock_now_ms() >= s3->open_until_ms;
}

static void
s3_breaker_trip(struct s3 *s3, const char *why)
{
	int64_t now = clock_now_ms();

	if (now < s3->open_until_ms)
		return;
	s3->stats.breaker_opens++;
	log_warn("shared store '%s' failing (%s); going straight to upstream "
		 "for %lld ms",
	    s3->bucket, why, (long long)s3->open_ms);
	s3->open_until_ms = now + s3->open_ms;
	s3->open_ms =
	    s3->open_ms * 2 > S3_OPEN_MAX_MS ? S3_OPEN_MAX_MS : s3->open_ms * 2;
}

static void
s3_breaker_ok(struct s3 *s3)
{
	if (s3->open_ms != S3_OPEN_MIN_MS)
		log_info("shared store '%s' answers again", s3->bucket);
	s3->open_ms = S3_OPEN_MIN_MS;
	s3->open_until_ms = 0;
}

/* Set-up ---------------------------------------------------------------- */

struct s3 *
s3_new(struct event_base *base, struct upstream_client *uc,
    const struct s3_conf *conf)
{
	struct s3 *s3;
	size_t len;

	s3 = xcalloc(1, sizeof *s3);
	s3->base = base;
	s3->uc = uc;
	s3->url = xstrdup(conf->url);
	len = strlen(s3->url);
	while (len > 0 && s3->url[len - 1] == '/')
		s3->url[--len] = '\0';
	s3->bucket = xstrdup(conf->bucket);
	len = conf->prefix != NULL ? strlen(conf->prefix) : 0;
	while (len > 0 && conf->prefix[len - 1] == '/')
		len--;
	if (len == 0)
		s3->prefix = xstrdup("");
	else
		xasprintf(&s3->prefix, "%.*s/", (int)len, conf->prefix);
	xasprintf(&s3->sigv4, "aws:amz:%s:s3",
	    conf->region != NULL && conf->region[0] != '\0' ? conf->region
							    : "us-east-1");
	xasprintf(&s3->userpwd, "%s:%s", conf->access_key, conf->secret_key);
	s3->multipart_min =
	    conf->multipart_min > 0 ? conf->multipart_min : 64 * 1024 * 1024;
	s3->part_size =
	    conf->part_size >= S3_PART_MIN ? conf->part_size : 16 * 1024 * 1024;
	s3->connect_timeout_ms =
	    conf->connect_timeout_ms > 0 ? conf->connect_timeout_ms : 3000;
	s3->response_timeout_ms =
	    conf->response_timeout_ms > 0 ? conf->response_timeout_ms : 2000;
	s3->low_speed_time_s = 20;
	s3->open_ms = S3_OPEN_MIN_MS;
	LIST_INIT(&s3->xfers);
	LIST_INIT(&s3->uploads);
	return s3;
}

static void s3_xfer_free(struct s3_xfer *);
static void s3_upload_free(struct s3_upload *);

void
s3_free(struct s3 *s3)
{
	if (s3 == NULL)
		return;
	while (!LIST_EMPTY(&s3->uploads))
		s3_upload_free(LIST_FIRST(&s3->uploads));
	while (!LIST_EMPTY(&s3->xfers))
		s3_xfer_cancel(LIST_FIRST(&s3->xfers));
	free(s3->url);
	free(s3->bucket);
	free(s3->prefix);
	free(s3->sigv4);
	free(s3->userpwd);
	free(s3);
}

void
s3_stats(const struct s3 *s3, struct s3_stats *out)
{
	*out = s3->stats;
	out->available = s3_usable(s3);
}

const char *
s3_bucket(const struct s3 *s3)
{
	return s3->bucket;
}

void
s3_set_pool(struct s3 *s3, struct pool *pool)
{
	s3->pool = pool;
}

/* "<prefix>blobs/sha256/<hex>" */
static void
s3_blob_key(const struct s3 *s3, const struct digest *d, char *buf, size_t len)
{
	char ds[DIGEST_STRLEN];

	digest_format(d, ds);
	snprintf(buf, len, "%sblobs/sha256/%s", s3->prefix, ds + 7);
}

/* Transfers -------------------------------------------------------------- */

static void
s3_xfer_free(struct s3_xfer *x)
{
	LIST_REMOVE(x, link);
	if (x->answer_ev != NULL)
		event_free(x->answer_ev);
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->hdrs);
	if (x->fd >= 0)
		close(x->fd);
	free(x->url);
	free(x->xml);
	free(x->mem);
	free(x);
}

void
s3_xfer_cancel(struct s3_xfer *x)
{
	if (x == NULL)
		return;
	if (x->ext != NULL) {
		upstream_ext_cancel(x->ext); /* the handle goes with it */
		x->easy = NULL;
	}
	s3_xfer_free(x);
}

static void
s3_xfer_keep(struct s3_xfer *x, const void *buf, size_t len)
{
	if (x->xlen + len > S3_XML_MAX)
		return;
	x->xml = xreallocarray(x->xml, x->xlen + len + 1, 1);
	memcpy(x->xml + x->xlen, buf, len);
	x->xlen += len;
	x->xml[x->xlen] = '\0';
}

/* Copies the value of header name from a header line, or returns 0. */
static int
s3_header_value(
    const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name), vlen;
	const char *v, *end = line + len;

	if (len <= nlen || line[nlen] != ':' ||
	    strncasecmp(line, name, nlen) != 0)
		return 0;
	for (v = line + nlen + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v &&
	    (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
		end[-1] == '\t'))
		end--;
	vlen = (size_t)(end - v);
	if (vlen >= outlen)
		vlen = outlen - 1;
	memcpy(out, v, vlen);
	out[vlen] = '\0';
	return 1;
}

static size_t
s3_header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;
	char v[64];

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		const char *p = memchr(buf, ' ', len);

		x->status = p != NULL ? strtol(p + 1, NULL, 10) : 0;
		if (x->answer_ev != NULL)
			evtimer_del(x->answer_ev); /* it answers */
		x->length = -1;
		x->etag[0] = '\0';
		x->ctype[0] = '\0';
		return len;
	}
	if (buf[0] == '\r' || buf[0] == '\n') {
		if (x->status < 200 || x->state != S3_XFER_RUNNING)
			return len; /* 100 Continue and the like */
		x->state = S3_XFER_BODY;
		if (x->status / 100 == 2 && x->cbs.headers != NULL &&
		    x->cbs.headers(x->arg, x->length,
			x->ctype[0] != '\0' ? x->ctype : NULL) == -1)
			return 0;
		return len;
	}
	if (s3_header_value(buf, len, "content-length", v, sizeof v))
		x->length = strtoll(v, NULL, 10);
	else if (!s3_header_value(buf, len, "etag", x->etag, sizeof x->etag))
		s3_header_value(
		    buf, len, "content-type", x->ctype, sizeof x->ctype);
	return len;
}

static size_t
s3_write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;

	if (x->status / 100 != 2 || x->keep_xml) {
		s3_xfer_keep(x, buf, len);
		return len;
	}
	x->s3->stats.bytes_in += len;
	if (x->cbs.body != NULL && x->cbs.body(x->arg, buf, len) == -1)
		return 0;
	return len;
}

/* Uploads read the file with pread (page cache: a fresh blob). */
static size_t
s3_read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t want = size * n;
	ssize_t got;

	if (x->mem != NULL) {
		if (want > x->memlen - x->memoff)
			want = x->memlen - x->memoff;
		memcpy(buf, x->mem + x->memoff, want);
		x->memoff += want;
		return want;
	}
	if (want > x->end - x->off)
		want = (size_t)(x->end - x->off);
	if (want == 0)
		return 0;
	do
		got = pread(x->fd, buf, want, (off_t)x->off);
	while (got == -1 && errno == EINTR);
	if (got <= 0) {
		log_error("cannot read the blob being uploaded: %s",
		    got == 0 ? "unexpected end of file" : strerror(errno));
		return CURL_READFUNC_ABORT;
	}
	x->off += (uint64_t)got;
	x->s3->stats.bytes_out += (uint64_t)got;
	return (size_t)got;
}

/* The XML error code of an error answer ("NoSuchKey"), or "". */
static void
s3_xml_text(const char *xml, const char *tag, char *out, size_t len)
{
	char open[64], close[64];
	const char *a, *b;

	out[0] = '\0';
	if (xml == NULL)
		return;
	snprintf(open, sizeof open, "<%s>", tag);
	snprintf(close, sizeof close, "</%s>", tag);
	if ((a = strstr(xml, open)) == NULL)
		return;
	a += strlen(open);
	if ((b = strstr(a, close)) == NULL)
		return;
	if ((size_t)(b - a) >= len)
		return;
	memcpy(out, a, (size_t)(b - a));
	out[b - a] = '\0';
}

static void
s3_done_cb(void *arg, int code)
{
	struct s3_xfer *x = arg;
	struct s3 *s3 = x->s3;
	enum s3_result res;
	const char *why = NULL;
	char ecode[64];

	x->ext = NULL;
	x->state = S3_XFER_DONE;
	if (code != CURLE_OK) {
		res = S3_EFAIL;
		why = curl_easy_strerror((CURLcode)code);
		if (code == CURLE_WRITE_ERROR && x->status / 100 == 2)
			res = S3_EABORT;
		else {
			log_warn("shared store: '%s' failed: %s", x->url,
			    x->errbuf[0] != '\0' ? x->errbuf : why);
			s3->stats.errors++;
			s3_breaker_trip(s3, why);
		}
	} else if (x->status / 100 == 2) {
		res = S3_OK;
		s3_breaker_ok(s3);
	} else if (x->status == 404) {
		res = S3_ENOTFOUND;
		s3_breaker_ok(s3);
	} else {
		s3_xml_text(x->xml, "Code", ecode, sizeof ecode);
		log_warn("shared store: '%s' answered %ld %s", x->url,
		    x->status, ecode);
		s3->stats.errors++;
		res = S3_EFAIL;
		why = "shared store refused the request";
		if (x->status >= 500)
			s3_breaker_trip(s3, "5xx answers");
		else if (x->status == 403 || x->status == 400)
			s3_breaker_trip(s3, "request refused");
	}
	if (x->cbs.done != NULL)
		x->cbs.done(x->arg, res, why);
	s3_xfer_free(x);
}

enum s3_method { S3_GET, S3_HEAD, S3_PUT, S3_POST, S3_DELETE };

/*
 * A request for key (already in the prefix) with an optional query that
 * is already canonical (sorted, encoded): curl's SigV4 signs it as given.
 */
static struct s3_xfer *
s3_xfer_new(struct s3 *s3, enum s3_method m, const char *key, const char *query,
    const char *payload_sha256, const struct s3_cbs *cbs, void *arg)
{
	static const char *const names[] = {
	    "GET", "HEAD", "PUT", "POST", "DELETE"};
	struct s3_xfer *x;
	char *ekey, *h;
	CURL *e;
	int bad = 0;

	if (!s3_usable(s3)) {
		s3->stats.skipped++;
		return NULL;
	}
	x = xcalloc(1, sizeof *x);
	x->s3 = s3;
	x->fd = -1;
	x->length = -1;
	x->cbs = *cbs;
	x->arg = arg;
	LIST_INSERT_HEAD(&s3->xfers, x, link);
	if ((e = x->easy = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	/* '/' stays: it separates the key's path segments */
	ekey = curl_easy_escape(e, key, 0);
	if (ekey == NULL)
		fatal("out of memory escaping a key");
	for (h = ekey; (h = strstr(h, "%2F")) != NULL;) {
		*h = '/';
		memmove(h + 1, h + 3, strlen(h + 3) + 1);
	}
	xasprintf(&x->url, "%s/%s/%s%s%s", s3->url, s3->bucket, ekey,
	    query != NULL ? "?" : "", query != NULL ? query : "");
	curl_free(ekey);
	bad |= curl_easy_setopt(e, CURLOPT_URL, x->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		   s3->connect_timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(
		   e, CURLOPT_LOW_SPEED_TIME, s3->low_speed_time_s) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3->sigv4) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERPWD, s3->userpwd) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s3_header_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK;
	bad |=
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s3_write_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
	bad |=
	    curl_easy_setopt(e, CURLOPT_READFUNCTION, s3_read_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_READDATA, x) != CURLE_OK;
	switch (m) {
	case S3_HEAD:
		bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
		break;
	case S3_PUT:
		bad |= curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) != CURLE_OK;
		break;
	case S3_GET:
		break;
	case S3_POST:
	case S3_DELETE:
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, names[m]) !=
		    CURLE_OK;
		break;
	}
	/*
	 * curl signs the hash of a body it holds in memory and of nothing
	 * else; the header makes it sign (and the server check) this one.
	 */
	xasprintf(&h, "x-amz-content-sha256: %s",
	    payload_sha256 != NULL ? payload_sha256 : S3_EMPTY_SHA256);
	x->hdrs = curl_slist_append(x->hdrs, h);
	free(h);
	/*
	 * No "Expect:" to turn off 100-continue: curl 7.88 signs such an
	 * empty header that it then does not send (SignatureDoesNotMatch).
	 */
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK;
	if (bad) {
		log_error("cannot set up curl for '%s'", x->url);
		s3_xfer_free(x);
		return NULL;
	}
	return x;
}

/*
 * A bucket that accepts connections and never answers would cost curl's
 * low-speed limit per lookup; no status line within response_timeout_ms
 * counts as a failure (and feeds the breaker), so the fill goes upstream.
 */
static void
s3_answer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct s3_xfer *x = arg;
	struct s3 *s3 = x->s3;

	(void)fd;
	(void)what;
	log_warn("shared store: no answer to '%s' within %ld ms", x->url,
	    s3->response_timeout_ms);
	s3->stats.errors++;
	s3_breaker_trip(s3, "no answer");
	upstream_ext_cancel(x->ext); /* the handle goes with it */
	x->ext = NULL;
	x->easy = NULL;
	x->state = S3_XFER_DONE;
	if (x->cbs.done != NULL)
		x->cbs.done(x->arg, S3_EFAIL, "shared store did not answer");
	s3_xfer_free(x);
}

/* Starts x; it was set up completely.  answer: arm the answer timer. */
static struct s3_xfer *
s3_xfer_go(struct s3_xfer *x)
{
	x->ext = upstream_ext_start(x->s3->uc, x->easy, s3_done_cb, x);
	return x;
}

static struct s3_xfer *
s3_xfer_go_answer(struct s3_xfer *x)
{
	long ms = x->s3->response_timeout_ms;
	struct timeval tv;

	if ((x->answer_ev = evtimer_new(x->s3->base, s3_answer_event_cb, x)) ==
	    NULL)
		fatal("out of memory creating a response timer");
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(x->answer_ev, &tv);
	return s3_xfer_go(x);
}

/* Sends len bytes of memory (copied) as the body of a PUT or POST. */
static void
s3_xfer_body_mem(struct s3_xfer *x, const void *buf, size_t len, int post)
{
	x->mem = xmalloc(len > 0 ? len : 1);
	memcpy(x->mem, buf, len);
	x->memlen = len;
	if (post) {
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->mem);
		curl_easy_setopt(
		    x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else
		curl_easy_setopt(
		    x->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
}

/* Sends [off, end) of fd (dup'ed) as the body of a PUT. */
static int
s3_xfer_body_fd(struct s3_xfer *x, int fd, uint64_t off, uint64_t end)
{
	if ((x->fd = dup(fd)) == -1) {
		log_error("cannot dup the blob file: %s", strerror(errno));
		return -1;
	}
	x->off = off;
	x->end = end;
	curl_easy_setopt(
	    x->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(end - off));
	return 0;
}

/* Public operations ---------------------------------------------------------
 */

struct s3_xfer *
s3_blob_get(struct s3 *s3, const struct digest *d, int head,
    const struct s3_cbs *cbs, void *arg)
{
	char key[512];
	struct s3_xfer *x;

	s3_blob_key(s3, d, key, sizeof key);
	x = s3_xfer_new(s3, head ? S3_HEAD : S3_GET, key, NULL, NULL, cbs, arg);
	return x != NULL ? s3_xfer_go_answer(x) : NULL;
}

struct s3_xfer *
s3_object_get(
    struct s3 *s3, const char *name, const struct s3_cbs *cbs, void *arg)
{
	struct s3_xfer *x;
	char *key;

	xasprintf(&key, "%s%s", s3->prefix, name);
	x = s3_xfer_new(s3, S3_GET, key, NULL, NULL, cbs, arg);
	free(key);
	/* small objects (pin sets, tag mappings): an answer in time, too */
	return x != NULL ? s3_xfer_go_answer(x) : NULL;
}

struct s3_xfer *
s3_object_put(struct s3 *s3, const char *name, const void *buf, size_t len,
    const struct s3_cbs *cbs, void *arg)
{
	char ds[DIGEST_STRLEN], *key;
	struct digest d;
	struct s3_xfer *x;

	digest_buf(buf, len, &d);
	digest_format(&d, ds);
	xasprintf(&key, "%s%s", s3->prefix, name);
	x = s3_xfer_new(s3, S3_PUT, key, NULL, ds + 7, cbs, arg);
	free(key);
	if (x == NULL)
		return NULL;
	s3_xfer_body_mem(x, buf, len, 0);
	return s3_xfer_go(x);
}

struct s3_xfer *
s3_object_delete(
    struct s3 *s3, const char *name, const struct s3_cbs *cbs, void *arg)
{
	struct s3_xfer *x;
	char *key;

	xasprintf(&key, "%s%s", s3->prefix, name);
	x = s3_xfer_new(s3, S3_DELETE, key, NULL, NULL, cbs, arg);
	free(key);
	return x != NULL ? s3_xfer_go(x) : NULL;
}

/*
 * ListObjectsV2 of the keys under "<prefix><under>"; the XML answer goes
 * to cbs->body in one piece.  token: a continuation token or NULL.
 */
struct s3_xfer *
s3_list(struct s3 *s3, const char *under, const char *token,
    const struct s3_cbs *cbs, void *arg)
{
	struct s3_xfer *x;
	char *q, *p, *et, *ep;
	CURL *e;

	if ((e = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	xasprintf(&p, "%s%s", s3->prefix, under);
	ep = curl_easy_escape(e, p, 0);
	et = token != NULL ? curl_easy_escape(e, token, 0) : NULL;
	if (ep == NULL || (token != NULL && et == NULL))
		fatal("out of memory escaping a query");
	/* canonical: parameters sorted, values encoded */
	xasprintf(&q, "%s%s%slist-type=2&prefix=%s",
	    et != NULL ? "continuation-token=" : "", et != NULL ? et : "",
	    et != NULL ? "&" : "", ep);
	curl_free(ep);
	curl_free(et);
	curl_easy_cleanup(e);
	free(p);
	x = s3_xfer_new(s3, S3_GET, "", q, NULL, cbs, arg);
	free(q);
	if (x == NULL)
		return NULL;
	x->keep_xml = 1;
	return s3_xfer_go(x);
}

/* The XML gathered by a listing (or error), borrowed; NULL if none. */
const char *
s3_xfer_xml(const struct s3_xfer *x)
{
	return x->xml;
}

/* "2026-11-30T03:04:52.920Z" -> seconds since the epoch, or 0. */
static int64_t
s3_time_parse(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof tm);
	if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		&tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

int
s3_list_each(const char *xml,
    int (*fn)(void *, const char *key, int64_t size, int64_t mtime), void *arg,
    char *token, size_t tokenlen)
{
	const char *p = xml, *c, *end;
	char key[1024], size[32], mtime[64];

	token[0] = '\0';
	if (xml == NULL)
		return 0;
	while ((c = strstr(p, "<Contents>")) != NULL) {
		if ((end = strstr(c, "</Contents>")) == NULL)
			break;
		s3_xml_text(c, "Key", key, sizeof key);
		s3_xml_text(c, "Size", size, sizeof size);
		s3_xml_text(c, "LastModified", mtime, sizeof mtime);
		if (key[0] != '\0' &&
		    fn(arg, key, strtoll(size, NULL, 10),
			s3_time_parse(mtime)) == -1)
			return -1;
		p = end;
	}
	s3_xml_text(xml, "IsTruncated", size, sizeof size);
	if (strcmp(size, "true") == 0)
		s3_xml_text(xml, "NextContinuationToken", token, tokenlen);
	return 0;
}

const char *
s3_prefix(const struct s3 *s3)
{
	return s3->prefix;
}

/* Multipart upload ----------------------------------------------------------
 */

static void
s3_upload_free(struct s3_upload *u)
{
	LIST_REMOVE(u, link);
	if (u->hashing != NULL)
		u->hashing->u = NULL; /* its completion frees it */
	s3_xfer_cancel(u->x);
	if (u->fd >= 0)
		close(u->fd);
	free(u->upload_id);
	free(u->etags);
	free(u);
}

void
s3_upload_cancel(struct s3_upload *u)
{
	if (u != NULL)
		s3_upload_free(u);
}

static void
s3_upload_end(struct s3_upload *u, enum s3_result res, const char *why)
{
	struct s3_cbs cbs = u->cbs;
	void *arg = u->arg;

	u->x = NULL; /* freed by s3_done_cb after we return */
	s3_upload_free(u);
	if (cbs.done != NULL)
		cbs.done(arg, res, why);
}

static void s3_upload_next(struct s3_upload *);

static void
s3_upload_complete_cb(void *arg, enum s3_result res, const char *why)
{
	struct s3_upload *u = arg;

	if (res == S3_OK && u->x->xml != NULL &&
	    strstr(u->x->xml, "<Error>") != NULL) {
		/* S3 may answer 200 and put the error in the body */
		res = S3_EFAIL;
		why = "multipart completion failed";
	}
	if (res == S3_OK)
		u->s3->stats.uploads++;
	s3_upload_end(u, res, why);
}

static void
s3_upload_part_cb(void *arg, enum s3_result res, const char *why)
{
	struct s3_upload *u = arg;

	if (res != S3_OK) {
		s3_upload_end(u, res, why);
		return;
	}
	xstrlcpy(u->etags[u->npart], u->x->etag, sizeof u->etags[0]);
	u->npart++;
	u->x = NULL;
	s3_upload_next(u);
}

static void
s3_upload_start_cb(void *arg, enum s3_result res, const char *why)
{
	struct s3_upload *u = arg;
	char id[512];

	if (res == S3_OK) {
		s3_xml_text(u->x->xml, "UploadId", id, sizeof id);
		if (id[0] == '\0') {
			res = S3_EFAIL;
			why = "no UploadId in the answer";
		} else
			u->upload_id = xstrdup(id);
	}
	if (res != S3_OK) {
		s3_upload_end(u, res, why);
		return;
	}
	u->x = NULL;
	s3_upload_next(u);
}

/* On a worker: the part's bytes, read back from the stored file. */
static void
s3_parthash_work(void *arg)
{
	struct s3_parthash *ph = arg;
	struct digest_ctx *ctx = digest_ctx_new();
	unsigned char *buf = xmalloc(1024 * 1024);
	uint64_t off = ph->off;
	ssize_t got;
	size_t want;

	ph->rc = 0;
	while (off < ph->end) {
		want = ph->end - off < 1024 * 1024 ? (size_t)(ph->end - off)
						   : 1024 * 1024;
		got = pread(ph->fd, buf, want, (off_t)off);
		if (got == -1 && errno == EINTR)
			continue;
		if (got <= 0) {
			ph->rc = -1;
			break;
		}
		digest_ctx_update(ctx, buf, (size_t)got);
		off += (uint64_t)got;
	}
	digest_ctx_final(ctx, &ph->d);
	digest_ctx_free(ctx);
	free(buf);
}

static void s3_upload_part_send(struct s3_upload *, const struct digest *);

/* Back on the loop: send the part, signed with its hash. */
static void
s3_parthash_done(void *arg)
{
	struct s3_parthash *ph = arg;
	struct s3_upload *u = ph->u;

	close(ph->fd);
	if (u != NULL) {
		u->hashing = NULL;
		if (ph->rc == -1) {
			log_error(
			    "cannot read the blob to hash part %u of its upload",
			    u->npart + 1);
			s3_upload_end(u, S3_EFAIL, "cannot read the blob");
		} else
			s3_upload_part_send(u, &ph->d);
	}
	free(ph);
}

/*
 * Each part is signed with its own SHA-256 (x-amz-content-sha256), as a
 * single PUT is with the blob's digest: the bucket checks the bytes it
 * got against it.  Hashing reads the part back from the stored (verified)
 * file, on a worker, never on the loop.
 */
static void
s3_upload_part_hash(struct s3_upload *u, uint64_t off, uint64_t end)
{
	struct s3_parthash *ph;

	if (u->s3->pool == NULL) {
		s3_upload_end(u, S3_EFAIL, "no worker pool to hash parts");
		return;
	}
	ph = xcalloc(1, sizeof *ph);
	if ((ph->fd = dup(u->fd)) == -1) {
		log_error("cannot dup the blob file: %s", strerror(errno));
		free(ph);
		s3_upload_end(u, S3_EFAIL, "cannot read the blob");
		return;
	}
	ph->u = u;
	ph->off = off;
	ph->end = end;
	u->hashing = ph;
	pool_submit(u->s3->pool, s3_parthash_work, s3_parthash_done, ph);
}

/* [off, end) of part u->npart, hashed to d: PUT it. */
static void
s3_upload_part_send(struct s3_upload *u, const struct digest *d)
{
	static const struct s3_cbs part_cbs = {NULL, NULL, s3_upload_part_cb};
	char key[512], *q, *eid, ds[DIGEST_STRLEN];
	uint64_t off, end;
	CURL *e;

	off = (uint64_t)u->npart * u->s3->part_size;
	end =
	    off + u->s3->part_size < u->size ? off + u->s3->part_size : u->size;
	s3_blob_key(u->s3, &u->digest, key, sizeof key);
	if ((e = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	if ((eid = curl_easy_escape(e, u->upload_id, 0)) == NULL)
		fatal("out of memory escaping a query");
	curl_easy_cleanup(e);
	xasprintf(&q, "partNumber=%u&uploadId=%s", u->npart + 1, eid);
	curl_free(eid);
	digest_format(d, ds);
	u->x = s3_xfer_new(u->s3, S3_PUT, key, q, ds + 7, &part_cbs, u);
	free(q);
	if (u->x != NULL && s3_xfer_body_fd(u->x, u->fd, off, end) == -1) {
		s3_xfer_cancel(u->x);
		u->x = NULL;
	}
	if (u->x == NULL) {
		s3_upload_end(u, S3_EFAIL, "shared store unavailable");
		return;
	}
	s3_xfer_go(u->x);
}

/* The next part, or the completion once every part is in. */
static void
s3_upload_next(struct s3_upload *u)
{
	static const struct s3_cbs done_cbs = {
	    NULL, NULL, s3_upload_complete_cb};
	char key[512], *q, *eid, *xml = NULL, *line;
	size_t xlen = 0;
	uint64_t off, end;
	unsigned i;
	char ds[DIGEST_STRLEN];
	struct digest d;
	CURL *e;

	if (u->npart < u->nparts) {
		off = (uint64_t)u->npart * u->s3->part_size;
		end = off + u->s3->part_size < u->size ? off + u->s3->part_size
						       : u->size;
		s3_upload_part_hash(u, off, end);
		return;
	}
	s3_blob_key(u->s3, &u->digest, key, sizeof key);
	if ((e = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	if ((eid = curl_easy_escape(e, u->upload_id, 0)) == NULL)
		fatal("out of memory escaping a query");
	curl_easy_cleanup(e);
	{
		for (i = 0; i < u->nparts; i++) {
			xasprintf(&line,
			    "%s<Part><PartNumber>%u</PartNumber>"
			    "<ETag>%s</ETag></Part>",
			    i == 0 ? "<CompleteMultipartUpload>" : "", i + 1,
			    u->etags[i]);
			xml = xreallocarray(xml, xlen + strlen(line) + 1, 1);
			memcpy(xml + xlen, line, strlen(line) + 1);
			xlen += strlen(line);
			free(line);
		}
		xml = xreallocarray(xml, xlen + sizeof S3_COMPLETE_END, 1);
		memcpy(xml + xlen, S3_COMPLETE_END, sizeof S3_COMPLETE_END);
		xlen += sizeof S3_COMPLETE_END - 1;
		digest_buf(xml, xlen, &d);
		digest_format(&d, ds);
		xasprintf(&q, "uploadId=%s", eid);
		u->x =
		    s3_xfer_new(u->s3, S3_POST, key, q, ds + 7, &done_cbs, u);
		free(q);
		if (u->x != NULL) {
			u->x->keep_xml = 1;
			s3_xfer_body_mem(u->x, xml, xlen, 1);
		}
		free(xml);
	}
	curl_free(eid);
	if (u->x == NULL) {
		s3_upload_end(u, S3_EFAIL, "shared store unavailable");
		return;
	}
	s3_xfer_go(u->x);
}

static void
s3_put_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct s3_upload *u = arg;

	if (res == S3_OK)
		u->s3->stats.uploads++;
	s3_upload_end(u, res, why);
}

struct s3_upload *
s3_blob_put(struct s3 *s3, const struct digest *d, int fd, uint64_t size,
    const struct s3_cbs *cbs, void *arg)
{
	static const struct s3_cbs put_cbs = {NULL, NULL, s3_put_done_cb};
	static const struct s3_cbs start_cbs = {NULL, NULL, s3_upload_start_cb};
	struct s3_upload *u;
	char key[512], ds[DIGEST_STRLEN];

	if (!s3_usable(s3)) {
		s3->stats.skipped++;
		return NULL;
	}
	u = xcalloc(1, sizeof *u);
	u->s3 = s3;
	u->digest = *d;
	u->size = size;
	u->cbs = *cbs;
	u->arg = arg;
	LIST_INSERT_HEAD(&s3->uploads, u, link);
	if ((u->fd = dup(fd)) == -1) {
		log_error("cannot dup the blob file: %s", strerror(errno));
		s3_upload_free(u);
		return NULL;
	}
	s3_blob_key(s3, d, key, sizeof key);
	if (size < s3->multipart_min) {
		/* the blob's own digest is the signed payload hash */
		digest_format(d, ds);
		u->x = s3_xfer_new(s3, S3_PUT, key, NULL, ds + 7, &put_cbs, u);
		if (u->x != NULL && s3_xfer_body_fd(u->x, fd, 0, size) == -1) {
			s3_xfer_cancel(u->x);
			u->x = NULL;
		}
	} else {
		u->nparts =
		    (unsigned)((size + s3->part_size - 1) / s3->part_size);
		if (u->nparts > S3_PARTS_MAX) {
			log_error("blob too large for %u parts of %" PRIu64
				  " bytes; not uploaded",
			    S3_PARTS_MAX, s3->part_size);
			s3_upload_free(u);
			return NULL;
		}
		u->etags = xcalloc(u->nparts, sizeof u->etags[0]);
		u->x = s3_xfer_new(
		    s3, S3_POST, key, "uploads=", NULL, &start_cbs, u);
		if (u->x != NULL)
			u->x->keep_xml = 1;
	}
	if (u->x == NULL) {
		s3_upload_free(u);
		return NULL;
	}
	s3_xfer_go(u->x);
	return u;
}

struct s3_upload *
s3_blob_put_mem(struct s3 *s3, const struct digest *d, const char *ctype,
    const void *buf, size_t len, const struct s3_cbs *cbs, void *arg)
{
	static const struct s3_cbs put_cbs = {NULL, NULL, s3_put_done_cb};
	struct s3_upload *u;
	char key[512], ds[DIGEST_STRLEN], *h;

	if (!s3_usable(s3)) {
		s3->stats.skipped++;
		return NULL;
	}
	u = xcalloc(1, sizeof *u);
	u->s3 = s3;
	u->fd = -1;
	u->digest = *d;
	u->size = len;
	u->cbs = *cbs;
	u->arg = arg;
	LIST_INSERT_HEAD(&s3->uploads, u, link);
	s3_blob_key(s3, d, key, sizeof key);
	digest_format(d, ds);
	if ((u->x = s3_xfer_new(s3, S3_PUT, key, NULL, ds + 7, &put_cbs, u)) ==
	    NULL) {
		s3_upload_free(u);
		return NULL;
	}
	if (ctype != NULL && ctype[0] != '\0') {
		xasprintf(&h, "Content-Type: %s", ctype);
		u->x->hdrs = curl_slist_append(u->x->hdrs, h);
		free(h);
		curl_easy_setopt(u->x->easy, CURLOPT_HTTPHEADER, u->x->hdrs);
	}
	s3_xfer_body_mem(u->x, buf, len, 0);
	s3->stats.bytes_out += len;
	s3_xfer_go(u->x);
	return u;
}

struct s3_stats *
s3_counters(struct s3 *s3)
{
	return &s3->stats;
}
