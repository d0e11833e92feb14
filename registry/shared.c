/*
 * registry/shared.c: the server's side of the shared blob store.  Opens the
 * bucket (s3.c) from the configuration, uploads what fills verified from
 * upstream in the background (never on a client's path; nothing unverified
 * ever goes up), and writes the shared-store metrics.  fill.c reads from
 * the bucket through shared_s3().
 */
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

/* Uploads at once; more are dropped (the next node's fill uploads them). */
#define SHARED_UPLOADS_MAX 64
#define SHARED_NODE_MAX 128

struct shared_up {
	struct shared *sh;
	struct digest digest;
	struct s3_upload *u;
	LIST_ENTRY(shared_up) link;
};

/* A tag mapping being published. */
struct shared_tagput {
	struct shared *sh;
	struct s3_xfer *x;
	LIST_ENTRY(shared_tagput) link;
};

/* A bucket request owned by a client request (r->sget). */
struct shared_get {
	struct req *r;
	struct s3_xfer *x;
	shared_get_fn done;
	int64_t length;
	char body[SHARED_GET_MAX];
	size_t len;
};

struct shared {
	struct server *srv;
	struct s3 *s3;
	LIST_HEAD(, shared_up) ups;
	size_t nups;
	LIST_HEAD(, shared_tagput) tagputs;
	size_t ntagputs;
	uint64_t dropped;
	/* the pin set, published as "<prefix>pins/<node>.txt" for shared-gc */
	char node[SHARED_NODE_MAX];
	struct event *pins_ev;
	struct s3_xfer *pins_x;
	struct digest pins_sent, pins_sending; /* of the text */
	int pins_published;
	uint64_t pins_publishes;
};

static void shared_metrics(struct evbuffer *, void *);
static void shared_tagput_free(struct shared_tagput *);
static void shared_pins_event_cb(evutil_socket_t, short, void *);

int
shared_node_valid(const char *name)
{
	size_t i, len = strlen(name);

	if (len == 0 || len >= SHARED_NODE_MAX || name[0] == '.')
		return 0;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
			(name[i] >= 'A' && name[i] <= 'Z') ||
			(name[i] >= '0' && name[i] <= '9') || name[i] == '.' ||
			name[i] == '_' || name[i] == '-'))
			return 0;
	return 1;
}

int
shared_open(struct server *srv)
{
	const struct s3_conf *c = &srv->opts->shared_store;
	struct shared *sh;

	if (c->url == NULL)
		return 0;
	sh = xcalloc(1, sizeof *sh);
	sh->srv = srv;
	LIST_INIT(&sh->ups);
	LIST_INIT(&sh->tagputs);
	if ((sh->s3 = s3_new(srv->base, srv->uc, c)) == NULL) {
		free(sh);
		return -1;
	}
	s3_set_pool(sh->s3, srv->pool);
	if (srv->opts->shared_node != NULL)
		xstrlcpy(sh->node, srv->opts->shared_node, sizeof sh->node);
	else if (gethostname(sh->node, sizeof sh->node) == -1 ||
	    !shared_node_valid(sh->node)) {
		log_error("shared store: the host name is not usable as a node "
			  "name; set shared_store.node");
		s3_free(sh->s3);
		free(sh);
		return -1;
	}
	srv->shared = sh;
	metrics_add(srv, shared_metrics, sh);
	if (srv->opts->shared_pins_s > 0) {
		sh->pins_ev = event_new(
		    srv->base, -1, EV_PERSIST, shared_pins_event_cb, sh);
		if (sh->pins_ev == NULL)
			fatal("out of memory creating the pin set timer");
		event_add(sh->pins_ev,
		    &(struct timeval){(time_t)srv->opts->shared_pins_s, 0});
		event_active(sh->pins_ev, EV_TIMEOUT, 0); /* once now */
	}
	log_info("shared store: bucket '%s' at '%s', node '%s'", c->bucket,
	    c->url, sh->node);
	return 0;
}

static void
shared_up_free(struct shared_up *up)
{
	LIST_REMOVE(up, link);
	up->sh->nups--;
	s3_upload_cancel(up->u);
	free(up);
}

static void
shared_tagput_free(struct shared_tagput *tp)
{
	LIST_REMOVE(tp, link);
	tp->sh->ntagputs--;
	s3_xfer_cancel(tp->x);
	free(tp);
}

void
shared_close(struct server *srv)
{
	struct shared *sh = srv->shared;

	if (sh == NULL)
		return;
	while (!LIST_EMPTY(&sh->ups))
		shared_up_free(LIST_FIRST(&sh->ups));
	while (!LIST_EMPTY(&sh->tagputs))
		shared_tagput_free(LIST_FIRST(&sh->tagputs));
	if (sh->pins_ev != NULL)
		event_free(sh->pins_ev);
	s3_xfer_cancel(sh->pins_x);
	s3_free(sh->s3);
	free(sh);
	srv->shared = NULL;
}

