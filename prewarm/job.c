/*
 * prewarm/job.c: the daemon side of pre-warming.  An enrolment is a job
 * keyed by recipe name: its image references are resolved through the
 * mirror's own upstream routing (tag -> index -> the configured platforms'
 * manifests -> config + layers), every missing digest is fetched through
 * the same single-flight fills that clients use, with bounded parallelism,
 * and when the closure is complete it is pinned under (recipe, version).
 * A recipe has one job per enrolled version, each pinned for reasons
 * (the window of newest releases, an explicit --version, the checkout);
 * a version left with no reason is unpinned and forgotten, its blobs stay.
 * Jobs are durable: the record in LMDB is rewritten as images finish, and
 * jobs that were running when the daemon stopped resume at start-up,
 * skipping what is already stored.
 */
#include <sys/utsname.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "../common/common.h"
#include "prewarm.h"

#define JOB_PARALLEL 4
#define JOB_MAX_IMAGES 256
#define JOB_RECORD_V1 1	     /* one job per recipe, keyed by recipe */
#define JOB_RECORD_VERSION 2 /* keyed "recipe@version" */
#define JOB_RECORD_RECIPE 16 /* the recipe's own record, keyed "recipe" */
#define JOB_DEFAULT_WINDOW 2
#define JOB_MAX_VERSIONS 32

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED };
static const char *const job_state_names[] = {
    "queued", "running", "warm", "failed"};

enum job_image_state { JOB_IMG_PENDING, JOB_IMG_DONE, JOB_IMG_FAILED };
static const char *const job_image_state_names[] = {
    "pending", "warm", "failed"};

enum job_op_kind { JOB_OP_TAG, JOB_OP_MANIFEST, JOB_OP_BLOB };

/* Why a version is pinned; none left: it is unpinned. */
enum job_reason {
	JOB_PIN_WINDOW = (1 << 0),   /* among the newest releases */
	JOB_PIN_EXPLICIT = (1 << 1), /* enroll --version V */
	JOB_PIN_CHECKOUT = (1 << 2), /* the recipe's working tree, untagged */
};
static const char *const job_reason_names[] = {
    "window", "explicit", "checkout"};

struct job_image {
	char ref[REF_STRLEN];
	struct ref parsed;
	struct upstream *up;
	enum job_image_state state;
	int pending; /* ops not yet finished */
	char error[200];
	char want[72];	  /* catalogue digest (hex prefix), "" for none */
	char service[64]; /* the catalogue's service, for messages */
};

struct job_op {
	TAILQ_ENTRY(job_op) entry;
	struct job *job;
	size_t img;
	enum job_op_kind kind;
	struct digest digest;
	int64_t size;
	int fetched; /* went upstream (not already stored) */
	struct fill_sub *sub;
};

struct job {
	TAILQ_ENTRY(job) entry;
	struct prewarm *pw;
	char recipe[128];
	char version[128];
	enum job_state state;
	struct job_image *images;
	size_t nimages;
	struct digest *closure;
	int64_t *closure_size; /* blobs: their size; manifests: -1 */
	size_t nclosure, closure_cap;
	unsigned reasons; /* enum job_reason */
	int pinned;	  /* the last complete closure is pinned */
	uint64_t bytes_total, bytes_fetched, bytes_present;
	size_t blobs_total, blobs_done;
	size_t active;
	TAILQ_HEAD(, job_op) queue; /* waiting for a slot */
	TAILQ_HEAD(, job_op) running;
	int64_t started_at, finished_at;
	char platforms[8][48]; /* the enrolment's own; none: the daemon's */
	size_t nplatforms;
};

/* An enrolled recipe: where its versions come from, for `warm`. */
struct job_recipe {
	TAILQ_ENTRY(job_recipe) entry;
	char name[128];
	int64_t window;	 /* newest releases pinned; 0: none */
	uint64_t flags;	 /* enum recipe_flags the CLI loads with */
	char source[16]; /* "git", "catalogue", "dir" */
	char path[1024]; /* recipe checkout or catalogue file */
};

struct prewarm {
	struct server *srv;
	char platforms[8][48];
	size_t nplatforms;
	int64_t window; /* default --versions (config recipe_versions) */
	TAILQ_HEAD(, job) jobs;
	TAILQ_HEAD(, job_recipe) recipes;
	struct event *resume_ev;
};

static void job_pump(struct job *);
static void job_op_done(struct job_op *, const char *why);

/* "linux/amd64" for this machine, as docker names it. */
static void
job_native_platform(char *buf, size_t len)
{
	struct utsname u;
	const char *arch = "amd64";

	if (uname(&u) == 0) {
		if (strcmp(u.machine, "aarch64") == 0 ||
		    strcmp(u.machine, "arm64") == 0)
			arch = "arm64";
		else if (strncmp(u.machine, "armv7", 5) == 0)
			arch = "arm/v7";
		else if (strcmp(u.machine, "i686") == 0)
			arch = "386";
		else if (strcmp(u.machine, "s390x") == 0 ||
		    strcmp(u.machine, "ppc64le") == 0 ||
		    strcmp(u.machine, "riscv64") == 0)
			arch = u.machine;
	}
	xstrlcpy(buf, "linux/", len);
	if (strlen(buf) + strlen(arch) < len)
		strcat(buf, arch);
}

static int
job_platform_match(const struct job *j, const struct oci_desc *d)
{
	const struct prewarm *pw = j->pw;
	const char(*plat)[48] = j->nplatforms ? j->platforms : pw->platforms;
	size_t nplat = j->nplatforms ? j->nplatforms : pw->nplatforms;
	char p[112];
	size_t i;

	snprintf(p, sizeof p, "%s/%s%s%s", d->os, d->arch,
	    d->variant[0] ? "/" : "", d->variant);
	for (i = 0; i < nplat; i++) {
		size_t n = strlen(plat[i]);

		/* "linux/arm64" also takes "linux/arm64/v8" */
		if (strcmp(p, plat[i]) == 0 ||
		    (strncmp(p, plat[i], n) == 0 && p[n] == '/'))
			return 1;
	}
	return 0;
}

/* Record encoding (fixed layout, versioned; no JSON in LMDB) ------------- */

static void
job_put_str(struct evbuffer *b, const char *s)
{
	uint16_t n = (uint16_t)strlen(s);
	unsigned char len[2] = {n & 0xff, n >> 8};

	evbuffer_add(b, len, 2);
	evbuffer_add(b, s, n);
}

static void
job_put_u64(struct evbuffer *b, uint64_t v)
{
	unsigned char x[8];
	int i;

	for (i = 0; i < 8; i++)
		x[i] = (v >> (8 * i)) & 0xff;
	evbuffer_add(b, x, 8);
}

/* The record id of a version: "recipe@version" ('@' is no recipe char). */
static void
job_id(const struct job *j, char *buf, size_t len)
{
	snprintf(buf, len, "%s@%s", j->recipe, j->version);
}

