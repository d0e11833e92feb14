/*
 * prewarm/run.c: the daemon side of `ccprewarm run`.  While a run is open the
 * request hook copies what each manifest and blob request did (route,
 * X-Cache, bytes, times); at `run end` the requests are attributed to
 * images through the manifests they fetched and the record is written to
 * LMDB, keeping the newest runs.  Also the admin commands and the metrics.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/queue.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "prewarm.h"

/* Requests kept per open run; beyond this they are counted as dropped. */
#define RUN_REQS_MAX 200000
#define RUN_OPEN_MAX 16

enum run_req_kind { RUN_REQ_TAG, RUN_REQ_MANIFEST, RUN_REQ_BLOB };

/* One request as the hook saw it. */
struct run_req {
	enum run_req_kind kind;
	enum req_cache cache;
	int status;
	int64_t start_ms, end_ms; /* wall clock */
	uint64_t sent;
	int64_t wait_ms;
	char *name;	      /* "host/repo", owned */
	char *tag;	      /* owned; NULL unless by tag */
	struct digest digest; /* asked for, or (by tag) the one served */
	int have_digest;
};

struct run_open {
	TAILQ_ENTRY(run_open) entry;
	struct run_rec rec; /* name, client, labels, begun_at, overlapped */
	struct run_req *reqs;
	size_t nreqs, cap;
};

struct runs {
	struct server *srv;
	int64_t keep;
	TAILQ_HEAD(, run_open) open;
	size_t nopen;
	struct run_rec last; /* the last finished run, for /metrics */
	int have_last;
};

/* An image while requests are attributed (run_end only). */
struct run_img {
	char ref[REF_STRLEN];
	const char *name;	/* borrowed from a request */
	int64_t first_ms;	/* its first manifest request */
	struct digest *closure; /* root manifest, children, configs, layers */
	size_t nclosure;
	struct run_fig fig;
};

static int64_t
run_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The request hook ------------------------------------------------------ */

/* What each X-Cache value adds: which counter, and where the bytes came from.
 */
static const struct run_cache_def {
	size_t count;	 /* offset in struct run_fig */
	size_t bytes;	 /* offset in struct run_fig */
	int waits;	 /* the whole request waited on upstream */
	int upstream_ms; /* a revalidation: its upstream round trip */
} run_cache_defs[] = {
    [REQ_CACHE_NONE] = {offsetof(struct run_fig, misses),
	offsetof(struct run_fig, upstream_bytes), 1, 0},
    [REQ_CACHE_HIT] = {offsetof(struct run_fig, hits),
	offsetof(struct run_fig, cache_bytes), 0, 0},
    [REQ_CACHE_MISS] = {offsetof(struct run_fig, misses),
	offsetof(struct run_fig, upstream_bytes), 1, 0},
    [REQ_CACHE_COALESCED] = {offsetof(struct run_fig, coalesced),
	offsetof(struct run_fig, upstream_bytes), 1, 0},
    [REQ_CACHE_REVALIDATED] = {offsetof(struct run_fig, hits),
	offsetof(struct run_fig, cache_bytes), 0, 1},
    [REQ_CACHE_STALE] = {offsetof(struct run_fig, hits),
	offsetof(struct run_fig, cache_bytes), 0, 1},
};

#define RUN_U64(f, off) (*(uint64_t *)(void *)((char *)(f) + (off)))

static void
run_fig_add_req(struct run_fig *f, const struct run_req *q)
{
	const struct run_cache_def *c = &run_cache_defs[q->cache];

	f->requests++;
	if (f->first_ms == 0 || q->start_ms < f->first_ms)
		f->first_ms = q->start_ms;
	if (q->end_ms > f->last_ms)
		f->last_ms = q->end_ms;
	f->upstream_wait_ms += q->wait_ms;
	if (q->status == 0 || q->status >= 400) {
		f->errors++;
		return;
	}
	RUN_U64(f, c->count)++;
	RUN_U64(f, c->bytes) += q->sent;
}

