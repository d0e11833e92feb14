/*
 * registry/evict.c: the store's budget in the daemon.  A check (before a
 * fill, after a commit, on a timer, after ENOSPC) compares what the store
 * holds with max_bytes and the free-space floor; crossing either plans an
 * eviction on a worker (one read-only walk of the index, ordered by
 * storage/lru.c) and carries it out on the loop a batch per pass: partial
 * files first, then least recently used unpinned blobs and manifests, each
 * re-checked (still unpinned, not used since, not in flight, not being
 * sent) right before its index entry goes; files are unlinked on a worker.
 * The admin API's gc and verify run here too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "../common/common.h"
#include "internal.h"

#define EVICT_BATCH 32		      /* index deletions per loop pass */
#define EVICT_TICK_S 10		      /* periodic check */
#define EVICT_NOSPACE_MIN (64u << 20) /* after ENOSPC of unknown size */
#define EVICT_NOSPACE_SLACK (1u << 20)

enum evict_state {
	EVICT_IDLE,
	EVICT_PLANNING, /* the walk runs on a worker */
	EVICT_RUNNING,	/* batches on the loop */
};

struct evict {
	struct server *srv;
	struct lru_budget budget;
	enum evict_state state;
	struct event *pass_ev;
	struct event *tick_ev;
	struct lru_item *items; /* the current plan */
	size_t nitems, next;
	uint64_t need;	  /* what the check that started it found */
	int force;	  /* gc: down to the low mark even if not crossed */
	int all_partials; /* gc, ENOSPC: every idle partial goes */
	int dry_run;
	uint64_t freed; /* this run */
	uint64_t extra; /* ENOSPC: at least this much */
	struct req *gc; /* waiting for this run's result */
	int gc_pending; /* a gc asked while another run was going */
	int gc_pending_dry;
	struct req *gc_next;
	uint64_t pinned_bytes; /* from the last walk */
	int pins_over;
	uint64_t evictions, evicted_bytes, nospace;
	int64_t idle_until_ms; /* a run that freed nothing: wait for the tick */
	struct req *verify;    /* one verify at a time */
	int verify_repair;
};

static int
evict_busy(struct evict *e, const struct digest *d)
{
	/* a fill holds its digest as a reader while it is in flight */
	return readers_busy(e->srv, d);
}

/* Usage -------------------------------------------------------------------- */

static uint64_t
evict_partial_bytes(struct evict *e, struct blobstore_partial **out, size_t *n)
{
	struct blobstore_partial *p = NULL;
	uint64_t sum = 0;
	size_t i, np = 0;

	if (blobstore_partials(e->srv->store, &p, &np) == -1)
		np = 0;
	for (i = 0; i < np; i++)
		sum += p[i].size;
	if (out != NULL) {
		*out = p;
		*n = np;
	} else
		free(p);
	return sum;
}

static void
evict_usage(struct evict *e, struct lru_usage *u, uint64_t partial_bytes)
{
	memset(u, 0, sizeof *u);
	u->used = db_store_bytes(e->srv->db) + partial_bytes;
	if (blobstore_statfs(e->srv->store, &u->fs_total, &u->fs_avail) == -1)
		u->fs_total = u->fs_avail = 0;
}

/* Partial files of failed fills, oldest first, right now: cheap and they
 * are what a full disk needs first.  Returns the bytes removed. */
static uint64_t
evict_partials_now(struct evict *e, uint64_t need, int all)
{
	struct blobstore_partial *p = NULL;
	struct lru_item *it;
	uint64_t freed = 0;
	size_t i, n = 0;

	evict_partial_bytes(e, &p, &n);
	it = xcalloc(n + 1, sizeof *it);
	for (i = 0; i < n; i++) {
		it[i].kind = LRU_PARTIAL;
		it[i].digest = p[i].digest;
		it[i].size = p[i].size;
		it[i].last_access = p[i].mtime;
		it[i].busy = readers_busy(e->srv, &p[i].digest);
	}
	lru_sort(it, n);
	lru_plan(it, n, need, all);
	for (i = 0; i < n; i++) {
		if (!it[i].chosen)
			continue;
		if (blobstore_partial_remove(e->srv->store, &it[i].digest) ==
		    -1)
			continue;
		freed += it[i].size;
		e->evictions++;
		e->evicted_bytes += it[i].size;
	}
	if (freed > 0)
		log_info("removed partial files of failed fills: %" PRIu64
			 " bytes",
		    freed);
	free(it);
	free(p);
	return freed;
}

