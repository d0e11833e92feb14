/*
 * registry/metrics.c: GET /metrics in the Prometheus text exposition
 * format.  Counters here are process-lifetime unless named otherwise.
 */
#include <inttypes.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "registry.h"

static void
metrics_counter(struct evbuffer *b, const char *name, const char *help,
    const char *labels, uint64_t v, int header)
{
	if (header)
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name,
		    help, name);
	evbuffer_add_printf(b, "%s%s %" PRIu64 "\n", name, labels, v);
}

void
metrics_handle(struct req *r)
{
	const struct server_counters *c = &r->srv->ctr;
	struct evbuffer *b = evbuffer_new();
	uint64_t nblobs = 0, nbytes = 0;
	size_t inflight;

	metrics_counter(b, "ccprewarm_cache_hits_total",
	    "Requests served from the store.", "{kind=\"blob\"}", c->hits[0], 1);
	metrics_counter(b, "ccprewarm_cache_hits_total", NULL,
	    "{kind=\"manifest\"}", c->hits[1], 0);
	metrics_counter(b, "ccprewarm_cache_misses_total",
	    "Requests that needed upstream.", "{kind=\"blob\"}", c->misses[0], 1);
	metrics_counter(b, "ccprewarm_cache_misses_total", NULL,
	    "{kind=\"manifest\"}", c->misses[1], 0);
	metrics_counter(b, "ccprewarm_coalesced_requests_total",
	    "Requests that joined an in-flight fetch.", "", c->coalesced, 1);
	metrics_counter(b, "ccprewarm_upstream_bytes_total",
	    "Body bytes received from upstreams.", "", c->upstream_bytes, 1);
	metrics_counter(b, "ccprewarm_digest_mismatches_total",
	    "Upstream bodies that did not match their digest.", "",
	    c->digest_mismatches, 1);
	inflight = fill_count(r->srv);
	evbuffer_add_printf(b, "# HELP ccprewarm_inflight_fetches Upstream "
	    "fetches in progress.\n# TYPE ccprewarm_inflight_fetches gauge\n"
	    "ccprewarm_inflight_fetches %zu\n", inflight);
	if (db_blob_totals(r->srv->db, &nblobs, &nbytes) == 0)
		evbuffer_add_printf(b, "# HELP ccprewarm_store_blobs Blobs and "
		    "manifests in the store.\n# TYPE ccprewarm_store_blobs gauge\n"
		    "ccprewarm_store_blobs %" PRIu64 "\n# HELP "
		    "ccprewarm_store_bytes Bytes in the store.\n# TYPE "
		    "ccprewarm_store_bytes gauge\nccprewarm_store_bytes %" PRIu64
		    "\n", nblobs, nbytes);
	req_reply_mem(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
	    evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}