static void
run_req_cb(void *arg, const struct req_summary *r)
{
	struct runs *rs = arg;
	const struct run_cache_def *c;
	struct run_open *o;
	struct run_req q, *p;
	const char *host;
	int64_t now = run_wall_ms(), dur;

	if (TAILQ_EMPTY(&rs->open) || !r->routed ||
	    (r->route->kind != ROUTE_MANIFEST && r->route->kind != ROUTE_BLOB))
		return;
	memset(&q, 0, sizeof q);
	q.cache = r->cache < nitems(run_cache_defs) ? r->cache : REQ_CACHE_MISS;
	c = &run_cache_defs[q.cache];
	q.kind = r->route->kind == ROUTE_BLOB ? RUN_REQ_BLOB
	    : r->route->by_digest	      ? RUN_REQ_MANIFEST
					      : RUN_REQ_TAG;
	q.status = r->status;
	dur = clock_now_ms() - r->start_ms;
	q.end_ms = now;
	q.start_ms = now - (dur > 0 ? dur : 0);
	q.sent = r->sent;
	q.wait_ms = c->waits			   ? dur
	    : c->upstream_ms && r->upstream_ms > 0 ? r->upstream_ms
						   : 0;
	if (r->route->by_digest) {
		q.digest = r->route->digest;
		q.have_digest = 1;
	} else if (r->served != NULL) {
		q.digest = *r->served;
		q.have_digest = 1;
	}
	host = r->up != NULL ? upstream_name(r->up) : r->route->host;
	TAILQ_FOREACH(o, &rs->open, entry) {
		if (o->rec.client[0] != '\0' &&
		    strcmp(o->rec.client, r->peer) != 0)
			continue;
		if (o->nreqs == RUN_REQS_MAX) {
			o->rec.dropped++;
			continue;
		}
		if (o->nreqs == o->cap) {
			o->cap = o->cap == 0 ? 256 : o->cap * 2;
			o->reqs =
			    xreallocarray(o->reqs, o->cap, sizeof *o->reqs);
		}
		p = &o->reqs[o->nreqs++];
		*p = q;
		xasprintf(&p->name, "%s/%s", host, r->route->name);
		p->tag = q.kind == RUN_REQ_TAG ? xstrdup(r->route->tag) : NULL;
	}
}

/* Attribution at the end ------------------------------------------------ */

static int
run_img_has(const struct run_img *im, const struct digest *d)
{
	size_t i;

	for (i = 0; i < im->nclosure; i++)
		if (digest_equal(&im->closure[i], d))
			return 1;
	return 0;
}

static void
run_img_add(struct run_img *im, const struct digest *d)
{
	if (run_img_has(im, d))
		return;
	im->closure =
	    xreallocarray(im->closure, im->nclosure + 1, sizeof *im->closure);
	im->closure[im->nclosure++] = *d;
}

/*
 * Reads a stored manifest and parses it; 0, or -1 if it is not stored (an
 * index's child for another platform) or does not parse.  Manifests are
 * small and this runs once per image at `run end`.
 */
static int
run_manifest_read(
    struct runs *rs, const struct digest *d, struct oci_manifest *m)
{
	const char *why;
	char *buf = NULL;
	off_t size;
	ssize_t n;
	int fd, rc = -1;

	if ((fd = blobstore_open_blob(server_store(rs->srv), d, &size)) == -1)
		return -1;
	if (size <= 0 || size > OCI_MANIFEST_MAX)
		goto out;
	buf = xmalloc((size_t)size);
	if ((n = pread(fd, buf, (size_t)size, 0)) != (ssize_t)size)
		goto out;
	if (oci_manifest_parse(buf, (size_t)size, m, &why) == -1)
		goto out;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

/* The image's closure: the manifest, an index's children, configs, layers. */
static void
run_img_resolve(struct runs *rs, struct run_img *im, const struct digest *root)
{
	struct oci_manifest m, c;
	size_t i, j;

	run_img_add(im, root);
	if (run_manifest_read(rs, root, &m) == -1)
		return;
	if (m.kind == OCI_KIND_IMAGE) {
		run_img_add(im, &m.config.digest);
		for (i = 0; i < m.ndescs; i++)
			run_img_add(im, &m.descs[i].digest);
	} else {
		for (i = 0; i < m.ndescs; i++) {
			run_img_add(im, &m.descs[i].digest);
			if (run_manifest_read(rs, &m.descs[i].digest, &c) == -1)
				continue;
			if (c.kind == OCI_KIND_IMAGE) {
				run_img_add(im, &c.config.digest);
				for (j = 0; j < c.ndescs; j++)
					run_img_add(im, &c.descs[j].digest);
			}
			oci_manifest_release(&c);
		}
	}
	oci_manifest_release(&m);
}

static struct run_img *
run_img_find(struct run_img *imgs, size_t n, const char *ref)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(imgs[i].ref, ref) == 0)
			return &imgs[i];
	return NULL;
}