/* Planning on a worker ----------------------------------------------------- */

struct evict_job {
	struct evict *e;
	struct lru_item *items;
	size_t n;
	uint64_t pinned_bytes;
};

static void
evict_plan_work(void *arg)
{
	struct evict_job *j = arg;

	if (lru_collect(j->e->srv->store, j->e->srv->db, &j->items, &j->n,
		&j->pinned_bytes) == -1)
		j->n = 0;
}

static void evict_gc_reply(struct evict *);
static void evict_run_end(struct evict *);

static void
evict_plan_done(void *arg)
{
	struct evict_job *j = arg;
	struct evict *e = j->e;
	struct lru_usage u;
	uint64_t need, partial = 0, chosen, floor;
	size_t i;

	free(e->items);
	e->items = j->items;
	e->nitems = j->n;
	e->next = 0;
	e->pinned_bytes = j->pinned_bytes;
	free(j);
	for (i = 0; i < e->nitems; i++) {
		if (e->items[i].kind == LRU_PARTIAL)
			partial += e->items[i].size;
		e->items[i].busy = evict_busy(e, &e->items[i].digest);
	}
	evict_usage(e, &u, partial);
	/*
	 * A check's need stands: by now the fill that asked has written part
	 * of its bytes, which the usage would count twice.  gc asks for the
	 * low mark as things are now.
	 */
	need = e->force ? lru_need(&e->budget, &u, 0, 1) : e->need;
	if (e->extra > need)
		need = e->extra;
	chosen = lru_plan(e->items, e->nitems, need, e->all_partials);
	/* pins alone over the budget: say so once, keep every pin */
	floor = lru_floor(&e->budget, u.fs_total);
	if ((e->budget.max_bytes > 0 &&
		e->pinned_bytes > e->budget.max_bytes) ||
	    (floor > 0 && chosen < need && e->pinned_bytes > 0 &&
		e->budget.max_bytes == 0)) {
		if (!e->pins_over)
			log_warn(
			    "pinned content (%" PRIu64
			    " bytes) alone exceeds the store budget; keeping every pin and serving on",
			    e->pinned_bytes);
		e->pins_over = 1;
	} else
		e->pins_over = 0;
	if (e->dry_run) {
		evict_gc_reply(e);
		evict_run_end(e);
		return;
	}
	e->state = EVICT_RUNNING;
	event_active(e->pass_ev, 0, 0);
}

static void
evict_start(struct evict *e)
{
	struct evict_job *j;

	if (e->state != EVICT_IDLE || e->srv->draining)
		return;
	e->state = EVICT_PLANNING;
	e->freed = 0;
	/* access times reach LMDB before the walk reads them */
	db_flush(e->srv->db);
	j = xcalloc(1, sizeof *j);
	j->e = e;
	pool_submit(e->srv->pool, evict_plan_work, evict_plan_done, j);
}

/* Carrying it out ---------------------------------------------------------- */

struct evict_unlink {
	struct blobstore *bs;
	struct digest *d;
	size_t n;
};

static void
evict_unlink_work(void *arg)
{
	struct evict_unlink *u = arg;
	char ds[DIGEST_STRLEN];
	size_t i;

	for (i = 0; i < u->n; i++)
		if (blobstore_remove(u->bs, &u->d[i]) == -1 &&
		    errno != ENOENT) {
			digest_format(&u->d[i], ds);
			log_warn("cannot remove evicted blob '%s': %s", ds,
			    strerror(errno));
		}
}

