/*
 * registry/metrics.c: the counters behind GET /metrics (Prometheus text
 * exposition format 0.0.4) and `ccprewarm stats`.  Counters are
 * process-lifetime, except ccprewarm_store_*_total, which are kept in LMDB
 * and count since the store was created.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "internal.h"

/* The route label of counter row i: a route kind, or requests that did
 * not route. */
static const char *
metrics_route_label(size_t i)
{
	return i < ROUTE_NKINDS ? route_kind_name((enum route_kind)i)
				: "invalid";
}

static const int metrics_statuses[METRICS_NSTATUS - 1] = {
    200, 206, 304, 400, 401, 403, 404, 405, 416, 429, 499, 500, 502, 503};

static const double metrics_bounds[METRICS_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30};

/* LMDB counter names of the store-lifetime counters. */
static const struct metrics_store_def {
	const char *name;
	size_t off;
	const char *help;
} metrics_store_defs[] = {
    {"hits", offsetof(struct metrics_store, hits),
	"Blob and manifest requests served from the store"},
    {"misses", offsetof(struct metrics_store, misses),
	"Blob and manifest requests that needed upstream"},
    {"served_bytes", offsetof(struct metrics_store, served_bytes),
	"Blob and manifest bytes served"},
    {"bytes_saved", offsetof(struct metrics_store, bytes_saved),
	"Bytes served that did not have to come from upstream"},
    {"upstream_bytes", offsetof(struct metrics_store, upstream_bytes),
	"Body bytes received from upstreams"},
};

#define METRICS_FIELD(st, d) (*(uint64_t *)((char *)(st) + (d)->off))

int
metrics_open(struct server *srv)
{
	const struct metrics_store_def *d;
	size_t i;

	for (i = 0; i < nitems(metrics_store_defs); i++) {
		d = &metrics_store_defs[i];
		if (db_counter_get(srv->db, d->name,
			&METRICS_FIELD(&srv->ctr.store, d)) == -1)
			return -1;
	}
	srv->ctr.store_flushed = srv->ctr.store;
	return 0;
}

/* a += b, every counter (all uint64_t but the duration sums). */
static void
metrics_sum(struct server_counters *a, const struct server_counters *b)
{
	const uint64_t *pb = (const uint64_t *)(const void *)b;
	uint64_t *pa = (uint64_t *)(void *)a;
	size_t i, j,
	    n = offsetof(struct server_counters, http_sum) / sizeof(uint64_t);

	for (i = 0; i < n; i++)
		pa[i] += pb[i];
	for (i = 0; i < METRICS_NROUTES; i++) {
		a->http_sum[i] += b->http_sum[i];
		a->http_count[i] += b->http_count[i];
	}
	for (j = 0; j < sizeof a->store / sizeof(uint64_t); j++)
		((uint64_t *)(void *)&a->store)[j] +=
		    ((const uint64_t *)(const void *)&b->store)[j];
}

/*
 * Every loop's counters added up (loop 0's hold the owner-only ones too),
 * each read under its loop's lock; store_flushed is loop 0's.  On loop 0.
 */
static void
metrics_snapshot(struct server *srv, struct server_counters *out)
{
	struct loop *l;
	size_t i;

	*out = srv->ctr;
	for (i = 1; i < srv->nloops; i++) {
		l = srv->loops[i];
		pthread_mutex_lock(&l->ctr_mu);
		metrics_sum(out, l->ctr);
		pthread_mutex_unlock(&l->ctr_mu);
	}
}

void
metrics_flush(struct server *srv)
{
	const struct metrics_store_def *d;
	struct server_counters sum;
	uint64_t now, then;
	size_t i;

	metrics_snapshot(srv, &sum);
	for (i = 0; i < nitems(metrics_store_defs); i++) {
		d = &metrics_store_defs[i];
		now = METRICS_FIELD(&sum.store, d);
		then = METRICS_FIELD(&srv->ctr.store_flushed, d);
		if (now == then)
			continue;
		if (db_counter_add(srv->db, d->name, now - then) == 0)
			METRICS_FIELD(&srv->ctr.store_flushed, d) = now;
	}
}

void
metrics_upstream_bytes(struct server *srv, size_t n)
{
	srv->ctr.upstream_bytes += n;
	srv->ctr.store.upstream_bytes += n;
}

static size_t
metrics_status_index(int status)
{
	size_t i;

	for (i = 0; i < nitems(metrics_statuses); i++)
		if (metrics_statuses[i] == status)
			return i;
	return METRICS_NSTATUS - 1; /* "other" */
}

static void metrics_request_count(struct server_counters *, const struct req *);