static void
job_save(struct job *j)
{
	struct evbuffer *b = evbuffer_new();
	unsigned char hdr[2] = {JOB_RECORD_VERSION, (unsigned char)j->state};
	unsigned char tail[2] = {
	    (unsigned char)j->reasons, (unsigned char)j->pinned};
	char id[300];
	size_t i;

	evbuffer_add(b, hdr, 2);
	job_put_str(b, j->version);
	job_put_u64(b, (uint64_t)j->started_at);
	job_put_u64(b, (uint64_t)j->finished_at);
	job_put_u64(b, j->bytes_total);
	job_put_u64(b, j->nimages);
	for (i = 0; i < j->nimages; i++) {
		unsigned char st = (unsigned char)j->images[i].state;

		job_put_str(b, j->images[i].ref);
		evbuffer_add(b, &st, 1);
		job_put_str(b, j->images[i].error);
		job_put_str(b, j->images[i].want);
		job_put_str(b, j->images[i].service);
	}
	job_put_u64(b, j->nplatforms);
	for (i = 0; i < j->nplatforms; i++)
		job_put_str(b, j->platforms[i]);
	evbuffer_add(b, tail, 2);
	job_id(j, id, sizeof id);
	if (db_job_put(j->pw->srv->db, id, evbuffer_pullup(b, -1),
		evbuffer_get_length(b)) == -1)
		log_warn("cannot record the progress of '%s'", id);
	evbuffer_free(b);
}