static void
evict_unlink_done(void *arg)
{
	struct evict_unlink *u = arg;

	free(u->d);
	free(u);
}

static void
evict_pass_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evict *e = arg;
	struct evict_unlink *u;
	struct digest *manifests;
	struct db_blob b;
	size_t done = 0, nman = 0;

	(void)fd;
	(void)what;
	if (e->state != EVICT_RUNNING)
		return;
	u = xcalloc(1, sizeof *u);
	u->bs = e->srv->store;
	u->d = xcalloc(EVICT_BATCH, sizeof *u->d);
	manifests = xcalloc(EVICT_BATCH, sizeof *manifests);
	while (e->next < e->nitems && done < EVICT_BATCH) {
		struct lru_item *it = &e->items[e->next++];

		if (!it->chosen || evict_busy(e, &it->digest))
			continue;
		done++;
		if (it->kind == LRU_PARTIAL) {
			if (blobstore_partial_remove(
				e->srv->store, &it->digest) == -1)
				continue;
		} else {
			/* index first: nothing may find it from here on */
			if (db_blob_evict(e->srv->db, &it->digest,
				it->last_access, &b) != 0)
				continue;
			u->d[u->n++] = it->digest;
			if (b.media_type[0] != '\0')
				manifests[nman++] = it->digest;
		}
		it->chosen = 2; /* done */
		e->freed += it->size;
		e->evictions++;
		e->evicted_bytes += it->size;
	}
	if (nman > 0)
		db_tags_drop(e->srv->db, manifests, nman);
	free(manifests);
	if (u->n > 0)
		pool_submit(
		    e->srv->pool, evict_unlink_work, evict_unlink_done, u);
	else
		evict_unlink_done(u);
	if (e->next < e->nitems) {
		event_active(e->pass_ev, 0, 0);
		return;
	}
	if (e->freed > 0)
		log_info("evicted %" PRIu64 " bytes", e->freed);
	if (e->gc != NULL)
		evict_gc_reply(e);
	evict_run_end(e);
}

static void evict_gc_start(struct evict *, struct req *, int dry);

static void
evict_run_end(struct evict *e)
{
	uint64_t freed = e->freed;
	int was_forced = e->force || e->extra > 0 || e->dry_run;

	free(e->items);
	e->items = NULL;
	e->nitems = e->next = 0;
	e->state = EVICT_IDLE;
	e->force = e->all_partials = e->dry_run = 0;
	e->extra = e->need = 0;
	/*
	 * Nothing could go (all pinned or busy): no new walk per fill until
	 * the next tick, or pins over the budget would walk the index on
	 * every commit.
	 */
	if (!was_forced)
		e->idle_until_ms =
		    freed == 0 ? clock_now_ms() + EVICT_TICK_S * 1000 - 500 : 0;
	if (e->gc_next != NULL) {
		struct req *r = e->gc_next;

		e->gc_next = NULL;
		evict_gc_start(e, r, e->gc_pending_dry);
		return;
	}
	/* still over after a run that freed something: another walk */
	if (freed > 0 && !was_forced)
		evict_check(e->srv, 0);
}

/* Checks ------------------------------------------------------------------- */

void
evict_check(struct server *srv, uint64_t incoming)
{
	struct evict *e = srv->evict;
	struct lru_usage u;
	uint64_t need, partial, freed = 0;

	if (e == NULL || !lru_budget_on(&e->budget) || e->state != EVICT_IDLE)
		return;
	partial = evict_partial_bytes(e, NULL, NULL);
	evict_usage(e, &u, partial);
	if ((need = lru_need(&e->budget, &u, incoming, 0)) == 0)
		return;
	/* partial files go at once: a fill may be waiting for the room */
	if (partial > 0 && (freed = evict_partials_now(e, need, 0)) >= need)
		return;
	if (clock_now_ms() < e->idle_until_ms)
		return;
	e->need = need - freed;
	evict_start(e);
}

