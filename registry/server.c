/*
 * registry/server.c: the one top-level context.  Opens the store, the
 * index and the upstreams, starts the HTTP server, flushes access times on
 * a timer, and shuts down by draining: stop accepting, let live requests
 * finish until a deadline, then cut what is left and free everything.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/http.h>

#include "../common/common.h"
#include "internal.h"

#define SERVER_FLUSH_S 5
#define SERVER_POOL_THREADS 2

static void
server_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	metrics_flush(srv);
	db_flush(srv->db);
}

static int
server_mkdir(const char *path)
{
	if (mkdir(path, 0755) == -1 && errno != EEXIST) {
		log_error("cannot create data directory '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Crash safety: the cheap half of verify before serving.  An index entry
 * whose file is gone (or has the wrong size) is dropped with its tags; a
 * file the index does not name was never committed (a kill between rename
 * and index) and is removed; temp leftovers go; pin counts are recounted.
 * No re-hash: a file is only ever renamed into place after it verified.
 */
static int
server_reconcile(struct server *srv)
{
	struct verify_report rep;
	size_t n;

	if (verify_scan(srv->store, srv->db, 0, &rep) == -1)
		return -1;
	if ((n = verify_count(&rep)) > 0) {
		int failed = verify_repair(
		    srv->store, srv->db, VERIFY_DELETE_ORPHANS, &rep);

		log_info(
		    "reconciled the store with its index: %zu fixed, %d not",
		    n - (size_t)failed, failed);
	}
	verify_report_release(&rep);
	return 0;
}

struct server *
server_new(struct event_base *base, const struct server_opts *o)
{
	struct upstream_opts uo;
	char *ua;
	struct server *srv;
	char *index = NULL;
	const struct server_upstream_conf *c;
	size_t i;

	srv = xcalloc(1, sizeof *srv);
	srv->base = base;
	srv->opts = o;
	TAILQ_INIT(&srv->fills);
	{
		pthread_mutexattr_t a;

		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&srv->hook_mu, &a);
		pthread_mutexattr_destroy(&a);
	}
	if (server_mkdir(o->data_dir) == -1)
		goto fail;
	if ((srv->store = blobstore_open(o->data_dir)) == NULL)
		goto fail;
	xasprintf(&index, "%s/index", o->data_dir);
	if (server_mkdir(index) == -1 || (srv->db = db_open(index)) == NULL)
		goto fail;
	if (o->index_map_bytes > 0 &&
	    db_set_map_size(srv->db, (uint64_t)o->index_map_bytes) == -1)
		goto fail;
	if (metrics_open(srv) == -1)
		goto fail;
	memset(&uo, 0, sizeof uo);
	uo.connect_timeout_ms = (long)o->connect_timeout_ms;
	uo.response_timeout_ms = (long)o->response_timeout_ms;
	uo.low_speed_time_s = o->stall_s > 0 ? (long)o->stall_s : 30;
	xasprintf(&ua, "ccprewarm/%s", version_string());
	uo.user_agent = ua;
	srv->uc = upstream_client_new(base, &uo); /* copies ua */
	free(ua);
	if (srv->uc == NULL)
		goto fail;
	srv->pool = pool_new(base, SERVER_POOL_THREADS);
	if (server_reconcile(srv) == -1)
		goto fail;
	srv->readers = readers_new();
	srv->evict = evict_new(srv);
	for (i = 0; i < o->nupstreams; i++) {
		c = &o->upstreams[i];
		srv->upstreams[i] = upstream_new(
		    srv->uc, c->name, c->url, c->username, c->password);
		if (srv->upstreams[i] == NULL)
			goto fail;
		srv->nupstreams++;
		if (c->ca_file != NULL)
			upstream_set_ca_file(srv->upstreams[i], c->ca_file);
	}
	if (o->access_log != NULL && o->access_log[0] != '\0' &&
	    (srv->alog = alog_open(base, o->access_log,
		 (size_t)o->access_log_buffer_bytes, o->access_log_flush_ms)) ==
		NULL)
		goto fail;
	srv->mcache = mcache_new((size_t)o->manifest_cache_bytes);
	if (shared_open(srv) == -1)
		goto fail;
	admin_add(srv, "stats", REQ_GET, admin_stats, NULL);
	if (loop_start(srv) == -1)
		goto fail;
	srv->flush_ev = event_new(base, -1, EV_PERSIST, server_flush_cb, srv);
	if (srv->flush_ev == NULL)
		fatal("out of memory creating the flush timer");
	event_add(srv->flush_ev, &(struct timeval){SERVER_FLUSH_S, 0});
	free(index);
	return srv;