struct job_rd {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

static uint64_t
job_get_u64(struct job_rd *r)
{
	uint64_t v = 0;
	int i;

	if (r->off + 8 > r->len) {
		r->bad = 1;
		return 0;
	}
	for (i = 0; i < 8; i++)
		v |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += 8;
	return v;
}

static void
job_get_str(struct job_rd *r, char *out, size_t size)
{
	size_t n;

	out[0] = '\0';
	if (r->off + 2 > r->len) {
		r->bad = 1;
		return;
	}
	n = r->p[r->off] | (size_t)r->p[r->off + 1] << 8;
	r->off += 2;
	if (r->off + n > r->len || n >= size) {
		r->bad = 1;
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}

/* Jobs ----------------------------------------------------------------------
 */

static struct job *
job_find(struct prewarm *pw, const char *recipe, const char *version)
{
	struct job *j;

	TAILQ_FOREACH(j, &pw->jobs, entry)
		if (strcmp(j->recipe, recipe) == 0 &&
		    strcmp(j->version, version) == 0)
			return j;
	return NULL;
}

static void
job_cancel_ops(struct job *j)
{
	struct job_op *op;

	while ((op = TAILQ_FIRST(&j->queue)) != NULL) {
		TAILQ_REMOVE(&j->queue, op, entry);
		free(op);
	}
	while ((op = TAILQ_FIRST(&j->running)) != NULL) {
		TAILQ_REMOVE(&j->running, op, entry);
		fill_fetch_cancel(op->sub);
		free(op);
	}
	j->active = 0;
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	job_cancel_ops(j);
	free(j->images);
	free(j->closure);
	free(j->closure_size);
	free(j);
}

/* Versions of a recipe stay in order, newest first. */
static struct job *
job_new(struct prewarm *pw, const char *recipe, const char *version)
{
	struct job *j = xcalloc(1, sizeof *j), *k;

	j->pw = pw;
	xstrlcpy(j->recipe, recipe, sizeof j->recipe);
	xstrlcpy(j->version, version, sizeof j->version);
	TAILQ_INIT(&j->queue);
	TAILQ_INIT(&j->running);
	TAILQ_FOREACH(k, &pw->jobs, entry)
		if (strcmp(k->recipe, recipe) == 0 &&
		    version_cmp(version, k->version) > 0)
			break;
	if (k != NULL)
		TAILQ_INSERT_BEFORE(k, j, entry);
	else
		TAILQ_INSERT_TAIL(&pw->jobs, j, entry);
	return j;
}

/* An image to enroll: a reference and, from abra's catalogue, the digest
 * its tag must have and the service that uses it. */
struct job_want {
	char ref[REF_STRLEN];
	char want[72];
	char service[64];
};

static void
job_set_images(struct job *j, const struct job_want *w, size_t n)
{
	size_t i;

	free(j->images);
	j->images = xcalloc(n == 0 ? 1 : n, sizeof *j->images);
	j->nimages = n;
	for (i = 0; i < n; i++) {
		xstrlcpy(j->images[i].ref, w[i].ref, sizeof j->images[i].ref);
		xstrlcpy(
		    j->images[i].want, w[i].want, sizeof j->images[i].want);
		xstrlcpy(j->images[i].service, w[i].service,
		    sizeof j->images[i].service);
	}
}

/* The daemon's platforms plus those the enrolment adds ("--platform"). */
static void
job_set_platforms(struct job *j, json_t *extra)
{
	const struct prewarm *pw = j->pw;
	const char *p;
	json_t *v;
	size_t i, k;

	j->nplatforms = 0;
	if (!json_is_array(extra) || json_array_size(extra) == 0)
		return;
	for (i = 0; i < pw->nplatforms; i++)
		xstrlcpy(j->platforms[j->nplatforms++], pw->platforms[i], 48);
	json_array_foreach(extra, i, v) {
		p = json_string_value(v);
		if (p == NULL || strchr(p, '/') == NULL || strlen(p) >= 48 ||
		    j->nplatforms == nitems(j->platforms))
			continue;
		for (k = 0; k < j->nplatforms; k++)
			if (strcmp(j->platforms[k], p) == 0)
				break;
		if (k == j->nplatforms)
			xstrlcpy(j->platforms[j->nplatforms++], p, 48);
	}
}

/* 1 if d was already in the closure; else adds it (size: -1 for a
 * manifest, a blob's size otherwise). */
static int
job_closure_add(struct job *j, const struct digest *d, int64_t size)
{
	size_t i;

	for (i = 0; i < j->nclosure; i++)
		if (digest_equal(&j->closure[i], d))
			return 1;
	if (j->nclosure == j->closure_cap) {
		j->closure_cap = j->closure_cap ? 2 * j->closure_cap : 64;
		j->closure = xreallocarray(
		    j->closure, j->closure_cap, sizeof *j->closure);
		j->closure_size = xreallocarray(
		    j->closure_size, j->closure_cap, sizeof *j->closure_size);
	}
	j->closure_size[j->nclosure] = size;
	j->closure[j->nclosure++] = *d;
	return 0;
}

static void
job_image_fail(struct job *j, size_t img, const char *why)
{
	struct job_image *im = &j->images[img];

	if (im->state == JOB_IMG_FAILED)
		return;
	im->state = JOB_IMG_FAILED;
	xstrlcpy(im->error, why, sizeof im->error);
	log_warn("pre-warm '%s': %s: %s", j->recipe, im->ref, why);
}

static void
job_enqueue(struct job *j, size_t img, enum job_op_kind kind,
    const struct digest *d, int64_t size)
{
	struct job_op *op = xcalloc(1, sizeof *op);

	op->job = j;
	op->img = img;
	op->kind = kind;
	if (d != NULL)
		op->digest = *d;
	op->size = size;
	j->images[img].pending++;
	TAILQ_INSERT_TAIL(&j->queue, op, entry);
}

static void
job_finish(struct job *j)
{
	size_t i, failed = 0;

	for (i = 0; i < j->nimages; i++)
		failed += j->images[i].state == JOB_IMG_FAILED;
	j->finished_at = clock_wall_s();
	if (failed == 0 &&
	    db_pins_set(j->pw->srv->db, j->recipe, j->version, j->closure,
		j->nclosure) == 0) {
		j->state = JOB_DONE;
		j->pinned = 1;
		log_info("pre-warm '%s'%s%s: warm and pinned: %zu images, %zu "
			 "digests, %" PRIu64 " bytes (%" PRIu64 " fetched)",
		    j->recipe, j->version[0] ? " " : "", j->version, j->nimages,
		    j->nclosure, j->bytes_total, j->bytes_fetched);
	} else {
		j->state = JOB_FAILED;
		log_warn("pre-warm '%s'%s%s: %zu of %zu images failed; not "
			 "pinned",
		    j->recipe, j->version[0] ? " " : "", j->version, failed,
		    j->nimages);
	}
	job_save(j);
}

/* Reads a stored manifest (small: at most OCI_MANIFEST_MAX). */
static int
job_read_manifest(struct prewarm *pw, const struct digest *d,
    struct oci_manifest *m, const char **why)
{
	off_t size;
	ssize_t n;
	char *buf;
	int fd, rc;

	*why = "manifest not in the store";
	if ((fd = blobstore_open_blob(pw->srv->store, d, &size)) == -1)
		return -1;
	if (size > OCI_MANIFEST_MAX) {
		close(fd);
		*why = "manifest too large";
		return -1;
	}
	buf = xmalloc((size_t)size + 1);
	n = pread(fd, buf, (size_t)size, 0);
	close(fd);
	if (n != size) {
		free(buf);
		*why = "cannot read stored manifest";
		return -1;
	}
	rc = oci_manifest_parse(buf, (size_t)size, m, why);
	free(buf);
	return rc;
}

/* A manifest is in the store: queue its children or its blobs. */
static void
job_expand(struct job_op *op)
{
	struct job *j = op->job;
	struct oci_manifest m;
	const char *why;
	size_t i, chosen = 0;

	if (job_read_manifest(j->pw, &op->digest, &m, &why) == -1) {
		job_image_fail(j, op->img, why);
		return;
	}
	if (m.kind == OCI_KIND_INDEX) {
		for (i = 0; i < m.ndescs; i++) {
			if (!job_platform_match(j, &m.descs[i]))
				continue;
			chosen++;
			if (!job_closure_add(j, &m.descs[i].digest, -1))
				job_enqueue(j, op->img, JOB_OP_MANIFEST,
				    &m.descs[i].digest, m.descs[i].size);
		}
		if (chosen == 0)
			job_image_fail(j, op->img,
			    "no manifest for the "
			    "configured platforms");
	} else {
		if (!job_closure_add(j, &m.config.digest, m.config.size))
			job_enqueue(j, op->img, JOB_OP_BLOB, &m.config.digest,
			    m.config.size);
		for (i = 0; i < m.ndescs; i++) {
			if (m.descs[i].foreign)
				continue;
			if (!job_closure_add(
				j, &m.descs[i].digest, m.descs[i].size))
				job_enqueue(j, op->img, JOB_OP_BLOB,
				    &m.descs[i].digest, m.descs[i].size);
		}
	}
	oci_manifest_release(&m);
}

/*
 * A catalogue names the digest a tag had when it was written: what
 * upstream serves now must be that one (a hex prefix is enough, abra
 * writes short ones too).  1 with a message on a mismatch.
 */
static int
job_want_mismatch(const struct job *j, size_t img, const struct digest *d,
    char *msg, size_t len)
{
	const struct job_image *im = &j->images[img];
	char got[DIGEST_STRLEN];
	const char *want = im->want;

	if (want[0] == '\0')
		return 0;
	digest_format(d, got);
	if (strncmp(want, "sha256:", 7) == 0)
		want += 7;
	if (strncmp(got + 7, want, strlen(want)) == 0)
		return 0;
	snprintf(msg, len,
	    "catalogue digest mismatch for service '%s': catalogue has "
	    "sha256:%.64s, upstream serves %s",
	    im->service[0] ? im->service : "?", want, got);
	return 1;
}

static void
job_fetched_cb(void *arg, const struct digest *d, const char *why)
{
	struct job_op *op = arg;
	struct job *j = op->job;
	char msg[300];

	op->sub = NULL;
	if (d == NULL) {
		job_op_done(op, why != NULL ? why : "upstream fetch failed");
		return;
	}
	switch (op->kind) {
	case JOB_OP_TAG:
		/* the fill stored the manifest and the tag mapping */
		op->digest = *d;
		if (job_want_mismatch(j, op->img, d, msg, sizeof msg)) {
			job_op_done(op, msg);
			return;
		}
		if (!job_closure_add(j, d, -1))
			job_expand(op);
		break;
	case JOB_OP_MANIFEST:
		job_expand(op);
		break;
	case JOB_OP_BLOB:
		if (op->fetched)
			j->bytes_fetched +=
			    op->size > 0 ? (uint64_t)op->size : 0;
		break;
	}
	job_op_done(op, NULL);
}

static void
job_op_done(struct job_op *op, const char *why)
{
	struct job *j = op->job;
	struct job_image *im = &j->images[op->img];

	TAILQ_REMOVE(&j->running, op, entry);
	j->active--;
	if (op->kind == JOB_OP_BLOB)
		j->blobs_done++;
	if (why != NULL)
		job_image_fail(j, op->img, why);
	if (--im->pending == 0 && im->state == JOB_IMG_PENDING) {
		im->state = JOB_IMG_DONE;
		job_save(j);
	}
	free(op);
	job_pump(j);
}

/* Starts op, or finishes it at once when nothing needs fetching. */
static void
job_op_run(struct job_op *op)
{
	struct job *j = op->job;
	struct job_image *im = &j->images[op->img];
	struct server *srv = j->pw->srv;
	struct db_blob meta;
	struct db_tag t;
	enum fill_kind kind = FILL_MANIFEST;

	TAILQ_INSERT_TAIL(&j->running, op, entry);
	j->active++;
	if (im->state == JOB_IMG_FAILED) {
		job_op_done(op, NULL);
		return;
	}
	switch (op->kind) {
	case JOB_OP_TAG:
		if (db_tag_get(srv->db, upstream_name(im->up), im->parsed.repo,
			im->parsed.tag, &t) == 0 &&
		    clock_wall_s() - t.confirmed_at <
			srv->opts->tag_freshness_s &&
		    db_blob_get(srv->db, &t.digest, &meta) == 0) {
			job_fetched_cb(op, &t.digest, NULL);
			return;
		}
		op->sub = fill_fetch(srv, im->up, im->parsed.repo,
		    FILL_MANIFEST, im->parsed.tag, NULL, job_fetched_cb, op);
		break;
	case JOB_OP_BLOB:
		kind = FILL_BLOB;
		j->blobs_total++;
		if (op->size > 0)
			j->bytes_total += (uint64_t)op->size;
		/* FALLTHROUGH */
	case JOB_OP_MANIFEST:
		if (db_blob_get(srv->db, &op->digest, &meta) == 0 &&
		    blobstore_has(srv->store, &op->digest)) {
			if (op->kind == JOB_OP_BLOB)
				j->bytes_present += meta.size;
			job_fetched_cb(op, &op->digest, NULL);
			return;
		}
		op->fetched = 1;
		op->sub = fill_fetch(srv, im->up, im->parsed.repo, kind, NULL,
		    &op->digest, job_fetched_cb, op);
		break;
	}
	if (op->sub == NULL)
		job_op_done(op, "cannot start the upstream fetch");
}

static void
job_pump(struct job *j)
{
	struct job_op *op;

	while (j->state == JOB_RUNNING && j->active < JOB_PARALLEL &&
	    (op = TAILQ_FIRST(&j->queue)) != NULL) {
		TAILQ_REMOVE(&j->queue, op, entry);
		job_op_run(op);
	}
	if (j->state == JOB_RUNNING && j->active == 0 && TAILQ_EMPTY(&j->queue))
		job_finish(j);
}

static void
job_start(struct job *j)
{
	struct server *srv = j->pw->srv;
	struct job_image *im;
	const char *why;
	size_t i;

	job_cancel_ops(j);
	j->state = JOB_RUNNING;
	j->nclosure = 0;
	j->bytes_total = j->bytes_fetched = j->bytes_present = 0;
	j->blobs_total = j->blobs_done = 0;
	j->started_at = clock_wall_s();
	j->finished_at = 0;
	for (i = 0; i < j->nimages; i++) {
		im = &j->images[i];
		im->state = JOB_IMG_PENDING;
		im->error[0] = '\0';
		im->pending = 0;
		if (ref_parse(&im->parsed, im->ref, &why) == -1) {
			job_image_fail(j, i, why);
			continue;
		}
		if ((im->up = server_upstream(srv, im->parsed.host)) == NULL) {
			char msg[300];

			snprintf(msg, sizeof msg,
			    "registry '%s' is not a "
			    "configured upstream",
			    im->parsed.host);
			job_image_fail(j, i, msg);
			continue;
		}
		if (im->parsed.has_digest) {
			job_closure_add(j, &im->parsed.digest, -1);
			job_enqueue(
			    j, i, JOB_OP_MANIFEST, &im->parsed.digest, -1);
		} else
			job_enqueue(j, i, JOB_OP_TAG, NULL, -1);
	}
	job_save(j);
	log_info("pre-warm '%s'%s%s: started, %zu images", j->recipe,
	    j->version[0] ? " " : "", j->version, j->nimages);
	job_pump(j);
}

/* Status as JSON ------------------------------------------------------------
 */

static json_t *
job_reasons_json(unsigned reasons)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < nitems(job_reason_names); i++)
		if (reasons & (1u << i))
			json_array_append_new(
			    a, json_string(job_reason_names[i]));
	return a;
}