struct s3 *
shared_s3(struct server *srv)
{
	return srv->shared != NULL ? srv->shared->s3 : NULL;
}

static void
shared_up_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct shared_up *up = arg;
	char d[DIGEST_STRLEN];

	digest_format(&up->digest, d);
	if (res == S3_OK)
		log_debug("shared store: uploaded %s", d);
	else
		log_warn("shared store: upload of %s failed: %s", d,
		    why != NULL ? why : "unknown error");
	up->u = NULL; /* s3.c frees it after this */
	shared_up_free(up);
}

/* A new upload of d, or NULL when one is running or too many are. */
static struct shared_up *
shared_up_new(struct shared *sh, const struct digest *d)
{
	struct shared_up *up;

	LIST_FOREACH(up, &sh->ups, link)
		if (digest_equal(&up->digest, d))
			return NULL;
	if (sh->nups >= SHARED_UPLOADS_MAX) {
		sh->dropped++;
		return NULL;
	}
	up = xcalloc(1, sizeof *up);
	up->sh = sh;
	up->digest = *d;
	LIST_INSERT_HEAD(&sh->ups, up, link);
	sh->nups++;
	return up;
}

void
shared_upload_blob(struct server *srv, const struct digest *d)
{
	static const struct s3_cbs cbs = {NULL, NULL, shared_up_done_cb};
	struct shared *sh = srv->shared;
	struct shared_up *up;
	off_t size;
	int fd;

	if (sh == NULL || !s3_usable(sh->s3) ||
	    (up = shared_up_new(sh, d)) == NULL)
		return;
	/* the stored file: verified and renamed into place */
	if ((fd = blobstore_open_blob(srv->store, d, &size)) == -1) {
		shared_up_free(up);
		return;
	}
	up->u = s3_blob_put(sh->s3, d, fd, (uint64_t)size, &cbs, up);
	close(fd);
	if (up->u == NULL)
		shared_up_free(up);
}

void
shared_upload_mem(struct server *srv, const struct digest *d,
    const char *media_type, const void *buf, size_t len)
{
	static const struct s3_cbs cbs = {NULL, NULL, shared_up_done_cb};
	struct shared *sh = srv->shared;
	struct shared_up *up;

	if (sh == NULL || !s3_usable(sh->s3) ||
	    (up = shared_up_new(sh, d)) == NULL)
		return;
	up->u = s3_blob_put_mem(sh->s3, d, media_type, buf, len, &cbs, up);
	if (up->u == NULL)
		shared_up_free(up);
}

/* Tags -------------------------------------------------------------------- */

/* "tags/<upstream>/<repo>:<tag>" (the name's part under the prefix) */
static void
shared_tag_name(char *buf, size_t len, const char *upstream, const char *repo,
    const char *tag)
{
	snprintf(buf, len, "tags/%s/%s:%s", upstream, repo, tag);
}

static void
shared_tagput_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct shared_tagput *tp = arg;

	if (res != S3_OK)
		log_warn("shared store: cannot publish a tag mapping: %s",
		    why != NULL ? why : "unknown error");
	tp->x = NULL; /* s3.c frees it after this */
	shared_tagput_free(tp);
}

/*
 * The object's text: "sha256:<hex>\n<confirmed_at>\n<media type>\n".  Not
 * content-addressed, so not verifiable by itself; what it names is (the
 * manifest is fetched by digest and verified like any other).
 */
void
shared_tag_publish(struct server *srv, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *t)
{
	static const struct s3_cbs cbs = {NULL, NULL, shared_tagput_done_cb};
	struct shared *sh = srv->shared;
	struct shared_tagput *tp;
	char name[ROUTE_NAME_MAX + ROUTE_TAG_MAX + 256], d[DIGEST_STRLEN];
	char text[DIGEST_STRLEN + DB_MEDIA_TYPE_MAX + 64];
	int n;

	if (sh == NULL || !s3_usable(sh->s3))
		return;
	if (sh->ntagputs >= SHARED_UPLOADS_MAX) {
		sh->dropped++;
		return;
	}
	shared_tag_name(name, sizeof name, upstream, repo, tag);
	digest_format(&t->digest, d);
	n = snprintf(text, sizeof text, "%s\n%" PRId64 "\n%s\n", d,
	    t->confirmed_at, t->media_type);
	tp = xcalloc(1, sizeof *tp);
	tp->sh = sh;
	LIST_INSERT_HEAD(&sh->tagputs, tp, link);
	sh->ntagputs++;
	if ((tp->x = s3_object_put(sh->s3, name, text, (size_t)n, &cbs, tp)) ==
	    NULL)
		shared_tagput_free(tp);
}