/*
 * The image a request by digest belongs to: one of its repository whose
 * closure has the digest; of several, the one whose pull started last
 * before the request did (the image being pulled then).
 */
static struct run_img *
run_img_claim(struct run_img *imgs, size_t n, const struct run_req *q)
{
	struct run_img *best = NULL, *any = NULL;
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(imgs[i].name, q->name) != 0 ||
		    !run_img_has(&imgs[i], &q->digest))
			continue;
		if (any == NULL)
			any = &imgs[i];
		if (imgs[i].first_ms <= q->start_ms &&
		    (best == NULL || imgs[i].first_ms > best->first_ms))
			best = &imgs[i];
	}
	return best != NULL ? best : any;
}

static struct run_img *
run_img_new(
    struct run_img **imgs, size_t *n, const char *ref, const struct run_req *q)
{
	struct run_img *im;

	*imgs = xreallocarray(*imgs, *n + 1, sizeof **imgs);
	im = &(*imgs)[(*n)++];
	memset(im, 0, sizeof *im);
	xstrlcpy(im->ref, ref, sizeof im->ref);
	im->name = q->name;
	im->first_ms = q->start_ms;
	return im;
}

static int
run_img_cmp(const void *a, const void *b)
{
	const struct run_img *x = a, *y = b;

	return x->first_ms < y->first_ms ? -1 : x->first_ms > y->first_ms;
}

/* Fills o->rec's totals and images from the requests. */
static void
run_attribute(struct runs *rs, struct run_open *o)
{
	struct run_img *imgs = NULL, *im;
	char ref[REF_STRLEN], ds[DIGEST_STRLEN];
	const struct run_req *q;
	size_t nimgs = 0, i, k;

	/* Images asked for by tag, then by digest alone. */
	for (i = 0; i < o->nreqs; i++) {
		q = &o->reqs[i];
		if (q->kind != RUN_REQ_TAG)
			continue;
		snprintf(ref, sizeof ref, "%s:%s", q->name, q->tag);
		if ((im = run_img_find(imgs, nimgs, ref)) == NULL)
			im = run_img_new(&imgs, &nimgs, ref, q);
		else if (q->start_ms < im->first_ms)
			im->first_ms = q->start_ms; /* kept in end order */
		if (q->have_digest && !run_img_has(im, &q->digest))
			run_img_resolve(rs, im, &q->digest);
	}
	for (i = 0; i < o->nreqs; i++) {
		q = &o->reqs[i];
		if (q->kind != RUN_REQ_MANIFEST || q->status == 0 ||
		    q->status >= 400 || run_img_claim(imgs, nimgs, q) != NULL)
			continue;
		digest_format(&q->digest, ds);
		snprintf(ref, sizeof ref, "%s@%s", q->name, ds);
		im = run_img_new(&imgs, &nimgs, ref, q);
		run_img_resolve(rs, im, &q->digest);
	}
	for (i = 0; i < o->nreqs; i++) {
		q = &o->reqs[i];
		run_fig_add_req(&o->rec.total, q);
		im = NULL;
		if (q->kind == RUN_REQ_TAG) {
			snprintf(ref, sizeof ref, "%s:%s", q->name, q->tag);
			im = run_img_find(imgs, nimgs, ref);
		} else if (q->have_digest)
			im = run_img_claim(imgs, nimgs, q);
		if (im != NULL)
			run_fig_add_req(&im->fig, q);
		else
			o->rec.unattributed++;
	}
	if (nimgs > 1) /* in the order their pulls started */
		qsort(imgs, nimgs, sizeof *imgs, run_img_cmp);
	o->rec.images = xcalloc(nimgs > 0 ? nimgs : 1, sizeof *o->rec.images);
	for (k = 0; k < nimgs; k++) {
		xstrlcpy(o->rec.images[k].ref, imgs[k].ref,
		    sizeof o->rec.images[k].ref);
		o->rec.images[k].fig = imgs[k].fig;
		free(imgs[k].closure);
	}
	o->rec.nimages = nimgs;
	free(imgs);
}