void
evict_nospace(struct server *srv, uint64_t wanted)
{
	struct evict *e = srv->evict;
	uint64_t total, avail;

	if (e == NULL)
		return;
	e->nospace++;
	log_warn("store is out of space; evicting");
	/* partial files of failed fills first, then only what is missing */
	evict_partials_now(e, UINT64_MAX, 1);
	if (wanted == 0)
		wanted = EVICT_NOSPACE_MIN;
	if (blobstore_statfs(srv->store, &total, &avail) == -1 ||
	    avail >= wanted + EVICT_NOSPACE_SLACK || e->state != EVICT_IDLE)
		return;
	e->extra = wanted + EVICT_NOSPACE_SLACK - avail;
	e->all_partials = 1;
	evict_start(e);
}

int
evict_pins_over(const struct server *srv)
{
	return srv->evict != NULL && srv->evict->pins_over;
}

static void
evict_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evict *e = arg;

	(void)fd;
	(void)what;
	evict_check(e->srv, 0);
}

/* gc through the admin API ------------------------------------------------- */

static void
evict_gc_finish_cb(struct req *r)
{
	struct evict *e = r->srv->evict;

	if (e->gc == r)
		e->gc = NULL;
	if (e->gc_next == r)
		e->gc_next = NULL;
	if (e->verify == r)
		e->verify = NULL;
}

static const char *const evict_kind_names[] = {"partial", "blob", "manifest"};

static void
evict_gc_reply(struct evict *e)
{
	struct req *r = e->gc;
	struct evbuffer *b;
	char ds[DIGEST_STRLEN];
	uint64_t total = 0, n = 0;
	size_t i, len;
	char *s;
	int want = e->dry_run ? 1 : 2;

	if (r == NULL)
		return;
	e->gc = NULL;
	b = evbuffer_new();
	evbuffer_add_printf(
	    b, "{\"dry_run\":%s,\"items\":[", e->dry_run ? "true" : "false");
	for (i = 0; i < e->nitems; i++) {
		const struct lru_item *it = &e->items[i];

		if (it->chosen != want)
			continue;
		digest_format(&it->digest, ds);
		evbuffer_add_printf(b,
		    "%s{\"kind\":\"%s\",\"digest\":\"%s\",\"size\":%" PRIu64
		    ",\"last_access\":%" PRId64 "}",
		    n > 0 ? "," : "", evict_kind_names[it->kind], ds, it->size,
		    it->last_access);
		total += it->size;
		n++;
	}
	evbuffer_add_printf(b,
	    "],\"count\":%" PRIu64 ",\"bytes\":%" PRIu64
	    ",\"store_bytes\":%" PRIu64 ",\"pinned_bytes\":%" PRIu64
	    ",\"pins_over_budget\":%s}",
	    n, total, db_store_bytes(e->srv->db), e->pinned_bytes,
	    e->pins_over ? "true" : "false");
	len = evbuffer_get_length(b);
	s = xmalloc(len + 1);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	r->finish_cb = NULL;
	req_reply_mem(r, 200, "application/json", NULL, s, len);
	free(s);
}

static void
evict_gc_start(struct evict *e, struct req *r, int dry)
{
	if (e->state != EVICT_IDLE) {
		if (e->gc_next != NULL) {
			req_error(
			    r, OCI_ERR_UNAVAILABLE, "a gc is already waiting");
			return;
		}
		e->gc_next = r;
		e->gc_pending_dry = dry;
		r->finish_cb = evict_gc_finish_cb;
		r->state = REQ_WAITING;
		return;
	}
	e->gc = r;
	r->finish_cb = evict_gc_finish_cb;
	r->state = REQ_WAITING;
	e->force = 1;
	e->all_partials = 1;
	e->dry_run = dry;
	evict_start(e);
}

static void
evict_admin_gc(struct req *r, void *arg)
{
	evict_gc_start(arg, r, r->method == REQ_GET);
}

/* verify through the admin API: the scan on a worker, repairs on the loop */