void
metrics_request_done(struct server *srv, const struct req *r)
{
	struct loop *l = r->loop;

	(void)srv;
	pthread_mutex_lock(&l->ctr_mu);
	metrics_request_count(l->ctr, r);
	pthread_mutex_unlock(&l->ctr_mu);
}

static void
metrics_request_count(struct server_counters *c, const struct req *r)
{
	double secs = (double)(clock_now_ms() - r->start_ms) / 1000.0;
	size_t route, b;
	int k;

	c->requests++;
	route = r->routed ? (size_t)r->route.kind : METRICS_NROUTES - 1;
	c->http[route][metrics_status_index(r->status)]++;
	for (b = 0; b < METRICS_NBUCKETS && secs > metrics_bounds[b]; b++)
		;
	c->http_buckets[route][b]++;
	c->http_sum[route] += secs;
	c->http_count[route]++;
	if (!r->routed ||
	    (r->route.kind != ROUTE_BLOB && r->route.kind != ROUTE_MANIFEST))
		return;
	if (r->status < 200 || r->status >= 300)
		return;
	k = r->route.kind == ROUTE_MANIFEST;
	switch (r->cache) {
	case REQ_CACHE_HIT:
	case REQ_CACHE_REVALIDATED:
	case REQ_CACHE_STALE:
		c->hits[k]++;
		c->store.hits++;
		c->served_cache_bytes += r->sent;
		c->bytes_saved += r->sent;
		c->store.bytes_saved += r->sent;
		break;
	case REQ_CACHE_COALESCED:
		/* one upstream fetch served it and another request */
		c->misses[k]++;
		c->store.misses++;
		c->served_upstream_bytes += r->sent;
		c->bytes_saved += r->sent;
		c->store.bytes_saved += r->sent;
		break;
	case REQ_CACHE_MISS:
		c->misses[k]++;
		c->store.misses++;
		c->served_upstream_bytes += r->sent;
		break;
	case REQ_CACHE_NONE:
		return;
	}
	c->store.served_bytes += r->sent;
	if (r->cache == REQ_CACHE_REVALIDATED)
		c->revalidated++;
	if (r->cache == REQ_CACHE_STALE)
		c->stale++;
}