static json_t *
job_platforms_json(const struct job *j)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < (j->nplatforms ? j->nplatforms : j->pw->nplatforms);
	     i++)
		json_array_append_new(a,
		    json_string(
			j->nplatforms ? j->platforms[i] : j->pw->platforms[i]));
	return a;
}

/* One version. */
static json_t *
job_json(const struct job *j)
{
	json_t *o, *imgs;
	size_t i, done = 0;

	imgs = json_array();
	for (i = 0; i < j->nimages; i++) {
		const struct job_image *im = &j->images[i];

		done += im->state == JOB_IMG_DONE;
		json_array_append_new(imgs,
		    json_pack("{s:s,s:s,s:s*,s:s*}", "ref", im->ref, "state",
			job_image_state_names[im->state], "error",
			im->error[0] ? im->error : NULL, "service",
			im->service[0] ? im->service : NULL));
	}
	o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		      "s:o}",
	    "recipe", j->recipe, "version", j->version, "state",
	    job_state_names[j->state], "images_total", (json_int_t)j->nimages,
	    "images_done", (json_int_t)done, "blobs_total",
	    (json_int_t)j->blobs_total, "blobs_done", (json_int_t)j->blobs_done,
	    "bytes_total", (json_int_t)j->bytes_total, "bytes_fetched",
	    (json_int_t)j->bytes_fetched, "bytes_present",
	    (json_int_t)j->bytes_present, "digests", (json_int_t)j->nclosure,
	    "started_at", (json_int_t)j->started_at, "finished_at",
	    (json_int_t)j->finished_at, "images", imgs);
	if (o == NULL)
		fatal("out of memory building job status");
	json_object_set_new(o, "platforms", job_platforms_json(j));
	json_object_set_new(o, "pinned", json_boolean(j->pinned));
	json_object_set_new(o, "reasons", job_reasons_json(j->reasons));
	return o;
}

/* Recipes ----------------------------------------------------------------- */

static struct job_recipe *
job_recipe_find(struct prewarm *pw, const char *name)
{
	struct job_recipe *rec;

	TAILQ_FOREACH(rec, &pw->recipes, entry)
		if (strcmp(rec->name, name) == 0)
			return rec;
	return NULL;
}

static struct job_recipe *
job_recipe_get(struct prewarm *pw, const char *name)
{
	struct job_recipe *rec;

	if ((rec = job_recipe_find(pw, name)) != NULL)
		return rec;
	rec = xcalloc(1, sizeof *rec);
	xstrlcpy(rec->name, name, sizeof rec->name);
	TAILQ_INSERT_TAIL(&pw->recipes, rec, entry);
	return rec;
}

static void
job_recipe_save(struct prewarm *pw, const struct job_recipe *rec)
{
	struct evbuffer *b = evbuffer_new();
	unsigned char hdr = JOB_RECORD_RECIPE;

	evbuffer_add(b, &hdr, 1);
	job_put_u64(b, (uint64_t)rec->window);
	job_put_u64(b, rec->flags);
	job_put_str(b, rec->source);
	job_put_str(b, rec->path);
	if (db_job_put(pw->srv->db, rec->name, evbuffer_pullup(b, -1),
		evbuffer_get_length(b)) == -1)
		log_warn("cannot record the enrolment of '%s'", rec->name);
	evbuffer_free(b);
}

/* Images ranked for a recipe's summary: the worst state of any version. */
static int
job_image_rank(const char *state)
{
	if (strcmp(state, "failed") == 0)
		return 2;
	return strcmp(state, "pending") == 0;
}