struct evict_verify {
	struct evict *e;
	struct verify_report rep;
	int rc;
};

static void
evict_verify_work(void *arg)
{
	struct evict_verify *v = arg;

	v->rc = verify_scan(
	    v->e->srv->store, v->e->srv->db, VERIFY_REHASH, &v->rep);
}

/* Things that changed while the worker looked are not problems. */
static void
evict_verify_recheck(struct evict *e, struct verify_report *rep)
{
	struct db_blob b;
	size_t i;

	for (i = 0; i < rep->n; i++) {
		struct verify_problem *p = &rep->p[i];
		int indexed;

		switch (p->kind) {
		case VERIFY_ORPHAN:
			indexed = db_blob_get(e->srv->db, &p->digest, &b) == 0;
			p->ignore = indexed ||
			    readers_busy(e->srv, &p->digest) ||
			    access(p->path, F_OK) == -1;
			break;
		case VERIFY_MISSING:
		case VERIFY_CORRUPT:
			p->ignore =
			    db_blob_get(e->srv->db, &p->digest, &b) != 0;
			break;
		case VERIFY_TEMP:
		case VERIFY_STRAY:
			p->ignore = access(p->path, F_OK) == -1;
			break;
		case VERIFY_PINS:
			break;
		}
	}
}

static void
evict_verify_done(void *arg)
{
	struct evict_verify *v = arg;
	struct evict *e = v->e;
	struct req *r = e->verify;
	struct evbuffer *b;
	char ds[DIGEST_STRLEN];
	size_t i, len, n = 0;
	int failed = 0;
	char *s;

	e->verify = NULL;
	if (r != NULL && v->rc == -1) {
		r->finish_cb = NULL;
		req_error(r, OCI_ERR_INTERNAL, "cannot read the store");
	} else if (r != NULL) {
		evict_verify_recheck(e, &v->rep);
		if (e->verify_repair)
			failed = verify_repair(
			    e->srv->store, e->srv->db, 0, &v->rep);
		b = evbuffer_new();
		evbuffer_add_printf(b, "{\"repair\":%s,\"problems\":[",
		    e->verify_repair ? "true" : "false");
		for (i = 0; i < v->rep.n; i++) {
			const struct verify_problem *p = &v->rep.p[i];

			if (p->ignore)
				continue;
			evbuffer_add_printf(b, "%s{\"kind\":\"%s\"",
			    n++ > 0 ? "," : "", verify_kind_name(p->kind));
			if (p->kind != VERIFY_STRAY && p->kind != VERIFY_TEMP) {
				digest_format(&p->digest, ds);
				evbuffer_add_printf(
				    b, ",\"digest\":\"%s\"", ds);
			}
			if (p->kind == VERIFY_PINS)
				evbuffer_add_printf(b,
				    ",\"pins\":%" PRIu32 ",\"want\":%" PRIu32,
				    p->have, p->want);
			evbuffer_add_printf(b, ",\"repaired\":%s}",
			    p->repaired ? "true" : "false");
		}
		evbuffer_add_printf(b,
		    "],\"count\":%zu,\"unrepaired\":%d,\"blobs\":%" PRIu64
		    ",\"files\":%" PRIu64 ",\"hashed_bytes\":%" PRIu64 "}",
		    n, e->verify_repair ? failed : (int)n, v->rep.blobs,
		    v->rep.files, v->rep.hashed_bytes);
		len = evbuffer_get_length(b);
		s = xmalloc(len + 1);
		evbuffer_remove(b, s, len);
		s[len] = '\0';
		evbuffer_free(b);
		r->finish_cb = NULL;
		req_reply_mem(r, 200, "application/json", NULL, s, len);
		free(s);
	}
	verify_report_release(&v->rep);
	free(v);
}