int
shared_tag_parse(const char *buf, size_t len, struct db_tag *t)
{
	char text[SHARED_GET_MAX + 1], *nl, *nl2, *end;
	long long at;

	if (len >= sizeof text)
		return -1;
	memcpy(text, buf, len);
	text[len] = '\0';
	memset(t, 0, sizeof *t);
	if ((nl = strchr(text, '\n')) == NULL)
		return -1;
	*nl = '\0';
	if (digest_parse(&t->digest, text) == -1)
		return -1;
	if ((nl2 = strchr(nl + 1, '\n')) == NULL)
		return -1;
	*nl2 = '\0';
	errno = 0;
	at = strtoll(nl + 1, &end, 10);
	if (errno != 0 || end == nl + 1 || *end != '\0' || at <= 0)
		return -1;
	t->confirmed_at = at;
	if ((end = strchr(nl2 + 1, '\n')) == NULL || end == nl2 + 1 ||
	    (size_t)(end - (nl2 + 1)) >= sizeof t->media_type || end[1] != '\0')
		return -1;
	*end = '\0';
	xstrlcpy(t->media_type, nl2 + 1, sizeof t->media_type);
	return 0;
}

/* Lookups owned by one request ------------------------------------------ */

static void
shared_get_finish_cb(struct req *r)
{
	struct shared_get *sg = r->sget;

	r->finish_cb = NULL;
	r->sget = NULL;
	if (sg != NULL) {
		s3_xfer_cancel(sg->x);
		free(sg);
	}
}

static int
shared_get_headers_cb(void *arg, int64_t length, const char *ctype)
{
	struct shared_get *sg = arg;

	(void)ctype;
	sg->length = length;
	return 0;
}

static int
shared_get_body_cb(void *arg, const void *buf, size_t len)
{
	struct shared_get *sg = arg;

	if (sg->len + len > sizeof sg->body)
		return -1; /* not what we asked for */
	memcpy(sg->body + sg->len, buf, len);
	sg->len += len;
	return 0;
}

static void
shared_get_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct shared_get *sg = arg;
	struct req *r = sg->r;

	(void)why;
	r->sget = NULL;
	r->finish_cb = NULL;
	sg->x = NULL; /* s3.c frees it after this */
	sg->done(r, res, sg->length, sg->body, sg->len);
	free(sg);
}

static struct shared_get *
shared_get_new(struct req *r, shared_get_fn done)
{
	struct shared_get *sg;

	if (shared_s3(r->srv) == NULL || !s3_usable(shared_s3(r->srv)) ||
	    r->finish_cb != NULL)
		return NULL;
	sg = xcalloc(1, sizeof *sg);
	sg->r = r;
	sg->done = done;
	sg->length = -1;
	return sg;
}

static int
shared_get_go(struct req *r, struct shared_get *sg)
{
	if (sg->x == NULL) {
		free(sg);
		return -1;
	}
	r->sget = sg;
	r->finish_cb = shared_get_finish_cb;
	r->state = REQ_WAITING;
	return 0;
}

int
shared_head_blob(struct req *r, const struct digest *d, shared_get_fn done)
{
	static const struct s3_cbs cbs = {
	    shared_get_headers_cb, shared_get_body_cb, shared_get_done_cb};
	struct shared_get *sg;

	if ((sg = shared_get_new(r, done)) == NULL)
		return -1;
	sg->x = s3_blob_get(shared_s3(r->srv), d, 1, &cbs, sg);
	return shared_get_go(r, sg);
}

int
shared_get_tag(struct req *r, const char *upstream, const char *repo,
    const char *tag, shared_get_fn done)
{
	static const struct s3_cbs cbs = {
	    shared_get_headers_cb, shared_get_body_cb, shared_get_done_cb};
	char name[ROUTE_NAME_MAX + ROUTE_TAG_MAX + 256];
	struct shared_get *sg;

	if ((sg = shared_get_new(r, done)) == NULL)
		return -1;
	shared_tag_name(name, sizeof name, upstream, repo, tag);
	sg->x = s3_object_get(shared_s3(r->srv), name, &cbs, sg);
	return shared_get_go(r, sg);
}

/* Pin set ----------------------------------------------------------------- */

static void
shared_pins_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct shared *sh = arg;

	sh->pins_x = NULL;
	if (res != S3_OK) {
		log_warn("shared store: cannot publish the pin set of '%s': %s",
		    sh->node, why != NULL ? why : "unknown error");
		return;
	}
	sh->pins_sent = sh->pins_sending;
	sh->pins_published = 1;
	sh->pins_publishes++;
}

/*
 * Every shared_pins_s: this node's pinned digests, one "sha256:<hex>" a
 * line, to "<prefix>pins/<node>.txt" when they changed (shared-gc keeps
 * every blob any node's set names).  An empty set is published too: the
 * node exists and pins nothing.
 */