static void
job_recipe_image_merge(json_t *imgs, json_t *im)
{
	const char *ref = json_string_value(json_object_get(im, "ref"));
	const char *st = json_string_value(json_object_get(im, "state"));
	json_t *e;
	size_t i;

	json_array_foreach(imgs, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "ref")), ref) !=
		    0)
			continue;
		if (job_image_rank(st) > job_image_rank(json_string_value(
					     json_object_get(e, "state"))))
			json_array_set(imgs, i, im);
		return;
	}
	json_array_append(imgs, im);
}

/*
 * A recipe: every version (newest first) and a summary over them: distinct
 * images (each in its worst state), distinct digests and their bytes (a
 * blob shared by two versions counts once), and a state that is running
 * while any version runs, failed if any failed, else warm.
 */
static json_t *
job_recipe_json(struct prewarm *pw, const struct job_recipe *rec)
{
	json_t *o, *versions = json_array(), *imgs = json_array(), *v, *im;
	const struct job *j, *first = NULL;
	struct digest *seen = NULL;
	size_t nseen = 0, cap = 0, i, k, done = 0;
	uint64_t bytes = 0, fetched = 0, present = 0;
	size_t blobs_total = 0, blobs_done = 0;
	int64_t started = 0, finished = 0;
	int nstate[4] = {0, 0, 0, 0};
	enum job_state st;

	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (strcmp(j->recipe, rec->name) != 0)
			continue;
		if (first == NULL)
			first = j;
		nstate[j->state]++;
		v = job_json(j);
		json_array_foreach(json_object_get(v, "images"), i, im)
			job_recipe_image_merge(imgs, im);
		json_array_append_new(versions, v);
		for (i = 0; i < j->nclosure; i++) {
			for (k = 0; k < nseen; k++)
				if (digest_equal(&seen[k], &j->closure[i]))
					break;
			if (k < nseen)
				continue;
			if (nseen == cap) {
				cap = cap ? 2 * cap : 64;
				seen = xreallocarray(seen, cap, sizeof *seen);
			}
			seen[nseen++] = j->closure[i];
			if (j->closure_size[i] > 0)
				bytes += (uint64_t)j->closure_size[i];
		}
		fetched += j->bytes_fetched;
		present += j->bytes_present;
		blobs_total += j->blobs_total;
		blobs_done += j->blobs_done;
		if (started == 0 || (j->started_at && j->started_at < started))
			started = j->started_at;
		if (j->finished_at > finished)
			finished = j->finished_at;
	}
	free(seen);
	json_array_foreach(imgs, i, im)
		done += strcmp(json_string_value(json_object_get(im, "state")),
			    "warm") == 0;
	st = nstate[JOB_RUNNING] ? JOB_RUNNING
	    : nstate[JOB_QUEUED] ? JOB_QUEUED
	    : nstate[JOB_FAILED] ? JOB_FAILED
				 : JOB_DONE;
	o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		      "s:o,s:I,s:s,s:s,s:I,s:o}",
	    "recipe", rec->name, "version", first ? first->version : "",
	    "state", job_state_names[st], "images_total",
	    (json_int_t)json_array_size(imgs), "images_done", (json_int_t)done,
	    "blobs_total", (json_int_t)blobs_total, "blobs_done",
	    (json_int_t)blobs_done, "bytes_total", (json_int_t)bytes,
	    "bytes_fetched", (json_int_t)fetched, "bytes_present",
	    (json_int_t)present, "digests", (json_int_t)nseen, "started_at",
	    (json_int_t)started, "finished_at", (json_int_t)finished, "images",
	    imgs, "window", (json_int_t)rec->window, "source", rec->source,
	    "path", rec->path, "flags", (json_int_t)rec->flags, "versions",
	    versions);
	if (o == NULL)
		fatal("out of memory building recipe status");
	json_object_set_new(
	    o, "platforms", first ? job_platforms_json(first) : json_array());
	return o;
}

static void
job_reply(struct req *r, int status, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s == NULL)
		fatal("out of memory serialising job status");
	req_reply_mem(r, status, "application/json", NULL, s, strlen(s));
	free(s);
	json_decref(o);
}

/* A version no reason pins any more: unpinned (its blobs stay, evictable
 * under the budget) and forgotten. */
static int
job_drop(struct prewarm *pw, struct job *j)
{
	char id[300];
	int rc = 0;

	TAILQ_REMOVE(&pw->jobs, j, entry);
	job_id(j, id, sizeof id);
	if (db_pins_unset(pw->srv->db, j->recipe, j->version) == -1 ||
	    db_job_del(pw->srv->db, id) == -1)
		rc = -1;
	log_info("pre-warm '%s' %s: unpinned, no reason left to keep it; its "
		 "blobs stay until evicted",
	    j->recipe, j->version);
	job_free(j);
	return rc;
}

/* Admin API -----------------------------------------------------------------
 */

