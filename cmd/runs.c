/*
 * cmd/runs.c: `ccprewarm run begin|end` and `ccprewarm runs [show|compare|
 * baseline]`: the CLI side of pull experiments.  The daemon keeps the
 * records (runs/); this file reads them through the admin API, prints
 * tables, compares two runs (exit 1 on a regression) and writes the
 * self-contained HTML report with its SVG bar chart.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

#define RUNS_THRESHOLD_DEFAULT 10.0

struct runs_opts {
	const char *server;
	const char *html;
	const char *client;
	double threshold;
	int json;
	struct run_label labels[RUN_LABELS_MAX];
	size_t nlabels;
};

/* Options shared by every run/runs command; returns optind or -1. */
static int
runs_parse(int argc, char **argv, struct runs_opts *o)
{
	static const struct option longopts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"html", required_argument, NULL, 'h'},
	    {"threshold", required_argument, NULL, 't'},
	    {"label", required_argument, NULL, 'l'},
	    {"client", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	const char *why;
	char *ep;
	int c;

	memset(o, 0, sizeof *o);
	o->server = client_default_server();
	o->threshold = RUNS_THRESHOLD_DEFAULT;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->server = optarg;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			o->html = optarg;
			break;
		case 't':
			errno = 0;
			o->threshold = strtod(optarg, &ep);
			if (errno != 0 || ep == optarg || *ep != '\0' ||
			    o->threshold < 0) {
				log_error(
				    "--threshold: '%s' is not a percentage",
				    optarg);
				return -1;
			}
			break;
		case 'l':
			if (o->nlabels == RUN_LABELS_MAX) {
				log_error(
				    "too many --label flags (at most 16)");
				return -1;
			}
			if (record_label_parse(
				&o->labels[o->nlabels++], optarg, &why) == -1) {
				log_error("--label '%s': %s", optarg, why);
				return -1;
			}
			break;
		case 'c':
			o->client = optarg;
			break;
		default:
			return -1;
		}
	}
	return optind;
}

/* JSON -> record ---------------------------------------------------------- */

static int64_t
runs_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static void
runs_fig_from_json(json_t *o, struct run_fig *f)
{
	memset(f, 0, sizeof *f);
	f->first_ms = runs_int(o, "first_ms");
	f->last_ms = runs_int(o, "last_ms");
	f->requests = (uint64_t)runs_int(o, "requests");
	f->hits = (uint64_t)runs_int(o, "hits");
	f->misses = (uint64_t)runs_int(o, "misses");
	f->coalesced = (uint64_t)runs_int(o, "coalesced");
	f->errors = (uint64_t)runs_int(o, "errors");
	f->cache_bytes = (uint64_t)runs_int(o, "cache_bytes");
	f->upstream_bytes = (uint64_t)runs_int(o, "upstream_bytes");
	f->upstream_wait_ms = runs_int(o, "upstream_wait_ms");
}

static void
runs_from_json(json_t *o, struct run_rec *rec)
{
	const char *s, *key;
	json_t *v, *imgs;
	size_t i, n = 0;

	memset(rec, 0, sizeof *rec);
	if ((s = json_string_value(json_object_get(o, "name"))) != NULL)
		xstrlcpy(rec->name, s, sizeof rec->name);
	if ((s = json_string_value(json_object_get(o, "client"))) != NULL)
		xstrlcpy(rec->client, s, sizeof rec->client);
	rec->begun_at = runs_int(o, "begun_at");
	rec->ended_at = runs_int(o, "ended_at");
	json_object_foreach(json_object_get(o, "labels"), key, v) {
		if (rec->nlabels == RUN_LABELS_MAX || !json_is_string(v))
			break;
		xstrlcpy(rec->labels[rec->nlabels].key, key,
		    sizeof rec->labels[0].key);
		xstrlcpy(rec->labels[rec->nlabels++].value,
		    json_string_value(v), sizeof rec->labels[0].value);
	}
	json_array_foreach(json_object_get(o, "overlapped"), i, v) {
		if ((s = json_string_value(v)) == NULL)
			continue;
		n = strlen(rec->overlapped);
		snprintf(rec->overlapped + n, sizeof rec->overlapped - n,
		    "%s%s", n > 0 ? " " : "", s);
	}
	rec->unattributed = (uint64_t)runs_int(o, "unattributed");
	rec->dropped = (uint64_t)runs_int(o, "dropped");
	runs_fig_from_json(json_object_get(o, "total"), &rec->total);
	imgs = json_object_get(o, "images");
	rec->images = xcalloc(json_array_size(imgs) + 1, sizeof *rec->images);
	json_array_foreach(imgs, i, v) {
		s = json_string_value(json_object_get(v, "ref"));
		xstrlcpy(rec->images[i].ref, s != NULL ? s : "?",
		    sizeof rec->images[i].ref);
		runs_fig_from_json(v, &rec->images[i].fig);
	}
	rec->nimages = json_array_size(imgs);
}

