/*
 * prewarm/record.c: a run's record.  The binary layout kept in LMDB
 * (versioned, little-endian, every length checked on decode), the JSON the
 * admin API answers with, and the comparison `runs compare` prints.  Pure
 * functions: no I/O, no event loop.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "prewarm.h"

#define RECORD_VERSION 1

int
record_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > RUN_NAME_MAX || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '_' || c == '.' ||
			c == '-'))
			return 0;
	}
	return 1;
}

int
record_label_parse(struct run_label *l, const char *kv, const char **why)
{
	const char *eq = strchr(kv, '=');
	size_t klen;
	const char *p;

	memset(l, 0, sizeof *l);
	if (eq == NULL || eq == kv) {
		*why = "label is not KEY=VALUE";
		return -1;
	}
	klen = (size_t)(eq - kv);
	if (klen >= sizeof l->key) {
		*why = "label key too long";
		return -1;
	}
	memcpy(l->key, kv, klen);
	if (!record_name_valid(l->key)) {
		*why = "label key has characters other than [A-Za-z0-9_.-]";
		return -1;
	}
	if (strlen(eq + 1) >= sizeof l->value) {
		*why = "label value too long";
		return -1;
	}
	for (p = eq + 1; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*why = "label value has control characters";
			return -1;
		}
	}
	xstrlcpy(l->value, eq + 1, sizeof l->value);
	return 0;
}

void
record_release(struct run_rec *rec)
{
	free(rec->images);
	rec->images = NULL;
	rec->nimages = 0;
}

enum run_state
record_fig_state(const struct run_fig *f)
{
	uint64_t up = f->misses + f->coalesced;

	if (f->hits == 0 && up == 0)
		return RUN_STATE_NONE;
	if (up == 0)
		return RUN_STATE_WARM;
	if (f->hits == 0)
		return RUN_STATE_COLD;
	return RUN_STATE_PARTLY;
}

const char *
record_state_name(enum run_state s)
{
	static const char *const names[] = {
	    [RUN_STATE_NONE] = "none",
	    [RUN_STATE_COLD] = "cold",
	    [RUN_STATE_WARM] = "warm",
	    [RUN_STATE_PARTLY] = "partly warm",
	};

	return names[s];
}

int64_t
record_fig_wall_ms(const struct run_fig *f)
{
	return f->first_ms == 0 || f->last_ms < f->first_ms
	    ? 0
	    : f->last_ms - f->first_ms;
}

double
record_fig_hit_ratio(const struct run_fig *f)
{
	uint64_t n = f->hits + f->misses + f->coalesced;

	return n == 0 ? -1 : (double)f->hits / (double)n;
}

/* Encoding ----------------------------------------------------------------- */

struct record_wr {
	unsigned char *p;
	size_t len, cap;
};