static int
job_valid_recipe(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 128 && s[0] != '.' && s[0] != '-' &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int
job_valid_version(const char *s)
{
	const unsigned char *p;

	if (strlen(s) >= sizeof(((struct job *)0)->version))
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return 0;
	return 1;
}

/* "sha256:<hex>" or a hex prefix of at least 8 digits. */
static int
job_valid_want(const char *s)
{
	size_t n;

	if (strncmp(s, "sha256:", 7) == 0)
		s += 7;
	n = strlen(s);
	return n >= 8 && n <= 64 && strspn(s, "0123456789abcdef") == n;
}

static unsigned
job_reason_parse(const char *s)
{
	size_t i;

	for (i = 0; s != NULL && i < nitems(job_reason_names); i++)
		if (strcmp(s, job_reason_names[i]) == 0)
			return 1u << i;
	return 0;
}

/* One version of an enroll request, checked before anything changes. */
struct job_enroll_ver {
	const char *version;
	unsigned reason;
	struct job_want *w;
	size_t n;
};

static int
job_parse_version(json_t *v, struct job_enroll_ver *ev, char *msg, size_t len)
{
	json_t *images = json_object_get(v, "images"), *im;
	const char *s, *want, *svc, *why;
	struct ref ref;
	size_t i;

	ev->version = json_string_value(json_object_get(v, "version"));
	ev->reason =
	    job_reason_parse(json_string_value(json_object_get(v, "reason")));
	if (ev->version == NULL || !job_valid_version(ev->version) ||
	    ev->reason == 0) {
		snprintf(msg, len,
		    "each version needs {\"version\": V, \"reason\": "
		    "\"window\"|\"explicit\"|\"checkout\", \"images\": [...]}");
		return -1;
	}
	if (!json_is_array(images) || json_array_size(images) == 0 ||
	    json_array_size(images) > JOB_MAX_IMAGES) {
		snprintf(msg, len, "version '%.128s' needs 1 to %d images",
		    ev->version, JOB_MAX_IMAGES);
		return -1;
	}
	ev->w = xcalloc(json_array_size(images), sizeof *ev->w);
	json_array_foreach(images, i, im) {
		want = svc = NULL;
		if (json_is_object(im)) {
			s = json_string_value(json_object_get(im, "ref"));
			want = json_string_value(json_object_get(im, "digest"));
			svc = json_string_value(json_object_get(im, "service"));
		} else
			s = json_string_value(im);
		if (s == NULL || ref_parse(&ref, s, &why) == -1) {
			snprintf(msg, len,
			    "invalid image reference '%.200s': %s",
			    s != NULL ? s : "(not a string)",
			    s != NULL ? why : "");
			return -1;
		}
		if (want != NULL && !job_valid_want(want)) {
			snprintf(msg, len,
			    "invalid digest '%.80s' for '%.200s': want "
			    "sha256:<hex> or at least 8 hex digits",
			    want, s);
			return -1;
		}
		ref_format(&ref, ev->w[i].ref, sizeof ev->w[i].ref);
		xstrlcpy(ev->w[i].want,
		    want == NULL			   ? ""
			: strncmp(want, "sha256:", 7) == 0 ? want + 7
							   : want,
		    sizeof ev->w[i].want);
		xstrlcpy(ev->w[i].service, svc != NULL ? svc : "",
		    sizeof ev->w[i].service);
		ev->n++;
	}
	return 0;
}

/*
 * POST enroll {"recipe", "versions": [{"version", "reason", "images":
 * [REF | {"ref", "digest", "service"}]}], "replace": REASON, "window": N,
 * "source", "path", "flags", "platforms", "rewarm": bool}.  The versions
 * sent are (re)started and gain their reason; with "replace", versions
 * not sent lose that reason (the window moved); "rewarm" restarts the
 * recipe's other versions too.  A version left with no reason is
 * unpinned.  The first form {"recipe", "version", "images"} is one
 * checkout version.  The reply is the recipe's status plus "added" and
 * "unpinned" versions.
 */
static void
job_admin_enroll(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	struct job_enroll_ver ev[JOB_MAX_VERSIONS];
	json_t *root, *vers, *v, *added, *unpinned, *o, *legacy = NULL;
	const char *body, *recipe, *s;
	struct job_recipe *rec;
	struct job *j, *next;
	unsigned replace = 0;
	size_t nev = 0, i, k;
	char msg[400];
	int rewarm, sent;

	memset(ev, 0, sizeof ev);
	msg[0] = '\0';
	body = req_body(r, NULL);
	root = body != NULL ? json_loads(body, 0, NULL) : NULL;
	recipe = json_string_value(json_object_get(root, "recipe"));
	vers = json_object_get(root, "versions");
	if (vers == NULL && json_object_get(root, "images") != NULL) {
		s = json_string_value(json_object_get(root, "version"));
		legacy = json_pack("[{s:s,s:s,s:O}]", "version", s ? s : "",
		    "reason", "checkout", "images",
		    json_object_get(root, "images"));
		vers = legacy;
		replace = JOB_PIN_CHECKOUT;
	}
	if (recipe == NULL || !job_valid_recipe(recipe) ||
	    !json_is_array(vers) || json_array_size(vers) > JOB_MAX_VERSIONS) {
		snprintf(msg, sizeof msg,
		    "enroll needs {\"recipe\": NAME, \"versions\": [up to %d "
		    "{\"version\", \"reason\", \"images\": [REF, ...]}]}",
		    JOB_MAX_VERSIONS);
		goto bad;
	}
	json_array_foreach(vers, i, v) {
		if (job_parse_version(v, &ev[nev++], msg, sizeof msg) == -1)
			goto bad;
		for (k = 0; k + 1 < nev; k++)
			if (strcmp(ev[k].version, ev[nev - 1].version) == 0) {
				snprintf(msg, sizeof msg,
				    "version '%.128s' is listed twice",
				    ev[k].version);
				goto bad;
			}
	}
	if ((s = json_string_value(json_object_get(root, "replace"))) != NULL) {
		replace = job_reason_parse(s);
		if (replace != JOB_PIN_WINDOW && replace != JOB_PIN_CHECKOUT) {
			snprintf(msg, sizeof msg,
			    "replace must be \"window\" or \"checkout\"");
			goto bad;
		}
	}
	if ((v = json_object_get(root, "window")) != NULL &&
	    (!json_is_integer(v) || json_integer_value(v) < 0 ||
		json_integer_value(v) > JOB_MAX_VERSIONS)) {
		snprintf(msg, sizeof msg, "window must be 0 to %d",
		    JOB_MAX_VERSIONS);
		goto bad;
	}
	rewarm = json_is_true(json_object_get(root, "rewarm"));

	/* Everything checked: apply. */
	rec = job_recipe_get(pw, recipe);
	if (json_is_integer(v))
		rec->window = json_integer_value(v);
	/* Where warm reads the recipe again: what its window (or checkout)
	 * came from; an explicit --version from elsewhere does not move it. */
	if (replace != 0 || rec->source[0] == '\0') {
		if ((s = json_string_value(json_object_get(root, "source"))) !=
		    NULL)
			xstrlcpy(rec->source, s, sizeof rec->source);
		if ((s = json_string_value(json_object_get(root, "path"))) !=
		    NULL)
			xstrlcpy(rec->path, s, sizeof rec->path);
		if (json_is_integer(json_object_get(root, "flags")))
			rec->flags = (uint64_t)json_integer_value(
			    json_object_get(root, "flags"));
	}
	job_recipe_save(pw, rec);
	added = json_array();
	unpinned = json_array();
	for (i = 0; i < nev; i++) {
		if ((j = job_find(pw, recipe, ev[i].version)) == NULL) {
			j = job_new(pw, recipe, ev[i].version);
			json_array_append_new(added, json_string(j->version));
			job_set_platforms(
			    j, json_object_get(root, "platforms"));
		} else if (json_object_get(root, "platforms") != NULL)
			job_set_platforms(
			    j, json_object_get(root, "platforms"));
		j->reasons |= ev[i].reason;
		if (j->state == JOB_RUNNING) {
			job_save(j);
			continue;
		}
		job_set_images(j, ev[i].w, ev[i].n);
		job_start(j);
	}
	for (j = TAILQ_FIRST(&pw->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->recipe, recipe) != 0)
			continue;
		for (sent = 0, i = 0; i < nev && !sent; i++)
			sent = strcmp(ev[i].version, j->version) == 0;
		if (sent)
			continue;
		if (j->reasons & replace) {
			j->reasons &= ~replace;
			if (j->reasons == 0) {
				json_array_append_new(
				    unpinned, json_string(j->version));
				job_drop(pw, j);
				continue;
			}
			job_save(j);
		}
		if (rewarm && j->state != JOB_RUNNING)
			job_start(j);
	}
	o = job_recipe_json(pw, rec);
	json_object_set_new(o, "added", added);
	json_object_set_new(o, "unpinned", unpinned);
	job_reply(r, 202, o);
	goto out;
bad:
	req_error(r, OCI_ERR_NAME_INVALID, msg);
out:
	for (i = 0; i < nev; i++)
		free(ev[i].w);
	json_decref(legacy);
	json_decref(root);
}