/* Text output ------------------------------------------------------------- */

static const char *
runs_secs(int64_t ms, char *buf, size_t len)
{
	snprintf(buf, len, "%.3f s", (double)ms / 1000.0);
	return buf;
}

static const char *
runs_ratio(double r, char *buf, size_t len)
{
	if (r < 0)
		xstrlcpy(buf, "-", len);
	else
		snprintf(buf, len, "%.1f%%", 100.0 * r);
	return buf;
}

static const char *
runs_when(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
	return buf;
}

/* What the report must say about the requests it counted. */
static void
runs_scope_note(FILE *f, const struct run_rec *rec)
{
	if (rec->client[0] != '\0')
		fprintf(f, "only requests from %s were counted\n", rec->client);
	else if (rec->overlapped[0] != '\0')
		fprintf(f,
		    "overlapped with: %s (no --client filter: each run "
		    "counted every request in its window)\n",
		    rec->overlapped);
	if (rec->unattributed > 0)
		fprintf(f,
		    "%" PRIu64 " requests matched no image of the run "
		    "(counted in the total only)\n",
		    rec->unattributed);
	if (rec->dropped > 0)
		fprintf(f,
		    "%" PRIu64 " requests over the per-run cap were not "
		    "recorded\n",
		    rec->dropped);
}

static void
runs_fig_line(const char *what, const char *state, const struct run_fig *g)
{
	char w[32], u[32], c[32], x[32];

	printf("%-48s %-11s %10s %11s %11s %5" PRIu64 " %5" PRIu64 " %5" PRIu64
	       " %10s\n",
	    what, state, runs_secs(record_fig_wall_ms(g), w, sizeof w),
	    human_bytes(g->upstream_bytes, u, sizeof u),
	    human_bytes(g->cache_bytes, c, sizeof c), g->hits, g->misses,
	    g->coalesced, runs_secs(g->upstream_wait_ms, x, sizeof x));
}

static void
runs_print_show(const struct run_rec *rec, int baseline)
{
	char a[40], b[40];
	size_t i;

	printf("run %s%s: %s -> %s\n", rec->name, baseline ? " (baseline)" : "",
	    runs_when(rec->begun_at, a, sizeof a),
	    runs_when(rec->ended_at, b, sizeof b));
	for (i = 0; i < rec->nlabels; i++)
		printf("  %s=%s\n", rec->labels[i].key, rec->labels[i].value);
	runs_scope_note(stdout, rec);
	printf("\n%-48s %-11s %10s %11s %11s %5s %5s %5s %10s\n", "image",
	    "state", "wall", "upstream", "cache", "hits", "miss", "coal",
	    "up. wait");
	for (i = 0; i < rec->nimages; i++)
		runs_fig_line(rec->images[i].ref,
		    record_state_name(record_fig_state(&rec->images[i].fig)),
		    &rec->images[i].fig);
	runs_fig_line("total", record_state_name(record_fig_state(&rec->total)),
	    &rec->total);
}

/* HTML ------------------------------------------------------------------- */

static void
runs_html_esc(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '&':
			fputs("&amp;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			fputc(*s, f);
		}
	}
}

static const char *const runs_state_colors[] = {
    [RUN_STATE_NONE] = "#999999",
    [RUN_STATE_COLD] = "#3b6fb6",
    [RUN_STATE_WARM] = "#3aa55d",
    [RUN_STATE_PARTLY] = "#e0a030",
};

#define RUNS_BASE_COLOR "#8c8c8c"
#define RUNS_NEXT_COLOR "#3b6fb6"