/* Stored runs ------------------------------------------------------------ */

struct run_list {
	struct run_rec *recs;
	size_t n;
};

static void
run_list_cb(void *arg, const char *name, const void *val, size_t len)
{
	struct run_list *l = arg;
	struct run_rec rec;

	if (record_decode(&rec, val, len) == -1) {
		log_warn("run record '%s' does not decode; ignored", name);
		return;
	}
	l->recs = xreallocarray(l->recs, l->n + 1, sizeof *l->recs);
	l->recs[l->n++] = rec;
}

static int
run_list_cmp(const void *a, const void *b)
{
	const struct run_rec *x = a, *y = b;

	/* newest first */
	return x->ended_at < y->ended_at ? 1
	    : x->ended_at > y->ended_at	 ? -1
					 : 0;
}

/* Every stored run, newest first; 0 or -1. */
static int
run_list_load(struct runs *rs, struct run_list *l)
{
	memset(l, 0, sizeof *l);
	if (db_run_list(server_db(rs->srv), run_list_cb, l) == -1)
		return -1;
	if (l->n > 1)
		qsort(l->recs, l->n, sizeof *l->recs, run_list_cmp);
	return 0;
}

static void
run_list_release(struct run_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		record_release(&l->recs[i]);
	free(l->recs);
	l->recs = NULL;
	l->n = 0;
}

/* Keeps the newest rs->keep runs, and the baseline whatever its age. */
static void
run_prune(struct runs *rs)
{
	struct run_list l;
	char base[RUN_NAME_MAX + 1];
	size_t i, kept = 0;

	if (db_run_baseline_get(server_db(rs->srv), base, sizeof base) != 0)
		base[0] = '\0';
	if (run_list_load(rs, &l) == -1)
		return;
	for (i = 0; i < l.n; i++) {
		if (strcmp(l.recs[i].name, base) == 0)
			continue;
		if ((int64_t)++kept > rs->keep &&
		    db_run_del(server_db(rs->srv), l.recs[i].name) == 0)
			log_info("run '%s' removed: only the newest %" PRId64
				 " are kept",
			    l.recs[i].name, rs->keep);
	}
	run_list_release(&l);
}

static void
run_set_last(struct runs *rs, const struct run_rec *rec)
{
	size_t n = rec->nimages;

	record_release(&rs->last);
	rs->last = *rec;
	rs->last.images = xcalloc(n > 0 ? n : 1, sizeof *rec->images);
	memcpy(rs->last.images, rec->images, n * sizeof *rec->images);
	rs->have_last = 1;
}

static void
run_open_free(struct run_open *o)
{
	size_t i;

	for (i = 0; i < o->nreqs; i++) {
		free(o->reqs[i].name);
		free(o->reqs[i].tag);
	}
	free(o->reqs);
	record_release(&o->rec);
	free(o);
}

static struct run_open *
run_open_find(struct runs *rs, const char *name)
{
	struct run_open *o;

	TAILQ_FOREACH(o, &rs->open, entry)
		if (strcmp(o->rec.name, name) == 0)
			return o;
	return NULL;
}

/* Admin commands --------------------------------------------------------- */

static void
run_reply_error(struct req *r, int status, const char *msg)
{
	char *s;

	xasprintf(&s, "{\"error\":\"%s\"}", msg);
	req_reply_mem(r, status, "application/json", NULL, s, strlen(s));
	free(s);
}

static void
run_reply_json(struct req *r, char *json)
{
	req_reply_mem(r, 200, "application/json", NULL, json, strlen(json));
	free(json);
}

/* Appends name to a space-separated list, if there is room. */
static void
run_overlap_add(struct run_rec *rec, const char *name)
{
	size_t n = strlen(rec->overlapped);

	if (n + strlen(name) + 2 > sizeof rec->overlapped)
		return;
	if (n > 0)
		rec->overlapped[n++] = ' ';
	xstrlcpy(rec->overlapped + n, name, sizeof rec->overlapped - n);
}