fail:
	free(index);
	server_free(srv);
	return NULL;
}

unsigned short
server_port(const struct server *srv)
{
	return srv->nloops > 0 ? http_port(srv->loops[0]) : 0;
}

struct event_base *
server_base(struct server *srv)
{
	return srv->base;
}

struct db *
server_db(struct server *srv)
{
	return srv->db;
}

struct blobstore *
server_store(struct server *srv)
{
	return srv->store;
}

const struct server_opts *
server_opts(const struct server *srv)
{
	return srv->opts;
}

struct upstream *
server_upstream(struct server *srv, const char *host)
{
	return route_upstream_find(srv->upstreams, srv->nupstreams, host);
}

static void
server_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (loop_idle(srv) || clock_now_ms() >= srv->drain_deadline_ms) {
		if (!loop_idle(srv))
			log_warn(
			    "drain deadline passed; cutting live requests");
		event_base_loopexit(srv->base, NULL);
		return;
	}
	event_add(srv->drain_ev, &(struct timeval){0, 100 * 1000});
}

void
server_shutdown(struct server *srv)
{
	if (srv->draining)
		return;
	log_info("shutting down: draining live requests");
	__atomic_store_n(&srv->draining, 1, __ATOMIC_RELEASE);
	loop_stop_accepting(srv);
	alog_flush(srv->alog);
	srv->drain_deadline_ms =
	    clock_now_ms() + srv->opts->drain_timeout_s * 1000;
	srv->drain_ev = evtimer_new(srv->base, server_drain_cb, srv);
	if (srv->drain_ev == NULL)
		fatal("out of memory creating the drain timer");
	event_active(srv->drain_ev, EV_TIMEOUT, 0);
}

void
server_free(struct server *srv)
{
	struct req *r;
	size_t i;

	if (srv == NULL)
		return;
	/* nothing new goes to the pool from here */
	__atomic_store_n(&srv->draining, 1, __ATOMIC_RELEASE);
	/* The serving loops stop; their requests are loop 0's to end. */
	loop_join(srv);
	/* Blobs being stored finish first: their fills become DONE. */
	pool_free(srv->pool);
	srv->pool = NULL;
	fill_abort_all(srv);
	while (
	    srv->nloops > 0 && (r = TAILQ_FIRST(&srv->loops[0]->reqs)) != NULL)
		req_abort(r, "shutting down");
	loop_cut_all(srv); /* every evhttp and connection */
	evict_free(srv->evict);
	srv->evict = NULL;
	readers_unref(srv->readers); /* after evhttp: its readers call back */
	srv->readers = NULL;
	for (i = 0; i < srv->nupstreams; i++)
		upstream_free(srv->upstreams[i]);
	shared_close(srv);
	upstream_client_free(srv->uc);
	if (srv->flush_ev != NULL)
		event_free(srv->flush_ev);
	if (srv->drain_ev != NULL)
		event_free(srv->drain_ev);
	if (srv->db != NULL)
		metrics_flush(srv);
	loop_free_all(srv);
	db_free(srv->db);
	blobstore_free(srv->store);
	mcache_free(srv->mcache);
	alog_close(srv->alog); /* last: the lines of the drain above */
	pthread_mutex_destroy(&srv->hook_mu);
	free(srv);
}