static void
record_put(struct record_wr *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2;
		w->p = xreallocarray(w->p, w->cap, 1);
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void
record_put_u64(struct record_wr *w, uint64_t v)
{
	unsigned char b[8];
	size_t i;

	for (i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	record_put(w, b, 8);
}

static void
record_put_str(struct record_wr *w, const char *s)
{
	size_t n = strlen(s);
	unsigned char b[2] = {(unsigned char)n, (unsigned char)(n >> 8)};

	record_put(w, b, 2);
	record_put(w, s, n);
}

static void
record_put_fig(struct record_wr *w, const struct run_fig *f)
{
	record_put_u64(w, (uint64_t)f->first_ms);
	record_put_u64(w, (uint64_t)f->last_ms);
	record_put_u64(w, f->requests);
	record_put_u64(w, f->hits);
	record_put_u64(w, f->misses);
	record_put_u64(w, f->coalesced);
	record_put_u64(w, f->errors);
	record_put_u64(w, f->cache_bytes);
	record_put_u64(w, f->upstream_bytes);
	record_put_u64(w, (uint64_t)f->upstream_wait_ms);
}

void *
record_encode(const struct run_rec *rec, size_t *len)
{
	struct record_wr w = {NULL, 0, 0};
	unsigned char v = RECORD_VERSION;
	size_t i;

	record_put(&w, &v, 1);
	record_put_str(&w, rec->name);
	record_put_str(&w, rec->client);
	record_put_u64(&w, (uint64_t)rec->begun_at);
	record_put_u64(&w, (uint64_t)rec->ended_at);
	record_put_u64(&w, rec->nlabels);
	for (i = 0; i < rec->nlabels; i++) {
		record_put_str(&w, rec->labels[i].key);
		record_put_str(&w, rec->labels[i].value);
	}
	record_put_str(&w, rec->overlapped);
	record_put_fig(&w, &rec->total);
	record_put_u64(&w, rec->unattributed);
	record_put_u64(&w, rec->dropped);
	record_put_u64(&w, rec->nimages);
	for (i = 0; i < rec->nimages; i++) {
		record_put_str(&w, rec->images[i].ref);
		record_put_fig(&w, &rec->images[i].fig);
	}
	*len = w.len;
	return w.p;
}

/* Decoding: every read checks what is left; a short record fails. */
struct record_rd {
	const unsigned char *p;
	size_t left;
	int bad;
};

static uint64_t
record_get_u64(struct record_rd *r)
{
	uint64_t v = 0;
	size_t i;

	if (r->left < 8) {
		r->bad = 1;
		return 0;
	}
	for (i = 0; i < 8; i++)
		v |= (uint64_t)r->p[i] << (8 * i);
	r->p += 8;
	r->left -= 8;
	return v;
}

static void
record_get_str(struct record_rd *r, char *out, size_t outlen)
{
	size_t n;

	out[0] = '\0';
	if (r->left < 2) {
		r->bad = 1;
		return;
	}
	n = (size_t)r->p[0] | (size_t)r->p[1] << 8;
	r->p += 2;
	r->left -= 2;
	if (n > r->left || n >= outlen || memchr(r->p, '\0', n) != NULL) {
		r->bad = 1;
		return;
	}
	memcpy(out, r->p, n);
	out[n] = '\0';
	r->p += n;
	r->left -= n;
}

static void
record_get_fig(struct record_rd *r, struct run_fig *f)
{
	f->first_ms = (int64_t)record_get_u64(r);
	f->last_ms = (int64_t)record_get_u64(r);
	f->requests = record_get_u64(r);
	f->hits = record_get_u64(r);
	f->misses = record_get_u64(r);
	f->coalesced = record_get_u64(r);
	f->errors = record_get_u64(r);
	f->cache_bytes = record_get_u64(r);
	f->upstream_bytes = record_get_u64(r);
	f->upstream_wait_ms = (int64_t)record_get_u64(r);
}

int
record_decode(struct run_rec *rec, const void *buf, size_t len)
{
	struct record_rd r = {buf, len, 0};
	uint64_t n;
	size_t i;

	memset(rec, 0, sizeof *rec);
	if (len < 1 || r.p[0] != RECORD_VERSION)
		return -1;
	r.p++;
	r.left--;
	record_get_str(&r, rec->name, sizeof rec->name);
	record_get_str(&r, rec->client, sizeof rec->client);
	rec->begun_at = (int64_t)record_get_u64(&r);
	rec->ended_at = (int64_t)record_get_u64(&r);
	n = record_get_u64(&r);
	if (r.bad || n > RUN_LABELS_MAX)
		goto bad;
	rec->nlabels = (size_t)n;
	for (i = 0; i < rec->nlabels; i++) {
		record_get_str(
		    &r, rec->labels[i].key, sizeof rec->labels[i].key);
		record_get_str(
		    &r, rec->labels[i].value, sizeof rec->labels[i].value);
	}
	record_get_str(&r, rec->overlapped, sizeof rec->overlapped);
	record_get_fig(&r, &rec->total);
	rec->unattributed = record_get_u64(&r);
	rec->dropped = record_get_u64(&r);
	n = record_get_u64(&r);
	/* each image takes at least 2 + 80 bytes */
	if (r.bad || n > r.left / 82)
		goto bad;
	rec->images = xcalloc(n > 0 ? (size_t)n : 1, sizeof *rec->images);
	rec->nimages = (size_t)n;
	for (i = 0; i < rec->nimages; i++) {
		record_get_str(
		    &r, rec->images[i].ref, sizeof rec->images[i].ref);
		record_get_fig(&r, &rec->images[i].fig);
	}
	if (r.bad || r.left != 0)
		goto bad;
	return 0;
bad:
	record_release(rec);
	return -1;
}

/* JSON ------------------------------------------------------------------- */

static void
record_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
record_json_fig(FILE *f, const struct run_fig *g)
{
	double ratio = record_fig_hit_ratio(g);

	fprintf(f,
	    "\"state\":\"%s\",\"first_ms\":%" PRId64 ",\"last_ms\":%" PRId64
	    ",\"wall_ms\":%" PRId64 ",\"requests\":%" PRIu64
	    ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64
	    ",\"coalesced\":%" PRIu64 ",\"errors\":%" PRIu64
	    ",\"cache_bytes\":%" PRIu64 ",\"upstream_bytes\":%" PRIu64
	    ",\"upstream_wait_ms\":%" PRId64 ",\"hit_ratio\":",
	    record_state_name(record_fig_state(g)), g->first_ms, g->last_ms,
	    record_fig_wall_ms(g), g->requests, g->hits, g->misses,
	    g->coalesced, g->errors, g->cache_bytes, g->upstream_bytes,
	    g->upstream_wait_ms);
	if (ratio < 0)
		fputs("null", f);
	else
		fprintf(f, "%.4f", ratio);
}

char *
record_json(const struct run_rec *rec, enum run_json_flags flags)
{
	char *out = NULL, *save = NULL, *w;
	char tmp[sizeof rec->overlapped];
	size_t len = 0, i;
	int first = 1;
	FILE *f;

	if ((f = open_memstream(&out, &len)) == NULL)
		fatal("out of memory writing a run record");
	fputs("{\"name\":", f);
	record_json_str(f, rec->name);
	fputs(",\"client\":", f);
	if (rec->client[0] != '\0')
		record_json_str(f, rec->client);
	else
		fputs("null", f);
	fprintf(f, ",\"begun_at\":%" PRId64 ",\"ended_at\":%" PRId64,
	    rec->begun_at, rec->ended_at);
	fprintf(f, ",\"baseline\":%s",
	    (flags & RUN_JSON_BASELINE) ? "true" : "false");
	fputs(",\"labels\":{", f);
	for (i = 0; i < rec->nlabels; i++) {
		if (i > 0)
			fputc(',', f);
		record_json_str(f, rec->labels[i].key);
		fputc(':', f);
		record_json_str(f, rec->labels[i].value);
	}
	fputs("},\"overlapped\":[", f);
	xstrlcpy(tmp, rec->overlapped, sizeof tmp);
	for (w = strtok_r(tmp, " ", &save); w != NULL;
	     w = strtok_r(NULL, " ", &save)) {
		if (!first)
			fputc(',', f);
		first = 0;
		record_json_str(f, w);
	}
	fprintf(f,
	    "],\"unattributed\":%" PRIu64 ",\"dropped\":%" PRIu64
	    ",\"nimages\":%zu,\"total\":{",
	    rec->unattributed, rec->dropped, rec->nimages);
	record_json_fig(f, &rec->total);
	fputc('}', f);
	if (flags & RUN_JSON_IMAGES) {
		fputs(",\"images\":[", f);
		for (i = 0; i < rec->nimages; i++) {
			fputs(i > 0 ? ",{\"ref\":" : "{\"ref\":", f);
			record_json_str(f, rec->images[i].ref);
			fputc(',', f);
			record_json_fig(f, &rec->images[i].fig);
			fputc('}', f);
		}
		fputc(']', f);
	}
	fputc('}', f);
	if (fclose(f) != 0 || out == NULL)
		fatal("out of memory writing a run record");
	return out;
}

/* Comparison ----------------------------------------------------------- */

const char *
record_mark_name(enum run_mark m)
{
	static const char *const names[] = {
	    [RUN_MARK_NA] = "n/a",
	    [RUN_MARK_SAME] = "same",
	    [RUN_MARK_BETTER] = "better",
	    [RUN_MARK_WORSE] = "worse",
	};

	return names[m];
}

/* How each figure is read off a run_fig and which way is better. */
static double
record_wall(const struct run_fig *f)
{
	return (double)record_fig_wall_ms(f);
}

static double
record_upstream(const struct run_fig *f)
{
	return (double)f->upstream_bytes;
}

static double
record_ratio(const struct run_fig *f)
{
	return record_fig_hit_ratio(f);
}

static const struct record_fig_def {
	double (*get)(const struct run_fig *);
	int higher_is_better;
	double slack; /* absolute change never marked */
} record_figs[RUN_NFIGS] = {
    [RUN_FIG_WALL] = {record_wall, 0, RUN_WALL_SLACK_MS},
    [RUN_FIG_UPSTREAM] = {record_upstream, 0, 0},
    [RUN_FIG_RATIO] = {record_ratio, 1, 0},
};

static double
record_abs(double x)
{
	return x < 0 ? -x : x;
}

static enum run_mark
record_mark(const struct record_fig_def *def, double base, double next,
    double threshold_pct)
{
	double diff, limit;

	if (base < 0 || next < 0) /* a ratio of nothing */
		return RUN_MARK_NA;
	diff = def->higher_is_better ? base - next : next - base;
	limit = record_abs(base) * threshold_pct / 100.0;
	if (record_abs(diff) <= def->slack)
		return RUN_MARK_SAME;
	if (diff > limit && diff > 0)
		return RUN_MARK_WORSE;
	if (-diff > limit && diff < 0)
		return RUN_MARK_BETTER;
	return RUN_MARK_SAME;
}

static void
record_row(struct run_cmp_row *row, const struct run_fig *b,
    const struct run_fig *n, double threshold_pct)
{
	size_t i;

	for (i = 0; i < RUN_NFIGS; i++) {
		row->d[i].base = b != NULL ? record_figs[i].get(b) : -1;
		row->d[i].next = n != NULL ? record_figs[i].get(n) : -1;
		row->d[i].mark = b != NULL && n != NULL
		    ? record_mark(&record_figs[i], row->d[i].base,
			  row->d[i].next, threshold_pct)
		    : RUN_MARK_NA;
	}
}

static const struct run_image *
record_find(const struct run_rec *rec, const char *ref)
{
	size_t i;

	for (i = 0; i < rec->nimages; i++)
		if (strcmp(rec->images[i].ref, ref) == 0)
			return &rec->images[i];
	return NULL;
}

struct run_cmp_row *
record_compare(const struct run_rec *base, const struct run_rec *next,
    double threshold_pct, size_t *n)
{
	struct run_cmp_row *rows;
	const struct run_image *b;
	size_t i, k = 0;

	rows = xcalloc(base->nimages + next->nimages + 1, sizeof *rows);
	for (i = 0; i < next->nimages; i++) {
		b = record_find(base, next->images[i].ref);
		xstrlcpy(rows[k].ref, next->images[i].ref, sizeof rows[k].ref);
		rows[k].in_base = b != NULL;
		rows[k].in_next = 1;
		record_row(&rows[k++], b != NULL ? &b->fig : NULL,
		    &next->images[i].fig, threshold_pct);
	}
	for (i = 0; i < base->nimages; i++) {
		if (record_find(next, base->images[i].ref) != NULL)
			continue;
		xstrlcpy(rows[k].ref, base->images[i].ref, sizeof rows[k].ref);
		rows[k].in_base = 1;
		record_row(
		    &rows[k++], &base->images[i].fig, NULL, threshold_pct);
	}
	rows[k].in_base = rows[k].in_next = 1;
	record_row(&rows[k++], &base->total, &next->total, threshold_pct);
	*n = k;
	return rows;
}

int
record_compare_worse(const struct run_cmp_row *rows, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < RUN_NFIGS; j++)
			if (rows[i].d[j].mark == RUN_MARK_WORSE)
				return 1;
	return 0;
}
