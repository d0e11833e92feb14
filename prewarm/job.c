/*
 * prewarm/job.c: one enrolled (recipe, version), fetched and pinned.  Its
 * image references are resolved through the mirror's own upstream routing
 * (tag -> index -> the configured platforms' manifests -> config +
 * layers), every missing digest is fetched through the same single-flight
 * fills that clients use, with bounded parallelism, and when the closure
 * is complete it is pinned under (recipe, version).  Jobs are durable: the
 * record in LMDB (encoded and decoded here) is rewritten as images finish,
 * and enrol.c resumes interrupted ones at start-up, skipping what is
 * already stored.
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
#include "internal.h"

#define JOB_PARALLEL 4

const char *const job_state_names[4] = {"queued", "running", "warm", "failed"};
const char *const job_image_state_names[3] = {"pending", "warm", "failed"};
const char *const job_reason_names[3] = {"window", "explicit", "checkout"};

enum job_op_kind { JOB_OP_TAG, JOB_OP_MANIFEST, JOB_OP_BLOB };

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

static void job_pump(struct job *);
static void job_op_done(struct job_op *, const char *why);

/* "linux/amd64" for this machine, as docker names it. */
void
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

void
job_put_str(struct evbuffer *b, const char *s)
{
	uint16_t n = (uint16_t)strlen(s);
	unsigned char len[2] = {n & 0xff, n >> 8};

	evbuffer_add(b, len, 2);
	evbuffer_add(b, s, n);
}

void
job_put_u64(struct evbuffer *b, uint64_t v)
{
	unsigned char x[8];
	int i;

	for (i = 0; i < 8; i++)
		x[i] = (v >> (8 * i)) & 0xff;
	evbuffer_add(b, x, 8);
}

/* The record id of a version: "recipe@version" ('@' is no recipe char). */
void
job_id(const struct job *j, char *buf, size_t len)
{
	snprintf(buf, len, "%s@%s", j->recipe, j->version);
}

void
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
	if (db_job_put(server_db(j->pw->srv), id, evbuffer_pullup(b, -1),
		evbuffer_get_length(b)) == -1)
		log_warn("cannot record the progress of '%s'", id);
	evbuffer_free(b);
}

uint64_t
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

void
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

struct job *
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

void
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
struct job *
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

void
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
void
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
	    db_pins_set(server_db(j->pw->srv), j->recipe, j->version,
		j->closure, j->nclosure) == 0) {
		j->state = JOB_DONE;
		j->pinned = 1;
		log_info(
		    "pre-warm '%s'%s%s: warm and pinned: %zu images, %zu digests, %" PRIu64
		    " bytes (%" PRIu64 " fetched)",
		    j->recipe, j->version[0] ? " " : "", j->version, j->nimages,
		    j->nclosure, j->bytes_total, j->bytes_fetched);
	} else {
		j->state = JOB_FAILED;
		log_warn(
		    "pre-warm '%s'%s%s: %zu of %zu images failed; not pinned",
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
	if ((fd = blobstore_open_blob(server_store(pw->srv), d, &size)) == -1)
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
			    "no manifest for the configured platforms");
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
	    "catalogue digest mismatch for service '%s': catalogue has sha256:%.64s, upstream serves %s",
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
		if (db_tag_get(server_db(srv), upstream_name(im->up),
			im->parsed.repo, im->parsed.tag, &t) == 0 &&
		    clock_wall_s() - t.confirmed_at <
			server_opts(srv)->tag_freshness_s &&
		    db_blob_get(server_db(srv), &t.digest, &meta) == 0) {
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
		if (db_blob_get(server_db(srv), &op->digest, &meta) == 0 &&
		    blobstore_has(server_store(srv), &op->digest)) {
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

void
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
			    "registry '%s' is not a configured upstream",
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

json_t *
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
json_t *
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

/* Loading a record ------------------------------------------------------ */

void
job_load(struct prewarm *pw, const char *id, const void *val, size_t len)
{
	struct job_rd rd = {val, len, 0, 0};
	char version[128], buf[REF_STRLEN], err[200], recipe[128];
	struct job *j;
	uint64_t n, i;
	int state, v2;

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
		if (db_job_del(server_db(pw->srv), id) == -1)
			log_warn("cannot rewrite the old job record '%s'", id);
		job_save(j);
	}
	if (j->reasons == 0)
		j->reasons = JOB_PIN_EXPLICIT;
	if (rd.bad)
		log_warn("job record '%s' is damaged; re-enroll it", id);
}