static void
metrics_head(
    struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(
	    b, "# HELP %s %s.\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_one(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	metrics_head(b, name, type, help);
	evbuffer_add_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void
metrics_kinds(
    struct evbuffer *b, const char *name, const char *help, const uint64_t v[2])
{
	metrics_head(b, name, "counter", help);
	evbuffer_add_printf(b, "%s{kind=\"blob\"} %" PRIu64 "\n", name, v[0]);
	evbuffer_add_printf(
	    b, "%s{kind=\"manifest\"} %" PRIu64 "\n", name, v[1]);
}

/* A histogram's bucket, sum and count lines for one label set. */
static void
metrics_histogram(struct evbuffer *b, const char *name, const char *labels,
    const double *bounds, size_t nbounds, const uint64_t *buckets, double sum,
    uint64_t count)
{
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i < nbounds; i++) {
		cum += buckets[i];
		evbuffer_add_printf(b, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n",
		    name, labels, bounds[i], cum);
	}
	cum += buckets[nbounds];
	evbuffer_add_printf(
	    b, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
	/* labels ends in ',' when not empty; drop it for sum and count */
	evbuffer_add_printf(b,
	    "%s_sum{%.*s} %.6f\n%s_count{%.*s} %" PRIu64 "\n", name,
	    (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels, sum, name,
	    (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels, count);
}

static void
metrics_http(struct evbuffer *b, const struct server_counters *c)
{
	char labels[64];
	size_t i, j;

	metrics_head(b, "ccprewarm_http_requests_total", "counter",
	    "HTTP requests by route and status");
	for (i = 0; i < METRICS_NROUTES; i++) {
		for (j = 0; j < METRICS_NSTATUS; j++) {
			if (c->http[i][j] == 0)
				continue;
			if (j < nitems(metrics_statuses))
				snprintf(labels, sizeof labels, "%d",
				    metrics_statuses[j]);
			else
				xstrlcpy(labels, "other", sizeof labels);
			evbuffer_add_printf(b,
			    "ccprewarm_http_requests_total"
			    "{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
			    metrics_route_label(i), labels, c->http[i][j]);
		}
	}
	metrics_head(b, "ccprewarm_http_request_duration_seconds", "histogram",
	    "Time from request to the end of the reply");
	for (i = 0; i < METRICS_NROUTES; i++) {
		if (c->http_count[i] == 0)
			continue;
		snprintf(labels, sizeof labels, "route=\"%s\",",
		    metrics_route_label(i));
		metrics_histogram(b, "ccprewarm_http_request_duration_seconds",
		    labels, metrics_bounds, METRICS_NBUCKETS,
		    c->http_buckets[i], c->http_sum[i], c->http_count[i]);
	}
}

static void
metrics_upstreams(struct evbuffer *b, struct server *srv)
{
	struct upstream_stats st;
	char labels[300], code[16];
	const char *name;
	size_t i, j;

	metrics_head(b, "ccprewarm_upstream_requests_total", "counter",
	    "Upstream answers by status (\"error\": no answer)");
	for (i = 0; i < srv->nupstreams; i++) {
		upstream_stats(srv->upstreams[i], &st);
		for (j = 0; j < upstream_code_count(); j++)
			if (st.requests[j] > 0)
				evbuffer_add_printf(b,
				    "ccprewarm_upstream_requests_total{"
				    "upstream="
				    "\"%s\",code=\"%s\"} %" PRIu64 "\n",
				    upstream_name(srv->upstreams[i]),
				    upstream_code_label(j, code, sizeof code),
				    st.requests[j]);
	}
	metrics_head(b, "ccprewarm_upstream_request_duration_seconds",
	    "histogram",
	    "Time from an upstream request to its response headers");
	for (i = 0; i < srv->nupstreams; i++) {
		upstream_stats(srv->upstreams[i], &st);
		snprintf(labels, sizeof labels, "upstream=\"%s\",",
		    upstream_name(srv->upstreams[i]));
		metrics_histogram(b,
		    "ccprewarm_upstream_request_duration_seconds", labels,
		    upstream_duration_bounds(), UPSTREAM_NBUCKETS,
		    st.duration_buckets, st.duration_sum_s, st.duration_count);
	}
	metrics_head(b, "ccprewarm_upstream_up", "gauge",
	    "1 if the upstream's circuit is closed, 0 while it fails fast");
	for (i = 0; i < srv->nupstreams; i++) {
		upstream_stats(srv->upstreams[i], &st);
		evbuffer_add_printf(b,
		    "ccprewarm_upstream_up{upstream=\"%s\"} "
		    "%d\n",
		    upstream_name(srv->upstreams[i]), st.available);
	}
	metrics_head(b, "ccprewarm_upstream_ratelimit_remaining", "gauge",
	    "The upstream's last ratelimit-remaining header (Docker Hub)");
	for (i = 0; i < srv->nupstreams; i++) {
		upstream_stats(srv->upstreams[i], &st);
		name = upstream_name(srv->upstreams[i]);
		if (st.ratelimit_remaining >= 0)
			evbuffer_add_printf(b,
			    "ccprewarm_upstream_ratelimit_"
			    "remaining{upstream=\"%s\"} %ld\n",
			    name, st.ratelimit_remaining);
	}
}

/* The manifest cache (registry/mcache.c); absent when it is off. */
static void
metrics_mcache(struct evbuffer *b, struct server *srv)
{
	struct mcache_stats st;

	if (srv->mcache == NULL)
		return;
	mcache_stats(srv->mcache, &st);
	metrics_one(b, "ccprewarm_manifest_cache_hits_total", "counter",
	    "Manifest replies served from the in-memory cache", st.hits);
	metrics_one(b, "ccprewarm_manifest_cache_misses_total", "counter",
	    "Manifest lookups the in-memory cache did not have (read from "
	    "the store)",
	    st.misses);
	metrics_one(b, "ccprewarm_manifest_cache_evictions_total", "counter",
	    "Entries the in-memory manifest cache dropped for its budget",
	    st.evictions);
	metrics_one(b, "ccprewarm_manifest_cache_bytes", "gauge",
	    "Bytes held by the in-memory manifest cache", st.bytes);
	metrics_one(b, "ccprewarm_manifest_cache_entries", "gauge",
	    "Manifests and tag mappings in the in-memory cache", st.entries);
	metrics_one(b, "ccprewarm_manifest_cache_max_bytes", "gauge",
	    "The in-memory manifest cache's budget", st.max_bytes);
}

void
metrics_handle(struct req *r)
{
	struct server *srv = r->srv;
	struct server_counters sum;
	const struct server_counters *c = &sum;
	const struct metrics_store_def *d;
	struct evbuffer *b = evbuffer_new();
	struct db_totals tot;
	char name[96];
	size_t i;

	metrics_snapshot(srv, &sum);
	metrics_head(b, "ccprewarm_build_info", "gauge",
	    "Always 1; the version is a label");
	evbuffer_add_printf(
	    b, "ccprewarm_build_info{version=\"%s\"} 1\n", version_string());
	metrics_kinds(b, "ccprewarm_cache_hits_total",
	    "Requests served from the store (HIT, REVALIDATED, STALE)",
	    c->hits);
	metrics_kinds(b, "ccprewarm_cache_misses_total",
	    "Requests that needed upstream (MISS, COALESCED)", c->misses);
	metrics_one(b, "ccprewarm_coalesced_requests_total", "counter",
	    "Requests that joined an in-flight fetch", c->coalesced);
	metrics_one(b, "ccprewarm_stale_responses_total", "counter",
	    "Cached tags served because upstream could not be asked", c->stale);
	metrics_one(b, "ccprewarm_revalidations_total", "counter",
	    "Cached tags confirmed unchanged by an upstream HEAD",
	    c->revalidated);
	metrics_head(b, "ccprewarm_served_bytes_total", "counter",
	    "Blob and manifest body bytes sent to clients, by where they came "
	    "from");
	evbuffer_add_printf(b,
	    "ccprewarm_served_bytes_total{source=\"cache\"} "
	    "%" PRIu64 "\nccprewarm_served_bytes_total{source=\"upstream\"} "
	    "%" PRIu64 "\n",
	    c->served_cache_bytes, c->served_upstream_bytes);
	metrics_one(b, "ccprewarm_bytes_saved_total", "counter",
	    "Bytes served that did not have to come from upstream",
	    c->bytes_saved);
	metrics_one(b, "ccprewarm_upstream_bytes_total", "counter",
	    "Body bytes received from upstreams", c->upstream_bytes);
	metrics_one(b, "ccprewarm_upstream_errors_total", "counter",
	    "Failed upstream attempts (connection, body, 5xx)",
	    c->upstream_errors);
	metrics_one(b, "ccprewarm_digest_mismatches_total", "counter",
	    "Upstream bodies that did not match their digest",
	    c->digest_mismatches);
	metrics_head(b, "ccprewarm_tier_fills_total", "counter",
	    "Fills from a cache upstream (a parent ccprewarm), by the tier "
	    "that had it: parent (its X-Cache HIT) or above");
	evbuffer_add_printf(b,
	    "ccprewarm_tier_fills_total{tier=\"parent\"} %" PRIu64 "\n"
	    "ccprewarm_tier_fills_total{tier=\"above\"} %" PRIu64 "\n",
	    c->tier_fills[0], c->tier_fills[1]);
	metrics_one(b, "ccprewarm_inflight_fetches", "gauge",
	    "Upstream fetches in progress", srv->nfills);
	metrics_one(b, "ccprewarm_inflight_requests", "gauge",
	    "Client requests in progress",
	    __atomic_load_n(&srv->nlive, __ATOMIC_ACQUIRE));
	metrics_head(b, "ccprewarm_loop_requests_total", "counter",
	    "Client requests finished, by the event loop that served them "
	    "(0 also does what the others relay)");
	for (i = 0; i < srv->nloops; i++) {
		pthread_mutex_lock(&srv->loops[i]->ctr_mu);
		evbuffer_add_printf(b,
		    "ccprewarm_loop_requests_total{loop=\"%zu\"} %" PRIu64 "\n",
		    i, srv->loops[i]->ctr->requests);
		pthread_mutex_unlock(&srv->loops[i]->ctr_mu);
	}
	if (db_totals(srv->db, &tot) == 0) {
		metrics_one(b, "ccprewarm_store_blobs", "gauge",
		    "Blobs and manifests in the store", tot.blobs);
		metrics_one(b, "ccprewarm_store_bytes", "gauge",
		    "Bytes of blobs and manifests in the store", tot.bytes);
		metrics_one(b, "ccprewarm_pinned_bytes", "gauge",
		    "Bytes of pinned blobs and manifests", tot.pinned_bytes);
	}
	for (i = 0; i < nitems(metrics_store_defs); i++) {
		d = &metrics_store_defs[i];
		snprintf(
		    name, sizeof name, "ccprewarm_store_%s_total", d->name);
		metrics_one(
		    b, name, "counter", d->help, METRICS_FIELD(&c->store, d));
	}
	metrics_http(b, c);
	metrics_upstreams(b, srv);
	metrics_mcache(b, srv);
	pthread_mutex_lock(&srv->hook_mu);
	for (i = 0; i < srv->nmetrics_extra; i++)
		srv->metrics_extra[i].fn(b, srv->metrics_extra[i].arg);
	pthread_mutex_unlock(&srv->hook_mu);
	req_reply_mem(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
	    evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}

/* metrics_json's writer: "key":value pairs, objects nested. */
struct metrics_json {
	struct evbuffer *b;
	int first; /* nothing written yet in the current object */
};

static void
metrics_json_key(struct metrics_json *j, const char *key)
{
	if (key != NULL)
		evbuffer_add_printf(
		    j->b, "%s\"%s\":", j->first ? "" : ",", key);
	j->first = 0;
}

static void
metrics_json_open(struct metrics_json *j, const char *key)
{
	metrics_json_key(j, key);
	evbuffer_add(j->b, "{", 1);
	j->first = 1;
}

static void
metrics_json_close(struct metrics_json *j)
{
	evbuffer_add(j->b, "}", 1);
	j->first = 0;
}

static void
metrics_json_u64(struct metrics_json *j, const char *key, uint64_t v)
{
	metrics_json_key(j, key);
	evbuffer_add_printf(j->b, "%" PRIu64, v);
}

/* A pair of counters as {"a":x,"b":y}. */
static void
metrics_json_pair(struct metrics_json *j, const char *key, const char *ka,
    uint64_t a, const char *kb, uint64_t b)
{
	metrics_json_open(j, key);
	metrics_json_u64(j, ka, a);
	metrics_json_u64(j, kb, b);
	metrics_json_close(j);
}

char *
metrics_json(struct server *srv)
{
	struct server_counters sum;
	const struct server_counters *c = &sum;
	struct metrics_json j = {evbuffer_new(), 1};
	uint64_t nblobs = 0, nbytes = 0;
	size_t i;
	char *out;

	metrics_snapshot(srv, &sum);
	db_blob_totals(srv->db, &nblobs, &nbytes);
	metrics_json_open(&j, NULL);
	metrics_json_key(&j, "version");
	evbuffer_add_printf(j.b, "\"%s\"", version_string());
	metrics_json_key(&j, "time");
	evbuffer_add_printf(j.b, "%lld", (long long)clock_wall_s());
	metrics_json_open(&j, "process");
	metrics_json_pair(
	    &j, "hits", "blob", c->hits[0], "manifest", c->hits[1]);
	metrics_json_pair(
	    &j, "misses", "blob", c->misses[0], "manifest", c->misses[1]);
	metrics_json_u64(&j, "coalesced", c->coalesced);
	metrics_json_u64(&j, "stale", c->stale);
	metrics_json_u64(&j, "revalidated", c->revalidated);
	metrics_json_pair(&j, "served_bytes", "cache", c->served_cache_bytes,
	    "upstream", c->served_upstream_bytes);
	metrics_json_u64(&j, "bytes_saved", c->bytes_saved);
	metrics_json_u64(&j, "upstream_bytes", c->upstream_bytes);
	metrics_json_u64(&j, "upstream_errors", c->upstream_errors);
	metrics_json_u64(&j, "digest_mismatches", c->digest_mismatches);
	metrics_json_u64(&j, "requests", c->requests);
	metrics_json_close(&j);
	metrics_json_open(&j, "store");
	for (i = 0; i < nitems(metrics_store_defs); i++)
		metrics_json_u64(&j, metrics_store_defs[i].name,
		    METRICS_FIELD(&c->store, &metrics_store_defs[i]));
	metrics_json_u64(&j, "blobs", nblobs);
	metrics_json_u64(&j, "bytes", nbytes);
	metrics_json_close(&j);
	metrics_json_close(&j);
	evbuffer_add(j.b, "\n", 2); /* and the NUL */
	out = xstrdup((const char *)evbuffer_pullup(j.b, -1));
	evbuffer_free(j.b);
	return out;
}

void
metrics_coalesced(struct server *srv)
{
	srv->ctr.coalesced++;
}

void
metrics_digest_mismatch(struct server *srv)
{
	srv->ctr.digest_mismatches++;
}

void
metrics_tier_fill(struct server *srv, int from_store)
{
	srv->ctr.tier_fills[from_store ? 0 : 1]++;
}

void
metrics_upstream_result(
    struct server *srv, enum upstream_result res, long status)
{
	if (res != UPSTREAM_OK || status >= 500 || status == 429)
		srv->ctr.upstream_errors++;
}

void
metrics_add(struct server *srv, metrics_fn fn, void *arg)
{
	if (srv->nmetrics_extra == nitems(srv->metrics_extra))
		fatal("too many metrics writers");
	srv->metrics_extra[srv->nmetrics_extra].fn = fn;
	srv->metrics_extra[srv->nmetrics_extra++].arg = arg;
}