/*
 * POST run/begin, body lines "name NAME", "client ADDR", "label K=V" (no
 * JSON in the daemon outside the files that own it).
 */
static void
run_admin_begin(struct req *r, void *arg)
{
	struct runs *rs = arg;
	struct run_open *o, *other;
	const char *body, *why;
	char *copy, *line, *save = NULL;
	size_t len;

	if ((body = req_body(r, &len)) == NULL) {
		run_reply_error(r, 400, "run begin needs a body");
		return;
	}
	o = xcalloc(1, sizeof *o);
	copy = xstrdup(body);
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "name ", 5) == 0)
			xstrlcpy(o->rec.name, line + 5, sizeof o->rec.name);
		else if (strncmp(line, "client ", 7) == 0) {
			if (strlen(line + 7) >= sizeof o->rec.client)
				goto bad_client;
			xstrlcpy(o->rec.client, line + 7, sizeof o->rec.client);
		} else if (strncmp(line, "label ", 6) == 0) {
			if (o->rec.nlabels == RUN_LABELS_MAX) {
				why = "too many labels";
				goto bad;
			}
			if (record_label_parse(&o->rec.labels[o->rec.nlabels++],
				line + 6, &why) == -1)
				goto bad;
		} else {
			why = "unknown line in run begin";
			goto bad;
		}
	}
	free(copy);
	if (!record_name_valid(o->rec.name)) {
		run_open_free(o);
		run_reply_error(r, 400,
		    "run name must be 1-128 characters of [A-Za-z0-9_.-]");
		return;
	}
	if (run_open_find(rs, o->rec.name) != NULL) {
		run_open_free(o);
		run_reply_error(r, 409, "a run of that name is already open");
		return;
	}
	if (rs->nopen == RUN_OPEN_MAX) {
		run_open_free(o);
		run_reply_error(r, 409, "too many open runs");
		return;
	}
	o->rec.begun_at = run_wall_ms();
	TAILQ_FOREACH(other, &rs->open, entry) {
		run_overlap_add(&other->rec, o->rec.name);
		run_overlap_add(&o->rec, other->rec.name);
	}
	TAILQ_INSERT_TAIL(&rs->open, o, entry);
	rs->nopen++;
	log_info("run '%s' begun%s%s", o->rec.name,
	    o->rec.client[0] != '\0' ? " for client " : "", o->rec.client);
	run_reply_json(r, record_json(&o->rec, 0));
	return;
bad_client:
	why = "client address too long";
bad:
	free(copy);
	run_open_free(o);
	run_reply_error(r, 400, why);
}

/* POST run/end, body NAME: attribute, store, answer with the record. */
static void
run_admin_end(struct req *r, void *arg)
{
	struct runs *rs = arg;
	struct run_open *o;
	const char *body;
	void *val;
	size_t len;
	char name[RUN_NAME_MAX + 1];

	body = req_body(r, &len);
	xstrlcpy(name, body != NULL ? body : "", sizeof name);
	name[strcspn(name, "\n")] = '\0';
	if ((o = run_open_find(rs, name)) == NULL) {
		run_reply_error(r, 404, "no open run of that name");
		return;
	}
	TAILQ_REMOVE(&rs->open, o, entry);
	rs->nopen--;
	o->rec.ended_at = run_wall_ms();
	run_attribute(rs, o);
	val = record_encode(&o->rec, &len);
	if (db_run_put(server_db(rs->srv), o->rec.name, val, len) == -1) {
		free(val);
		run_open_free(o);
		run_reply_error(r, 500, "cannot store the run record");
		return;
	}
	free(val);
	log_info("run '%s' ended: %zu images, %" PRIu64 " requests, %" PRIu64
		 " upstream bytes",
	    o->rec.name, o->rec.nimages, o->rec.total.requests,
	    o->rec.total.upstream_bytes);
	run_prune(rs);
	run_set_last(rs, &o->rec);
	run_reply_json(r, record_json(&o->rec, RUN_JSON_IMAGES));
	run_open_free(o);
}