/*
 * DELETE recipes/NAME@VERSION: that version loses its explicit (and
 * checkout) pin; pinned by the window still, it stays.  The reply is the
 * recipe's status plus "unpinned".
 */
static void
job_admin_unenroll_version(struct req *r, struct prewarm *pw, const char *arg)
{
	char recipe[128];
	const char *version = strchr(arg, '@') + 1;
	struct job_recipe *rec;
	json_t *o, *unpinned = json_array();
	struct job *j;

	snprintf(recipe, sizeof recipe, "%.*s", (int)(version - 1 - arg), arg);
	if ((rec = job_recipe_find(pw, recipe)) == NULL ||
	    (j = job_find(pw, recipe, version)) == NULL) {
		json_decref(unpinned);
		req_error(r, OCI_ERR_NAME_UNKNOWN, "version is not enrolled");
		return;
	}
	j->reasons &= ~(unsigned)(JOB_PIN_EXPLICIT | JOB_PIN_CHECKOUT);
	if (j->reasons == 0) {
		json_array_append_new(unpinned, json_string(j->version));
		job_drop(pw, j);
	} else
		job_save(j);
	o = job_recipe_json(pw, rec);
	json_object_set_new(o, "unpinned", unpinned);
	job_reply(r, 200, o);
}

static void
job_admin_unenroll(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	const char *recipe = req_admin_arg(r);
	struct job_recipe *rec;
	struct job *j, *next;
	char id[300];
	int rc = 0;

	if (strchr(recipe, '@') != NULL) {
		job_admin_unenroll_version(r, pw, recipe);
		return;
	}
	if ((rec = job_recipe_find(pw, recipe)) == NULL) {
		req_error(r, OCI_ERR_NAME_UNKNOWN, "recipe is not enrolled");
		return;
	}
	for (j = TAILQ_FIRST(&pw->jobs); j != NULL; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (strcmp(j->recipe, recipe) != 0)
			continue;
		TAILQ_REMOVE(&pw->jobs, j, entry);
		job_id(j, id, sizeof id);
		if (db_job_del(pw->srv->db, id) == -1)
			rc = -1;
		job_free(j);
	}
	TAILQ_REMOVE(&pw->recipes, rec, entry);
	if (db_job_del(pw->srv->db, rec->name) == -1 ||
	    db_pins_del(pw->srv->db, rec->name) == -1)
		rc = -1;
	log_info("pre-warm '%s': unenrolled; its pins are released", rec->name);
	free(rec);
	if (rc == -1) {
		req_error(r, OCI_ERR_INTERNAL, "cannot remove the enrolment");
		return;
	}
	req_reply_mem(r, 200, "application/json", NULL, "{}", 2);
}

static void
job_admin_status(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	struct job_recipe *rec;
	json_t *o;

	if ((rec = job_recipe_find(pw, req_admin_arg(r))) == NULL) {
		req_error(r, OCI_ERR_NAME_UNKNOWN, "recipe is not enrolled");
		return;
	}
	o = job_recipe_json(pw, rec);
	/* the store cannot hold every pin within its budget (all kept) */
	json_object_set_new(
	    o, "pins_over_budget", json_boolean(evict_pins_over(pw->srv)));
	job_reply(r, 200, o);
}

static void
job_admin_list(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *a = json_array();
	struct job_recipe *rec;

	TAILQ_FOREACH(rec, &pw->recipes, entry)
		json_array_append_new(a, job_recipe_json(pw, rec));
	job_reply(r, 200, a);
}

/* GET settings: what the CLI needs to choose versions the daemon's way. */
static void
job_admin_settings(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *plats = json_array();
	size_t i;

	for (i = 0; i < pw->nplatforms; i++)
		json_array_append_new(plats, json_string(pw->platforms[i]));
	job_reply(r, 200,
	    json_pack("{s:I,s:o}", "recipe_versions", (json_int_t)pw->window,
		"platforms", plats));
}

/* POST warm: re-resolve every enrolled version and fetch what is new. */
static void
job_admin_warm(struct req *r, void *arg)
{
	struct prewarm *pw = arg;
	json_t *a = json_array();
	struct job_recipe *rec;
	struct job *j;

	TAILQ_FOREACH(j, &pw->jobs, entry)
		if (j->state != JOB_RUNNING)
			job_start(j);
	TAILQ_FOREACH(rec, &pw->recipes, entry)
		json_array_append_new(a, job_recipe_json(pw, rec));
	job_reply(r, 202, a);
}

static void
job_metrics(struct evbuffer *b, void *arg)
{
	struct prewarm *pw = arg;
	static const char *const vstates[] = {"warm", "pending", "failed"};
	struct job_recipe *rec;
	json_t *o, *e;
	const char *st;
	size_t i, c[3], vc[3];

	evbuffer_add_printf(b,
	    "# HELP ccprewarm_recipe_images Images of "
	    "enrolled recipes by state.\n# TYPE ccprewarm_recipe_images "
	    "gauge\n");
	TAILQ_FOREACH(rec, &pw->recipes, entry) {
		o = job_recipe_json(pw, rec);
		memset(c, 0, sizeof c);
		json_array_foreach(json_object_get(o, "images"), i, e) {
			st = json_string_value(json_object_get(e, "state"));
			c[job_image_rank(st) == 2	  ? 2
				: job_image_rank(st) == 1 ? 0
							  : 1]++;
		}
		for (i = 0; i < 3; i++)
			evbuffer_add_printf(b,
			    "ccprewarm_recipe_images{recipe="
			    "\"%s\",state=\"%s\"} %zu\n",
			    rec->name, job_image_state_names[i], c[i]);
		json_decref(o);
	}
	evbuffer_add_printf(b,
	    "# HELP ccprewarm_recipe_versions Enrolled versions of recipes "
	    "by state (pending: queued or running).\n# TYPE "
	    "ccprewarm_recipe_versions gauge\n");
	TAILQ_FOREACH(rec, &pw->recipes, entry) {
		const struct job *j;

		memset(vc, 0, sizeof vc);
		TAILQ_FOREACH(j, &pw->jobs, entry)
			if (strcmp(j->recipe, rec->name) == 0)
				vc[j->state == JOB_DONE		 ? 0
					: j->state == JOB_FAILED ? 2
								 : 1]++;
		for (i = 0; i < 3; i++)
			evbuffer_add_printf(b,
			    "ccprewarm_recipe_versions{recipe="
			    "\"%s\",state=\"%s\"} %zu\n",
			    rec->name, vstates[i], vc[i]);
	}
}

/* Start-up -------------------------------------------------------------- */