static void
evict_admin_verify(struct req *r, void *arg)
{
	struct evict *e = arg;
	struct evict_verify *v;

	if (e->verify != NULL) {
		req_error(
		    r, OCI_ERR_UNAVAILABLE, "a verify is already running");
		return;
	}
	e->verify = r;
	e->verify_repair = r->method == REQ_POST;
	r->finish_cb = evict_gc_finish_cb;
	r->state = REQ_WAITING;
	v = xcalloc(1, sizeof *v);
	v->e = e;
	pool_submit(e->srv->pool, evict_verify_work, evict_verify_done, v);
}

/* Metrics ------------------------------------------------------------------ */

static void
evict_metrics(struct evbuffer *b, void *arg)
{
	struct evict *e = arg;
	uint64_t total = 0, avail = 0;

	blobstore_statfs(e->srv->store, &total, &avail);
	evbuffer_add_printf(b,
	    "# HELP ccprewarm_evictions_total Blobs, manifests and partial "
	    "files evicted to keep the store within its budget\n"
	    "# TYPE ccprewarm_evictions_total counter\n"
	    "ccprewarm_evictions_total %" PRIu64 "\n"
	    "# HELP ccprewarm_evicted_bytes_total Bytes evicted\n"
	    "# TYPE ccprewarm_evicted_bytes_total counter\n"
	    "ccprewarm_evicted_bytes_total %" PRIu64 "\n"
	    "# HELP ccprewarm_store_budget_bytes The store's max_bytes "
	    "(0: no size limit)\n"
	    "# TYPE ccprewarm_store_budget_bytes gauge\n"
	    "ccprewarm_store_budget_bytes %" PRIu64 "\n"
	    "# HELP ccprewarm_store_free_bytes Free bytes on the store's "
	    "file system\n"
	    "# TYPE ccprewarm_store_free_bytes gauge\n"
	    "ccprewarm_store_free_bytes %" PRIu64 "\n"
	    "# HELP ccprewarm_store_pins_over_budget 1 while pinned content "
	    "alone exceeds the budget\n"
	    "# TYPE ccprewarm_store_pins_over_budget gauge\n"
	    "ccprewarm_store_pins_over_budget %d\n"
	    "# HELP ccprewarm_fill_nospace_total Fills that failed for lack "
	    "of disk space\n"
	    "# TYPE ccprewarm_fill_nospace_total counter\n"
	    "ccprewarm_fill_nospace_total %" PRIu64 "\n",
	    e->evictions, e->evicted_bytes, e->budget.max_bytes, avail,
	    e->pins_over, e->nospace);
}

/* Lifecycle ---------------------------------------------------------------- */

struct evict *
evict_new(struct server *srv)
{
	const struct server_opts *o = srv->opts;
	struct evict *e;

	e = xcalloc(1, sizeof *e);
	e->srv = srv;
	e->budget.max_bytes = o->max_bytes;
	e->budget.min_free_bytes = o->min_free_bytes;
	e->budget.min_free_percent = (unsigned)o->min_free_percent;
	e->budget.low_water_percent = (unsigned)o->low_water_percent;
	e->pass_ev = event_new(srv->base, -1, 0, evict_pass_cb, e);
	e->tick_ev = event_new(srv->base, -1, EV_PERSIST, evict_tick_cb, e);
	if (e->pass_ev == NULL || e->tick_ev == NULL)
		fatal("out of memory creating eviction events");
	event_add(e->tick_ev, &(struct timeval){EVICT_TICK_S, 0});
	admin_add(srv, "gc", REQ_GET, evict_admin_gc, e);
	admin_add(srv, "gc", REQ_POST, evict_admin_gc, e);
	admin_add(srv, "verify", REQ_GET, evict_admin_verify, e);
	admin_add(srv, "verify", REQ_POST, evict_admin_verify, e);
	metrics_add(srv, evict_metrics, e);
	return e;
}

void
evict_free(struct evict *e)
{
	if (e == NULL)
		return;
	if (e->pass_ev != NULL)
		event_free(e->pass_ev);
	if (e->tick_ev != NULL)
		event_free(e->tick_ev);
	free(e->items);
	free(e);
}
