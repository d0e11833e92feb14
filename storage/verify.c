/*
 * storage/verify.c: the store against its index.  Every file under
 * blobs/sha256 must be named by an index entry and hash to its name, every
 * entry must have its file, pin counts must be what the pins table says,
 * and nothing but resumable partial fills may sit in tmp/.  `verify` runs
 * it with re-hashing; start-up runs the cheap half (no hashing) and repairs.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "storage.h"

static const char *const verify_kind_names[] = {
    "corrupt", "missing", "orphan", "stray", "pins", "temp"};

const char *
verify_kind_name(enum verify_kind k)
{
	return verify_kind_names[k];
}

struct verify_scan {
	struct blobstore *bs;
	struct verify_report *rep;
	enum verify_flags flags;
	struct db_entry *ents;
	unsigned char *seen;
	size_t n;
};

static struct verify_problem *
verify_add(struct verify_report *rep, enum verify_kind kind,
    const struct digest *d, const char *path)
{
	struct verify_problem *p;

	rep->p = xreallocarray(rep->p, rep->n + 1, sizeof *rep->p);
	p = &rep->p[rep->n++];
	memset(p, 0, sizeof *p);
	p->kind = kind;
	if (d != NULL)
		p->digest = *d;
	p->path = path != NULL ? xstrdup(path) : NULL;
	return p;
}

static int
verify_ent_cmp(const void *key, const void *ent)
{
	return memcmp(
	    key, ((const struct db_entry *)ent)->digest.b, DIGEST_LEN);
}

static void
verify_file_cb(void *arg, const struct digest *d, const char *path)
{
	struct verify_scan *s = arg;
	struct db_entry *e;
	struct digest got;
	struct stat st;

	s->rep->files++;
	if (d == NULL) {
		verify_add(s->rep, VERIFY_STRAY, NULL, path);
		return;
	}
	e = s->n > 0
	    ? bsearch(d->b, s->ents, s->n, sizeof *s->ents, verify_ent_cmp)
	    : NULL;
	if (e == NULL) {
		verify_add(s->rep, VERIFY_ORPHAN, d, path);
		return;
	}
	s->seen[e - s->ents] = 1;
	if (stat(path, &st) == -1 || (uint64_t)st.st_size != e->b.size) {
		verify_add(s->rep, VERIFY_CORRUPT, d, path);
		return;
	}
	if (!(s->flags & VERIFY_REHASH))
		return;
	s->rep->hashed_bytes += e->b.size;
	if (blobstore_hash(s->bs, d, &got) == -1 || !digest_equal(&got, d))
		verify_add(s->rep, VERIFY_CORRUPT, d, path);
}

static void
verify_pins_cb(void *arg, const struct digest *d, uint32_t have, uint32_t want)
{
	struct verify_problem *p;

	p = verify_add(arg, VERIFY_PINS, d, NULL);
	p->have = have;
	p->want = want;
}

static void
verify_tmp_cb(void *arg, const char *path)
{
	verify_add(arg, VERIFY_TEMP, NULL, path);
}

static int
verify_ent_sort(const void *a, const void *b)
{
	return memcmp(((const struct db_entry *)a)->digest.b,
	    ((const struct db_entry *)b)->digest.b, DIGEST_LEN);
}

int
verify_scan(struct blobstore *bs, struct db *db, enum verify_flags flags,
    struct verify_report *rep)
{
	struct verify_scan s;
	size_t i;
	int rc = -1;

	memset(rep, 0, sizeof *rep);
	memset(&s, 0, sizeof s);
	s.bs = bs;
	s.rep = rep;
	s.flags = flags;
	if (db_blob_list(db, &s.ents, &s.n) == -1)
		return -1;
	if (s.n > 1)
		qsort(s.ents, s.n, sizeof *s.ents, verify_ent_sort);
	rep->blobs = s.n;
	s.seen = xcalloc(s.n + 1, 1);
	if (blobstore_walk(bs, verify_file_cb, &s) == -1)
		goto out;
	for (i = 0; i < s.n; i++)
		if (!s.seen[i])
			verify_add(
			    rep, VERIFY_MISSING, &s.ents[i].digest, NULL);
	if (db_pins_check(db, 0, verify_pins_cb, rep) == -1)
		goto out;
	if (blobstore_walk_tmp(bs, verify_tmp_cb, rep) == -1)
		goto out;
	rc = 0;
out:
	free(s.seen);
	free(s.ents);
	return rc;
}

int
verify_repair(struct blobstore *bs, struct db *db, enum verify_flags flags,
    struct verify_report *rep)
{
	struct digest *gone = NULL;
	size_t i, ngone = 0;
	int failed = 0, pins = 0;

	for (i = 0; i < rep->n; i++) {
		struct verify_problem *p = &rep->p[i];
		int ok = 0;

		if (p->ignore)
			continue;
		switch (p->kind) {
		case VERIFY_CORRUPT:
			ok = db_blob_del(db, &p->digest) != -1 &&
			    blobstore_quarantine(bs, p->path) == 0;
			break;
		case VERIFY_MISSING:
			ok = db_blob_del(db, &p->digest) != -1;
			break;
		case VERIFY_ORPHAN:
			if (flags & VERIFY_DELETE_ORPHANS)
				ok = unlink(p->path) == 0 || errno == ENOENT;
			else
				ok = blobstore_quarantine(bs, p->path) == 0;
			break;
		case VERIFY_STRAY:
			ok = blobstore_quarantine(bs, p->path) == 0;
			break;
		case VERIFY_PINS:
			pins = 1;
			continue;
		case VERIFY_TEMP:
			ok = unlink(p->path) == 0 || errno == ENOENT;
			break;
		}
		if (ok &&
		    (p->kind == VERIFY_CORRUPT || p->kind == VERIFY_MISSING)) {
			gone = xreallocarray(gone, ngone + 1, sizeof *gone);
			gone[ngone++] = p->digest;
		}
		p->repaired = ok;
		failed += !ok;
	}
	/* tags must not name a manifest the store no longer has */
	if (ngone > 0 && db_tags_drop(db, gone, ngone) == -1)
		failed++;
	if (pins) {
		int rc = db_pins_check(db, 1, NULL, NULL);

		for (i = 0; i < rep->n; i++)
			if (rep->p[i].kind == VERIFY_PINS &&
			    !rep->p[i].ignore) {
				rep->p[i].repaired = rc != -1;
				failed += rc == -1;
			}
	}
	free(gone);
	return failed;
}

size_t
verify_count(const struct verify_report *rep)
{
	size_t i, n = 0;

	for (i = 0; i < rep->n; i++)
		n += !rep->p[i].ignore;
	return n;
}

void
verify_report_release(struct verify_report *rep)
{
	size_t i;

	for (i = 0; i < rep->n; i++)
		free(rep->p[i].path);
	free(rep->p);
	memset(rep, 0, sizeof *rep);
}