/* GET runs: {"baseline": NAME|null, "open": [...], "runs": [...]}. */
static void
run_admin_list(struct req *r, void *arg)
{
	struct runs *rs = arg;
	struct run_list l;
	struct run_open *o;
	struct evbuffer *b;
	char base[RUN_NAME_MAX + 1];
	char *s;
	size_t i;

	if (db_run_baseline_get(server_db(rs->srv), base, sizeof base) != 0)
		base[0] = '\0';
	if (run_list_load(rs, &l) == -1) {
		run_reply_error(r, 500, "cannot read the run records");
		return;
	}
	b = evbuffer_new();
	if (base[0] != '\0')
		evbuffer_add_printf(b, "{\"baseline\":\"%s\",\"open\":[", base);
	else
		evbuffer_add_printf(b, "{\"baseline\":null,\"open\":[");
	TAILQ_FOREACH(o, &rs->open, entry)
		evbuffer_add_printf(b, "%s\"%s\"",
		    o == TAILQ_FIRST(&rs->open) ? "" : ",", o->rec.name);
	evbuffer_add_printf(b, "],\"runs\":[");
	for (i = 0; i < l.n; i++) {
		s = record_json(&l.recs[i],
		    strcmp(l.recs[i].name, base) == 0 ? RUN_JSON_BASELINE : 0);
		evbuffer_add_printf(b, "%s%s", i > 0 ? "," : "", s);
		free(s);
	}
	evbuffer_add_printf(b, "]}");
	run_list_release(&l);
	req_reply_mem(r, 200, "application/json", NULL, evbuffer_pullup(b, -1),
	    evbuffer_get_length(b));
	evbuffer_free(b);
}

/* GET runs/NAME: one record with its images. */
static void
run_admin_show(struct req *r, void *arg)
{
	struct runs *rs = arg;
	const char *name = req_admin_arg(r);
	char base[RUN_NAME_MAX + 1];
	struct run_rec rec;
	void *val = NULL;
	size_t len = 0;
	int rc;

	if (!record_name_valid(name)) {
		run_reply_error(r, 400, "invalid run name");
		return;
	}
	if ((rc = db_run_get(server_db(rs->srv), name, &val, &len)) != 0) {
		if (rc == 1 && run_open_find(rs, name) != NULL)
			run_reply_error(r, 409, "run is still open");
		else if (rc == 1)
			run_reply_error(r, 404, "no such run");
		else
			run_reply_error(r, 500, "cannot read the run record");
		free(val);
		return;
	}
	rc = record_decode(&rec, val, len);
	free(val);
	if (rc == -1) {
		run_reply_error(r, 500, "run record does not decode");
		return;
	}
	if (db_run_baseline_get(server_db(rs->srv), base, sizeof base) != 0)
		base[0] = '\0';
	run_reply_json(r,
	    record_json(&rec,
		RUN_JSON_IMAGES |
		    (strcmp(base, rec.name) == 0 ? RUN_JSON_BASELINE : 0)));
	record_release(&rec);
}

/* POST runs/baseline, body NAME: the run `runs compare NAME` compares to. */
static void
run_admin_baseline(struct req *r, void *arg)
{
	struct runs *rs = arg;
	const char *body;
	char name[RUN_NAME_MAX + 1];
	void *val = NULL;
	size_t len;
	int rc;

	body = req_body(r, &len);
	xstrlcpy(name, body != NULL ? body : "", sizeof name);
	name[strcspn(name, "\n")] = '\0';
	if (!record_name_valid(name)) {
		run_reply_error(r, 400, "invalid run name");
		return;
	}
	rc = db_run_get(server_db(rs->srv), name, &val, &len);
	free(val);
	if (rc != 0) {
		run_reply_error(r, rc == 1 ? 404 : 500,
		    rc == 1 ? "no such run" : "cannot read the run record");
		return;
	}
	if (db_run_baseline_set(server_db(rs->srv), name) == -1) {
		run_reply_error(r, 500, "cannot store the baseline");
		return;
	}
	run_reply_json(r, xstrdup("{}"));
}

/* Metrics ------------------------------------------------------------------ */