static void
runs_html_head(FILE *f, const char *title)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta "
	      "charset=\"utf-8\"><title>",
	    f);
	runs_html_esc(f, title);
	fputs("</title>\n<style>\n"
	      "body{font:14px/1.4 sans-serif;margin:2em;color:#222}\n"
	      "table{border-collapse:collapse;margin:1em 0}\n"
	      "td,th{padding:2px 10px;border-bottom:1px solid #ddd;"
	      "text-align:right}\n"
	      "td:first-child,th:first-child{text-align:left}\n"
	      ".better{color:#2a7a3f}.worse{color:#b22;font-weight:bold}\n"
	      ".key{display:inline-block;width:10px;height:10px;"
	      "margin:0 4px 0 12px}\n"
	      "svg text{font:12px sans-serif}\n"
	      "</style></head><body>\n",
	    f);
}

/*
 * One horizontal bar chart of pull times: nbars bars per row, each row a
 * label; a bar is the only <rect> in the chart (a test counts them).
 */
struct runs_bar {
	double ms;
	const char *color;
};

static void
runs_html_chart(FILE *f, const char *const *labels, const struct runs_bar *bars,
    size_t nrows, size_t per_row)
{
	const double left = 340, width = 480, bar_h = 16;
	double max = 1, row_h = (double)per_row * (bar_h + 2) + 10, w, y;
	size_t i, j;
	char buf[32];

	for (i = 0; i < nrows * per_row; i++)
		if (bars[i].ms > max)
			max = bars[i].ms;
	fprintf(f,
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
	    "height=\"%.0f\" role=\"img\" aria-label=\"pull time per "
	    "image\">\n",
	    left + width + 100, (double)nrows * row_h + 10);
	for (i = 0; i < nrows; i++) {
		y = 5 + (double)i * row_h;
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">",
		    left - 8, y + (row_h - 10) / 2 + 4);
		runs_html_esc(f, labels[i]);
		fputs("</text>\n", f);
		for (j = 0; j < per_row; j++) {
			const struct runs_bar *b = &bars[i * per_row + j];

			if (b->ms < 0)
				continue;
			w = b->ms / max * width;
			if (w < 2)
				w = 2; /* a warm pull still shows */
			fprintf(f,
			    "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" "
			    "height=\"%.0f\" fill=\"%s\"/>",
			    left, y + (double)j * (bar_h + 2), w, bar_h,
			    b->color);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
			    left + w + 6, y + (double)j * (bar_h + 2) + 12,
			    runs_secs((int64_t)b->ms, buf, sizeof buf));
		}
	}
	fputs("</svg>\n", f);
}