static void
job_load_recipe(struct prewarm *pw, const char *id, struct job_rd *rd)
{
	struct job_recipe *rec = job_recipe_get(pw, id);

	rec->window = (int64_t)job_get_u64(rd);
	rec->flags = job_get_u64(rd);
	job_get_str(rd, rec->source, sizeof rec->source);
	job_get_str(rd, rec->path, sizeof rec->path);
	if (rd->bad)
		log_warn("enrolment record '%s' is damaged; re-enroll it", id);
}

static void
job_load_cb(void *arg, const char *id, const void *val, size_t len)
{
	struct prewarm *pw = arg;
	struct job_rd rd = {val, len, 0, 0};
	char version[128], buf[REF_STRLEN], err[200], recipe[128];
	struct job *j;
	uint64_t n, i;
	int state, v2;

	if (len >= 1 && rd.p[0] == JOB_RECORD_RECIPE) {
		rd.off = 1;
		job_load_recipe(pw, id, &rd);
		return;
	}
	if (len < 2 ||
	    (rd.p[0] != JOB_RECORD_VERSION && rd.p[0] != JOB_RECORD_V1)) {
		log_warn("ignoring job record '%s' of an unknown layout", id);
		return;
	}
	v2 = rd.p[0] == JOB_RECORD_VERSION;
	xstrlcpy(recipe, id, sizeof recipe);
	if (v2 && strchr(recipe, '@') != NULL)
		*strchr(recipe, '@') = '\0';
	state = rd.p[1];
	rd.off = 2;
	job_get_str(&rd, version, sizeof version);
	j = job_new(pw, recipe, version);
	j->state = state <= JOB_FAILED ? (enum job_state)state : JOB_FAILED;
	j->started_at = (int64_t)job_get_u64(&rd);
	j->finished_at = (int64_t)job_get_u64(&rd);
	j->bytes_total = job_get_u64(&rd);
	n = job_get_u64(&rd);
	if (n > JOB_MAX_IMAGES)
		rd.bad = 1;
	j->images = xcalloc(n == 0 ? 1 : n, sizeof *j->images);
	for (i = 0; i < n && !rd.bad; i++) {
		job_get_str(&rd, buf, sizeof buf);
		xstrlcpy(j->images[i].ref, buf, sizeof j->images[i].ref);
		if (rd.off < rd.len)
			j->images[i].state = rd.p[rd.off++] <= JOB_IMG_FAILED
			    ? rd.p[rd.off - 1]
			    : JOB_IMG_FAILED;
		job_get_str(&rd, err, sizeof err);
		xstrlcpy(j->images[i].error, err, sizeof j->images[i].error);
		if (v2) {
			job_get_str(
			    &rd, j->images[i].want, sizeof j->images[i].want);
			job_get_str(&rd, j->images[i].service,
			    sizeof j->images[i].service);
		}
		j->nimages++;
	}
	/* platforms came later: absent in older records */
	if (!rd.bad && rd.off < rd.len) {
		n = job_get_u64(&rd);
		for (i = 0; i < n && i < nitems(j->platforms) && !rd.bad; i++)
			job_get_str(&rd, j->platforms[j->nplatforms++], 48);
	}
	if (v2 && !rd.bad && rd.off + 2 <= rd.len) {
		j->reasons = rd.p[rd.off] & 0x7;
		j->pinned = rd.p[rd.off + 1] != 0;
	}
	if (!v2) {
		/* one job per recipe, keyed by the recipe: now one version
		 * (pinned when it was warm), keyed "recipe@version" */
		j->reasons = JOB_PIN_CHECKOUT;
		j->pinned = j->state == JOB_DONE;
		if (db_job_del(pw->srv->db, id) == -1)
			log_warn("cannot rewrite the old job record '%s'", id);
		job_save(j);
	}
	if (j->reasons == 0)
		j->reasons = JOB_PIN_EXPLICIT;
	if (rd.bad)
		log_warn("job record '%s' is damaged; re-enroll it", id);
}

/* Jobs that were running when the daemon stopped carry on. */
static void
job_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct prewarm *pw = arg;
	struct job *j;

	(void)fd;
	(void)what;
	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (j->state == JOB_RUNNING || j->state == JOB_QUEUED) {
			log_info(
			    "pre-warm '%s'%s%s: resuming an interrupted job",
			    j->recipe, j->version[0] ? " " : "", j->version);
			job_start(j);
		}
	}
}

struct prewarm *
prewarm_new(struct server *srv, const char *const *platforms, size_t n)
{
	struct prewarm *pw = xcalloc(1, sizeof *pw);
	struct job_recipe *rec;
	struct job *j;
	size_t i;

	pw->srv = srv;
	pw->window = JOB_DEFAULT_WINDOW;
	TAILQ_INIT(&pw->jobs);
	TAILQ_INIT(&pw->recipes);
	for (i = 0; i < n && i < nitems(pw->platforms); i++)
		xstrlcpy(
		    pw->platforms[i], platforms[i], sizeof pw->platforms[i]);
	pw->nplatforms = i;
	if (pw->nplatforms == 0)
		job_native_platform(
		    pw->platforms[pw->nplatforms++], sizeof pw->platforms[0]);
	if (db_job_list(srv->db, job_load_cb, pw) == -1) {
		prewarm_free(pw);
		return NULL;
	}
	/* every version has its recipe (older stores had none) */
	TAILQ_FOREACH(j, &pw->jobs, entry) {
		if (job_recipe_find(pw, j->recipe) != NULL)
			continue;
		rec = job_recipe_get(pw, j->recipe);
		xstrlcpy(rec->source, "dir", sizeof rec->source);
		job_recipe_save(pw, rec);
	}
	admin_add(srv, "enroll", REQ_POST, job_admin_enroll, pw);
	admin_add(srv, "recipes", REQ_GET, job_admin_list, pw);
	admin_add(srv, "recipes/", REQ_GET, job_admin_status, pw);
	admin_add(srv, "recipes/", REQ_DELETE, job_admin_unenroll, pw);
	admin_add(srv, "warm", REQ_POST, job_admin_warm, pw);
	admin_add(srv, "settings", REQ_GET, job_admin_settings, pw);
	metrics_add(srv, job_metrics, pw);
	if ((pw->resume_ev = evtimer_new(srv->base, job_resume_cb, pw)) == NULL)
		fatal("out of memory creating the resume timer");
	event_active(pw->resume_ev, EV_TIMEOUT, 0);
	return pw;
}

void
prewarm_set_versions(struct prewarm *pw, int64_t n)
{
	pw->window = n;
}

void
prewarm_free(struct prewarm *pw)
{
	struct job_recipe *rec;
	struct job *j;

	if (pw == NULL)
		return;
	while ((j = TAILQ_FIRST(&pw->jobs)) != NULL) {
		TAILQ_REMOVE(&pw->jobs, j, entry);
		job_free(j);
	}
	while ((rec = TAILQ_FIRST(&pw->recipes)) != NULL) {
		TAILQ_REMOVE(&pw->recipes, rec, entry);
		free(rec);
	}
	if (pw->resume_ev != NULL)
		event_free(pw->resume_ev);
	free(pw);
}