static void
run_metrics(struct evbuffer *b, void *arg)
{
	struct runs *rs = arg;
	const struct run_fig *t = &rs->last.total;
	const char *n = rs->last.name;

	evbuffer_add_printf(b,
	    "# HELP ccprewarm_runs_open Runs begun and not yet ended\n"
	    "# TYPE ccprewarm_runs_open gauge\n"
	    "ccprewarm_runs_open %zu\n",
	    rs->nopen);
	if (!rs->have_last)
		return;
	/* run names are [A-Za-z0-9_.-]: no label escaping needed */
	evbuffer_add_printf(b,
	    "# HELP ccprewarm_run_last_wall_seconds The last finished run: "
	    "first request to last byte\n"
	    "# TYPE ccprewarm_run_last_wall_seconds gauge\n"
	    "ccprewarm_run_last_wall_seconds{run=\"%s\"} %.3f\n"
	    "# HELP ccprewarm_run_last_images The last finished run: images\n"
	    "# TYPE ccprewarm_run_last_images gauge\n"
	    "ccprewarm_run_last_images{run=\"%s\"} %zu\n"
	    "# HELP ccprewarm_run_last_bytes The last finished run: body bytes "
	    "by where they came from\n"
	    "# TYPE ccprewarm_run_last_bytes gauge\n"
	    "ccprewarm_run_last_bytes{run=\"%s\",source=\"cache\"} %" PRIu64
	    "\n"
	    "ccprewarm_run_last_bytes{run=\"%s\",source=\"upstream\"} %" PRIu64
	    "\n"
	    "# HELP ccprewarm_run_last_requests The last finished run: "
	    "requests by result\n"
	    "# TYPE ccprewarm_run_last_requests gauge\n"
	    "ccprewarm_run_last_requests{run=\"%s\",result=\"hit\"} %" PRIu64
	    "\n"
	    "ccprewarm_run_last_requests{run=\"%s\",result=\"miss\"} %" PRIu64
	    "\n"
	    "ccprewarm_run_last_requests{run=\"%s\",result=\"coalesced\"} "
	    "%" PRIu64 "\n"
	    "ccprewarm_run_last_requests{run=\"%s\",result=\"error\"} %" PRIu64
	    "\n"
	    "# HELP ccprewarm_run_last_upstream_wait_seconds The last finished "
	    "run: time requests waited on upstream, summed\n"
	    "# TYPE ccprewarm_run_last_upstream_wait_seconds gauge\n"
	    "ccprewarm_run_last_upstream_wait_seconds{run=\"%s\"} %.3f\n",
	    n, (double)record_fig_wall_ms(t) / 1000.0, n, rs->last.nimages, n,
	    t->cache_bytes, n, t->upstream_bytes, n, t->hits, n, t->misses, n,
	    t->coalesced, n, t->errors, n,
	    (double)t->upstream_wait_ms / 1000.0);
}

/* Life cycle ------------------------------------------------------------- */

struct runs *
runs_new(struct server *srv, int64_t keep)
{
	struct runs *rs = xcalloc(1, sizeof *rs);
	struct run_list l;

	rs->srv = srv;
	rs->keep = keep > 0 ? keep : RUN_KEEP_DEFAULT;
	TAILQ_INIT(&rs->open);
	/* The newest stored run is the "last finished" one after a restart. */
	if (run_list_load(rs, &l) == -1) {
		free(rs);
		return NULL;
	}
	if (l.n > 0)
		run_set_last(rs, &l.recs[0]);
	run_list_release(&l);
	admin_add(srv, "run/begin", REQ_POST, run_admin_begin, rs);
	admin_add(srv, "run/end", REQ_POST, run_admin_end, rs);
	admin_add(srv, "runs", REQ_GET, run_admin_list, rs);
	admin_add(srv, "runs/baseline", REQ_POST, run_admin_baseline, rs);
	admin_add(srv, "runs/", REQ_GET, run_admin_show, rs);
	metrics_add(srv, run_metrics, rs);
	req_hook_set(srv, run_req_cb, rs);
	return rs;
}

void
runs_free(struct runs *rs)
{
	struct run_open *o;

	if (rs == NULL)
		return;
	req_hook_set(rs->srv, NULL, NULL);
	while ((o = TAILQ_FIRST(&rs->open)) != NULL) {
		TAILQ_REMOVE(&rs->open, o, entry);
		log_warn("run '%s' was still open; not recorded", o->rec.name);
		run_open_free(o);
	}
	record_release(&rs->last);
	free(rs);
}