static void
shared_pins_event_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct s3_cbs cbs = {NULL, NULL, shared_pins_done_cb};
	struct shared *sh = arg;
	struct digest *ds, text_digest;
	char name[SHARED_NODE_MAX + 16], *text;
	size_t n, i;

	(void)fd;
	(void)what;
	if (sh->pins_x != NULL || !s3_usable(sh->s3))
		return;
	if (db_pinned(sh->srv->db, &ds, &n) == -1)
		return;
	text = xmalloc(n * DIGEST_STRLEN + 1);
	for (i = 0; i < n; i++) {
		digest_format(&ds[i], text + i * DIGEST_STRLEN);
		text[(i + 1) * DIGEST_STRLEN - 1] = '\n';
	}
	free(ds);
	digest_buf(text, n * DIGEST_STRLEN, &text_digest);
	if (!sh->pins_published ||
	    !digest_equal(&text_digest, &sh->pins_sent)) {
		snprintf(name, sizeof name, "pins/%s.txt", sh->node);
		sh->pins_sending = text_digest;
		sh->pins_x = s3_object_put(
		    sh->s3, name, text, n * DIGEST_STRLEN, &cbs, sh);
	}
	free(text);
}

void
shared_count(struct server *srv, enum shared_lookup what)
{
	static const size_t field[] = {
	    [SHARED_HIT] = offsetof(struct s3_stats, hits),
	    [SHARED_MISS] = offsetof(struct s3_stats, misses),
	    [SHARED_CORRUPT] = offsetof(struct s3_stats, corrupt),
	};
	struct s3 *s3 = shared_s3(srv);

	if (s3 != NULL)
		(*(uint64_t *)((char *)s3_counters(s3) + field[what]))++;
}

/* /metrics: the ccprewarm_shared_store_* family. */
static void
shared_metrics(struct evbuffer *b, void *arg)
{
	struct shared *sh = arg;
	struct s3_stats st;
	static const struct {
		const char *name, *help;
		size_t off;
	} counters[] = {
	    {"hits", "Local misses served from the shared store.",
		offsetof(struct s3_stats, hits)},
	    {"misses", "Local misses the shared store did not have.",
		offsetof(struct s3_stats, misses)},
	    {"corrupt",
		"Shared-store objects whose bytes did not match their name "
		"(treated as absent).",
		offsetof(struct s3_stats, corrupt)},
	    {"errors", "Shared-store requests that failed.",
		offsetof(struct s3_stats, errors)},
	    {"skipped",
		"Shared-store requests not made while its breaker was open.",
		offsetof(struct s3_stats, skipped)},
	    {"uploads", "Verified blobs uploaded to the shared store.",
		offsetof(struct s3_stats, uploads)},
	    {"breaker_opens", "Times the shared store's breaker opened.",
		offsetof(struct s3_stats, breaker_opens)},
	};
	size_t i;

	s3_stats(sh->s3, &st);
	for (i = 0; i < nitems(counters); i++)
		evbuffer_add_printf(b,
		    "# HELP ccprewarm_shared_store_%s_total %s\n"
		    "# TYPE ccprewarm_shared_store_%s_total counter\n"
		    "ccprewarm_shared_store_%s_total %" PRIu64 "\n",
		    counters[i].name, counters[i].help, counters[i].name,
		    counters[i].name,
		    *(const uint64_t *)(const void *)((const char *)&st +
			counters[i].off));
	evbuffer_add_printf(b,
	    "# HELP ccprewarm_shared_store_bytes_total Bytes moved to and from "
	    "the shared store.\n"
	    "# TYPE ccprewarm_shared_store_bytes_total counter\n"
	    "ccprewarm_shared_store_bytes_total{direction=\"in\"} %" PRIu64 "\n"
	    "ccprewarm_shared_store_bytes_total{direction=\"out\"} %" PRIu64
	    "\n"
	    "# HELP ccprewarm_shared_store_available 0 while the shared "
	    "store's breaker is open.\n"
	    "# TYPE ccprewarm_shared_store_available gauge\n"
	    "ccprewarm_shared_store_available %d\n"
	    "# HELP ccprewarm_shared_store_uploads_in_flight Background "
	    "uploads running.\n"
	    "# TYPE ccprewarm_shared_store_uploads_in_flight gauge\n"
	    "ccprewarm_shared_store_uploads_in_flight %zu\n"
	    "# HELP ccprewarm_shared_store_pin_publishes_total Times this "
	    "node's pin set was written to the shared store.\n"
	    "# TYPE ccprewarm_shared_store_pin_publishes_total counter\n"
	    "ccprewarm_shared_store_pin_publishes_total %" PRIu64 "\n",
	    st.bytes_in, st.bytes_out, st.available, sh->nups,
	    sh->pins_publishes);
}
