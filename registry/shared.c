/*
 * registry/shared.c: the server's side of the shared blob store.  Opens the
 * bucket (s3.c) from the configuration, uploads what fills verified from
 * upstream in the background (never on a client's path; nothing unverified
 * ever goes up), and writes the shared-store metrics.  fill.c reads from
 * the bucket through shared_s3().
 */
#include <sys/queue.h>

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

struct shared {
	struct server *srv;
	struct s3 *s3;
	LIST_HEAD(, shared_up) ups;
	size_t nups;
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
	if ((sh->s3 = s3_new(srv->base, srv->uc, c)) == NULL) {
		free(sh);
		return -1;
	}
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

void
shared_close(struct server *srv)
{
	struct shared *sh = srv->shared;

	if (sh == NULL)
		return;
	while (!LIST_EMPTY(&sh->ups))
		shared_up_free(LIST_FIRST(&sh->ups));
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