static int
runs_html_close(FILE *f, const char *path)
{
	fputs("</body></html>\n", f);
	if (fclose(f) != 0) {
		log_error("cannot write '%s': %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static FILE *
runs_html_open(const char *path)
{
	FILE *f = fopen(path, "we");

	if (f == NULL)
		log_error("cannot create '%s': %s", path, strerror(errno));
	return f;
}

static void
runs_html_fig_row(FILE *f, const char *what, const struct run_fig *g)
{
	char w[32], u[32], c[32], r[32];

	fputs("<tr><td>", f);
	runs_html_esc(f, what);
	fprintf(f,
	    "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
	    "<td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
	    "</td></tr>\n",
	    record_state_name(record_fig_state(g)),
	    runs_secs(record_fig_wall_ms(g), w, sizeof w),
	    human_bytes(g->upstream_bytes, u, sizeof u),
	    human_bytes(g->cache_bytes, c, sizeof c),
	    runs_ratio(record_fig_hit_ratio(g), r, sizeof r), g->hits,
	    g->misses, g->coalesced);
}

static void
runs_html_meta(FILE *f, const struct run_rec *rec)
{
	char a[40], b[40];
	char *note = NULL;
	size_t len = 0, i;
	FILE *m;

	fprintf(f, "<p>%s &rarr; %s", runs_when(rec->begun_at, a, sizeof a),
	    runs_when(rec->ended_at, b, sizeof b));
	for (i = 0; i < rec->nlabels; i++) {
		fputs("<br>", f);
		runs_html_esc(f, rec->labels[i].key);
		fputc('=', f);
		runs_html_esc(f, rec->labels[i].value);
	}
	if ((m = open_memstream(&note, &len)) == NULL)
		fatal("out of memory writing a report");
	runs_scope_note(m, rec);
	fclose(m);
	if (len > 0) {
		fputs("<br><em>", f);
		runs_html_esc(f, note);
		fputs("</em>", f);
	}
	free(note);
	fputs("</p>\n", f);
}

static int
runs_html_show(const char *path, const struct run_rec *rec)
{
	const char **labels;
	struct runs_bar *bars;
	enum run_state st;
	FILE *f;
	size_t i;

	if ((f = runs_html_open(path)) == NULL)
		return -1;
	labels = xcalloc(rec->nimages + 1, sizeof *labels);
	bars = xcalloc(rec->nimages + 1, sizeof *bars);
	for (i = 0; i < rec->nimages; i++) {
		st = record_fig_state(&rec->images[i].fig);
		labels[i] = rec->images[i].ref;
		bars[i].ms = (double)record_fig_wall_ms(&rec->images[i].fig);
		bars[i].color = runs_state_colors[st];
	}
	runs_html_head(f, rec->name);
	fputs("<h1>Run ", f);
	runs_html_esc(f, rec->name);
	fputs("</h1>\n", f);
	runs_html_meta(f, rec);
	fputs("<h2>Pull time per image</h2>\n<p>", f);
	for (i = RUN_STATE_COLD; i < nitems(runs_state_colors); i++)
		fprintf(f,
		    "<span class=\"key\" style=\"background:%s\"></span>%s",
		    runs_state_colors[i], record_state_name(i));
	fputs("</p>\n", f);
	runs_html_chart(f, labels, bars, rec->nimages, 1);
	fputs("<table><tr><th>image</th><th>state</th><th>wall</th>"
	      "<th>upstream</th><th>cache</th><th>hit ratio</th><th>hits</th>"
	      "<th>misses</th><th>coalesced</th></tr>\n",
	    f);
	for (i = 0; i < rec->nimages; i++)
		runs_html_fig_row(f, rec->images[i].ref, &rec->images[i].fig);
	runs_html_fig_row(f, "total", &rec->total);
	fputs("</table>\n", f);
	free(labels);
	free(bars);
	return runs_html_close(f, path);
}

/* Comparison ------------------------------------------------------------- */

static const char *
runs_fig_text(enum run_fig_kind k, double v, char *buf, size_t len)
{
	if (v < 0)
		return xstrlcpy(buf, "-", len), buf;
	if (k == RUN_FIG_WALL)
		return runs_secs((int64_t)v, buf, len);
	if (k == RUN_FIG_UPSTREAM)
		return human_bytes((uint64_t)v, buf, len);
	return runs_ratio(v, buf, len);
}

static const char *const runs_fig_names[RUN_NFIGS] = {
    [RUN_FIG_WALL] = "wall time",
    [RUN_FIG_UPSTREAM] = "upstream bytes",
    [RUN_FIG_RATIO] = "hit ratio",
};

static const char *
runs_change(
    enum run_fig_kind k, const struct run_delta *d, char *buf, size_t len)
{
	if (d->mark == RUN_MARK_NA)
		xstrlcpy(buf, "", len);
	else if (k == RUN_FIG_RATIO) /* percentage points */
		snprintf(buf, len, "%+.1f pt", 100.0 * (d->next - d->base));
	else if (d->base > 0)
		snprintf(
		    buf, len, "%+.1f%%", 100.0 * (d->next - d->base) / d->base);
	else if (d->next > 0)
		xstrlcpy(buf, "new", len);
	else
		xstrlcpy(buf, "+0.0%", len);
	return buf;
}

static const char *
runs_row_name(const struct run_cmp_row *row)
{
	return row->ref[0] != '\0' ? row->ref : "total";
}

static void
runs_print_compare(const struct run_rec *base, const struct run_rec *next,
    const struct run_cmp_row *rows, size_t n, double threshold)
{
	char a[32], b[32], c[32];
	size_t i, k;

	printf("compare %s (base) -> %s, threshold %.1f%%\n", base->name,
	    next->name, threshold);
	runs_scope_note(stdout, next);
	for (i = 0; i < n; i++) {
		printf("\n%s%s\n", runs_row_name(&rows[i]),
		    !rows[i].in_base	   ? " (not in base)"
			: !rows[i].in_next ? " (not in this run)"
					   : "");
		for (k = 0; k < RUN_NFIGS; k++) {
			const struct run_delta *d = &rows[i].d[k];

			printf("  %-15s %12s -> %-12s %8s  %s\n",
			    runs_fig_names[k],
			    runs_fig_text(k, d->base, a, sizeof a),
			    runs_fig_text(k, d->next, b, sizeof b),
			    runs_change(k, d, c, sizeof c),
			    d->mark == RUN_MARK_NA ? ""
						   : record_mark_name(d->mark));
		}
	}
}

static void
runs_json_compare(const struct run_rec *base, const struct run_rec *next,
    const struct run_cmp_row *rows, size_t n, double threshold)
{
	static const char *const keys[RUN_NFIGS] = {
	    [RUN_FIG_WALL] = "wall_ms",
	    [RUN_FIG_UPSTREAM] = "upstream_bytes",
	    [RUN_FIG_RATIO] = "hit_ratio",
	};
	json_t *o = json_object(), *arr = json_array(), *row, *fig;
	size_t i, k;
	char *s;

	json_object_set_new(o, "base", json_string(base->name));
	json_object_set_new(o, "run", json_string(next->name));
	json_object_set_new(o, "threshold_pct", json_real(threshold));
	json_object_set_new(
	    o, "worse", json_boolean(record_compare_worse(rows, n)));
	for (i = 0; i < n; i++) {
		row = json_object();
		json_object_set_new(row, "ref",
		    rows[i].ref[0] != '\0' ? json_string(rows[i].ref)
					   : json_null());
		json_object_set_new(
		    row, "in_base", json_boolean(rows[i].in_base));
		json_object_set_new(
		    row, "in_run", json_boolean(rows[i].in_next));
		for (k = 0; k < RUN_NFIGS; k++) {
			const struct run_delta *d = &rows[i].d[k];

			fig = json_object();
			json_object_set_new(fig, "base",
			    d->base < 0 ? json_null() : json_real(d->base));
			json_object_set_new(fig, "run",
			    d->next < 0 ? json_null() : json_real(d->next));
			json_object_set_new(fig, "mark",
			    json_string(record_mark_name(d->mark)));
			json_object_set_new(row, keys[k], fig);
		}
		json_array_append_new(arr, row);
	}
	json_object_set_new(o, "rows", arr);
	s = json_dumps(o, JSON_COMPACT);
	printf("%s\n", s);
	free(s);
	json_decref(o);
}

static int
runs_html_compare(const char *path, const struct run_rec *base,
    const struct run_rec *next, const struct run_cmp_row *rows, size_t n,
    double threshold)
{
	const char **labels;
	struct runs_bar *bars;
	char a[32], b[32], c[32];
	size_t i, k, nimg = n - 1; /* the last row is the total */
	FILE *f;

	if ((f = runs_html_open(path)) == NULL)
		return -1;
	labels = xcalloc(n, sizeof *labels);
	bars = xcalloc(2 * n, sizeof *bars);
	for (i = 0; i < nimg; i++) {
		labels[i] = rows[i].ref;
		bars[2 * i].ms = rows[i].d[RUN_FIG_WALL].base;
		bars[2 * i].color = RUNS_BASE_COLOR;
		bars[2 * i + 1].ms = rows[i].d[RUN_FIG_WALL].next;
		bars[2 * i + 1].color = RUNS_NEXT_COLOR;
	}
	runs_html_head(f, next->name);
	fputs("<h1>Run ", f);
	runs_html_esc(f, next->name);
	fputs(" against ", f);
	runs_html_esc(f, base->name);
	fprintf(f, "</h1>\n<p>threshold %.1f%%: %s</p>\n", threshold,
	    record_compare_worse(rows, n) ? "<span class=\"worse\">worse</span>"
					  : "no figure worse");
	runs_html_meta(f, next);
	fputs("<h2>Pull time per image</h2>\n<p>", f);
	fprintf(f, "<span class=\"key\" style=\"background:%s\"></span>",
	    RUNS_BASE_COLOR);
	runs_html_esc(f, base->name);
	fputs(" (base)", f);
	fprintf(f, "<span class=\"key\" style=\"background:%s\"></span>",
	    RUNS_NEXT_COLOR);
	runs_html_esc(f, next->name);
	fputs("</p>\n", f);
	runs_html_chart(f, labels, bars, nimg, 2);
	fputs("<table><tr><th>image</th>", f);
	for (k = 0; k < RUN_NFIGS; k++)
		fprintf(f, "<th>%s</th><th></th>", runs_fig_names[k]);
	fputs("</tr>\n", f);
	for (i = 0; i < n; i++) {
		fputs("<tr><td>", f);
		runs_html_esc(f, runs_row_name(&rows[i]));
		fputs("</td>", f);
		for (k = 0; k < RUN_NFIGS; k++) {
			const struct run_delta *d = &rows[i].d[k];

			fprintf(f,
			    "<td>%s &rarr; %s</td><td class=\"%s\">%s %s</td>",
			    runs_fig_text(k, d->base, a, sizeof a),
			    runs_fig_text(k, d->next, b, sizeof b),
			    record_mark_name(d->mark),
			    runs_change(k, d, c, sizeof c),
			    d->mark == RUN_MARK_NA ? ""
						   : record_mark_name(d->mark));
		}
		fputs("</tr>\n", f);
	}
	fputs("</table>\n", f);
	free(labels);
	free(bars);
	return runs_html_close(f, path);
}

/* Commands -------------------------------------------------------------- */

/* GET runs/NAME into rec; 0 or -1 (after a message). */
static int
runs_fetch(const struct runs_opts *o, const char *name, struct run_rec *rec,
    json_t **raw)
{
	char *path;
	json_t *j;

	if (!record_name_valid(name)) {
		log_error(
		    "'%s' is not a run name ([A-Za-z0-9_.-], 1-128)", name);
		return -1;
	}
	xasprintf(&path, "runs/%s", name);
	j = client_admin(o->server, "GET", path, NULL);
	free(path);
	if (j == NULL)
		return -1;
	runs_from_json(j, rec);
	if (raw != NULL)
		*raw = j;
	else
		json_decref(j);
	return 0;
}

static int
run_begin(const struct runs_opts *o, const char *name)
{
	char *body = NULL, *tmp;
	json_t *j;
	size_t i;

	if (!record_name_valid(name)) {
		log_error(
		    "'%s' is not a run name ([A-Za-z0-9_.-], 1-128)", name);
		return 1;
	}
	xasprintf(&body, "name %s\n", name);
	if (o->client != NULL) {
		if (strchr(o->client, '\n') != NULL) {
			log_error("--client: not an address");
			free(body);
			return 1;
		}
		xasprintf(&tmp, "%sclient %s\n", body, o->client);
		free(body);
		body = tmp;
	}
	for (i = 0; i < o->nlabels; i++) {
		xasprintf(&tmp, "%slabel %s=%s\n", body, o->labels[i].key,
		    o->labels[i].value);
		free(body);
		body = tmp;
	}
	j = client_admin(o->server, "POST", "run/begin", body);
	free(body);
	if (j == NULL)
		return 1;
	json_decref(j);
	printf("run %s begun\n", name);
	return 0;
}

static int
run_end(const struct runs_opts *o, const char *name)
{
	struct run_rec rec;
	json_t *j;
	char *s;

	if (!record_name_valid(name)) {
		log_error(
		    "'%s' is not a run name ([A-Za-z0-9_.-], 1-128)", name);
		return 1;
	}
	if ((j = client_admin(o->server, "POST", "run/end", name)) == NULL)
		return 1;
	if (o->json) {
		s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else {
		runs_from_json(j, &rec);
		runs_print_show(&rec, 0);
		record_release(&rec);
	}
	json_decref(j);
	return 0;
}

int
run_main(int argc, char **argv)
{
	struct runs_opts o;
	int i;

	if ((i = runs_parse(argc, argv, &o)) == -1)
		return 2;
	if (argc - i != 2 ||
	    (strcmp(argv[i], "begin") != 0 && strcmp(argv[i], "end") != 0)) {
		log_error(
		    "usage: ccprewarm run begin NAME [--label KEY=VALUE]... "
		    "[--client ADDR] | run end NAME");
		return 2;
	}
	if (strcmp(argv[i], "begin") == 0)
		return run_begin(&o, argv[i + 1]);
	return run_end(&o, argv[i + 1]);
}

static int
runs_list(const struct runs_opts *o)
{
	json_t *j, *v;
	struct run_rec rec;
	char w[32], u[32], r[32], t[40];
	size_t i;
	char *s;

	if ((j = client_admin(o->server, "GET", "runs", NULL)) == NULL)
		return 1;
	if (o->json) {
		s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(j);
		return 0;
	}
	json_array_foreach(json_object_get(j, "open"), i, v)
		printf("open: %s\n", json_string_value(v));
	printf("%-24s %-21s %6s %10s %11s %9s  %s\n", "run", "ended", "images",
	    "wall", "upstream", "hit ratio", "labels");
	json_array_foreach(json_object_get(j, "runs"), i, v) {
		size_t k;

		runs_from_json(v, &rec);
		printf("%-24s %-21s %6zu %10s %11s %9s ", rec.name,
		    runs_when(rec.ended_at, t, sizeof t),
		    (size_t)runs_int(v, "nimages"),
		    runs_secs(record_fig_wall_ms(&rec.total), w, sizeof w),
		    human_bytes(rec.total.upstream_bytes, u, sizeof u),
		    runs_ratio(record_fig_hit_ratio(&rec.total), r, sizeof r));
		printf("%s",
		    json_is_true(json_object_get(v, "baseline")) ? " [baseline]"
								 : "");
		for (k = 0; k < rec.nlabels; k++)
			printf(
			    " %s=%s", rec.labels[k].key, rec.labels[k].value);
		printf("\n");
		record_release(&rec);
	}
	json_decref(j);
	return 0;
}

static int
runs_show(const struct runs_opts *o, const char *name)
{
	struct run_rec rec;
	json_t *raw = NULL;
	char *s;
	int rc = 0;

	if (runs_fetch(o, name, &rec, &raw) == -1)
		return 1;
	if (o->json) {
		s = json_dumps(raw, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else
		runs_print_show(
		    &rec, json_is_true(json_object_get(raw, "baseline")));
	if (o->html != NULL && runs_html_show(o->html, &rec) == -1)
		rc = 1;
	record_release(&rec);
	json_decref(raw);
	return rc;
}

static int
runs_compare_cmd(
    const struct runs_opts *o, const char *base_name, const char *name)
{
	struct run_rec base, next;
	struct run_cmp_row *rows;
	char bname[RUN_NAME_MAX + 1];
	size_t n;
	json_t *j;
	int rc = 1;

	if (base_name == NULL) {
		if ((j = client_admin(o->server, "GET", "runs", NULL)) == NULL)
			return 2;
		if (!json_is_string(json_object_get(j, "baseline"))) {
			log_error(
			    "no baseline set: `ccprewarm runs baseline NAME`, or name both runs");
			json_decref(j);
			return 2;
		}
		xstrlcpy(bname,
		    json_string_value(json_object_get(j, "baseline")),
		    sizeof bname);
		json_decref(j);
		base_name = bname;
	}
	if (runs_fetch(o, base_name, &base, NULL) == -1)
		return 2;
	if (runs_fetch(o, name, &next, NULL) == -1) {
		record_release(&base);
		return 2;
	}
	rows = record_compare(&base, &next, o->threshold, &n);
	if (o->json)
		runs_json_compare(&base, &next, rows, n, o->threshold);
	else
		runs_print_compare(&base, &next, rows, n, o->threshold);
	if (o->html != NULL &&
	    runs_html_compare(o->html, &base, &next, rows, n, o->threshold) ==
		-1)
		rc = 2;
	else
		rc = record_compare_worse(rows, n) ? 1 : 0;
	free(rows);
	record_release(&base);
	record_release(&next);
	return rc;
}

static int
runs_baseline(const struct runs_opts *o, const char *name)
{
	json_t *j;

	if (!record_name_valid(name)) {
		log_error(
		    "'%s' is not a run name ([A-Za-z0-9_.-], 1-128)", name);
		return 1;
	}
	if ((j = client_admin(o->server, "POST", "runs/baseline", name)) ==
	    NULL)
		return 1;
	json_decref(j);
	printf("baseline: %s\n", name);
	return 0;
}

int
runs_main(int argc, char **argv)
{
	struct runs_opts o;
	const char *sub;
	int i, n;

	if ((i = runs_parse(argc, argv, &o)) == -1)
		return 2;
	n = argc - i;
	sub = n > 0 ? argv[i] : "";
	if (n == 0)
		return runs_list(&o);
	if (strcmp(sub, "show") == 0 && n == 2)
		return runs_show(&o, argv[i + 1]);
	if (strcmp(sub, "compare") == 0 && (n == 2 || n == 3))
		return runs_compare_cmd(
		    &o, n == 3 ? argv[i + 1] : NULL, argv[argc - 1]);
	if (strcmp(sub, "baseline") == 0 && n == 2)
		return runs_baseline(&o, argv[i + 1]);
	log_error("usage: ccprewarm runs [--json] | runs show NAME [--json] "
		  "[--html FILE] | runs compare [BASE] NAME [--threshold PCT] "
		  "[--html FILE] | runs baseline NAME");
	return 2;
}
