/*
 * tests/unit/test_record.c: runs/record.c: run names and labels, the
 * cold/warm/partly state, the LMDB codec (round trip, every truncation and
 * a wrong version refused), the JSON, and `runs compare` marks.
 */
#include <string.h>

#include "../../prewarm/prewarm.h"
#include "unit.h"

static void
test_names(void)
{
	struct run_label l;
	const char *why;

	CHECK(record_name_valid("ci-1234.main_x"));
	CHECK(!record_name_valid(""));
	CHECK(!record_name_valid("."));
	CHECK(!record_name_valid(".."));
	CHECK(!record_name_valid("a/b"));
	CHECK(!record_name_valid("a b"));
	CHECK(record_label_parse(&l, "commit=abc=d", &why) == 0);
	CHECK_STR(l.key, "commit");
	CHECK_STR(l.value, "abc=d");
	CHECK(record_label_parse(&l, "k=", &why) == 0 && l.value[0] == '\0');
	CHECK(record_label_parse(&l, "=v", &why) == -1);
	CHECK(record_label_parse(&l, "novalue", &why) == -1);
	CHECK(record_label_parse(&l, "a b=c", &why) == -1);
	CHECK(record_label_parse(&l, "k=line\nbreak", &why) == -1);
}

static void
test_state(void)
{
	struct run_fig f;

	memset(&f, 0, sizeof f);
	CHECK(record_fig_state(&f) == RUN_STATE_NONE);
	CHECK(record_fig_hit_ratio(&f) < 0);
	f.misses = 3;
	CHECK(record_fig_state(&f) == RUN_STATE_COLD);
	f.hits = 1;
	CHECK(record_fig_state(&f) == RUN_STATE_PARTLY);
	f.misses = 0;
	f.coalesced = 1;
	CHECK(record_fig_state(&f) == RUN_STATE_PARTLY);
	f.coalesced = 0;
	CHECK(record_fig_state(&f) == RUN_STATE_WARM);
	CHECK(record_fig_hit_ratio(&f) == 1.0);
	f.first_ms = 1000;
	f.last_ms = 1250;
	CHECK(record_fig_wall_ms(&f) == 250);
}

static void
record_sample(struct run_rec *rec, struct run_image *imgs)
{
	memset(rec, 0, sizeof *rec);
	strcpy(rec->name, "cold");
	strcpy(rec->client, "10.0.0.7");
	rec->begun_at = 1700000000000;
	rec->ended_at = 1700000005000;
	strcpy(rec->labels[0].key, "commit");
	strcpy(rec->labels[0].value, "abc \"quoted\"");
	rec->nlabels = 1;
	strcpy(rec->overlapped, "a b");
	rec->total.first_ms = 1700000000100;
	rec->total.last_ms = 1700000004000;
	rec->total.requests = 9;
	rec->total.misses = 9;
	rec->total.upstream_bytes = 5206948;
	rec->total.upstream_wait_ms = 1234;
	rec->unattributed = 1;
	memset(imgs, 0, 2 * sizeof *imgs);
	strcpy(imgs[0].ref, "docker.io/library/alpine:3.19");
	imgs[0].fig = rec->total;
	strcpy(imgs[1].ref, "docker.io/test/x@sha256:00");
	imgs[1].fig.hits = 2;
	imgs[1].fig.cache_bytes = 77;
	rec->images = imgs;
	rec->nimages = 2;
}

static void
test_codec(void)
{
	struct run_image imgs[2];
	struct run_rec rec, out;
	unsigned char *buf;
	size_t len, cut;

	record_sample(&rec, imgs);
	buf = record_encode(&rec, &len);
	CHECK(record_decode(&out, buf, len) == 0);
	CHECK_STR(out.name, "cold");
	CHECK_STR(out.client, "10.0.0.7");
	CHECK(out.begun_at == rec.begun_at && out.ended_at == rec.ended_at);
	CHECK(out.nlabels == 1);
	CHECK_STR(out.labels[0].value, "abc \"quoted\"");
	CHECK_STR(out.overlapped, "a b");
	CHECK(memcmp(&out.total, &rec.total, sizeof rec.total) == 0);
	CHECK(out.unattributed == 1 && out.nimages == 2);
	CHECK_STR(out.images[1].ref, "docker.io/test/x@sha256:00");
	CHECK(
	    memcmp(&out.images[1].fig, &imgs[1].fig, sizeof imgs[1].fig) == 0);
	record_release(&out);
	/* every truncation, and trailing junk, is refused */
	for (cut = 0; cut < len; cut++) {
		if (record_decode(&out, buf, cut) != -1) {
			free(buf);
			CHECK(!"a truncated record decoded");
		}
	}
	buf[0] = 99; /* unknown version */
	CHECK(record_decode(&out, buf, len) == -1);
	free(buf);
}

static void
test_json(void)
{
	struct run_image imgs[2];
	struct run_rec rec;
	char *s;

	record_sample(&rec, imgs);
	s = record_json(&rec, RUN_JSON_IMAGES | RUN_JSON_BASELINE);
	CHECK(strstr(s, "\"name\":\"cold\"") != NULL);
	CHECK(strstr(s, "\"commit\":\"abc \\\"quoted\\\"\"") != NULL);
	CHECK(strstr(s, "\"overlapped\":[\"a\",\"b\"]") != NULL);
	CHECK(strstr(s, "\"baseline\":true") != NULL);
	CHECK(strstr(s, "\"state\":\"cold\"") != NULL);
	CHECK(strstr(s, "\"state\":\"warm\"") != NULL);
	CHECK(strstr(s, "\"upstream_bytes\":5206948") != NULL);
	free(s);
	s = record_json(&rec, 0);
	CHECK(strstr(s, "\"images\"") == NULL);
	CHECK(strstr(s, "\"nimages\":2") != NULL);
	free(s);
}

static void
test_compare(void)
{
	struct run_image bi[2], ni[1];
	struct run_rec base, next;
	struct run_cmp_row *rows;
	size_t n;

	memset(&base, 0, sizeof base);
	memset(&next, 0, sizeof next);
	memset(bi, 0, sizeof bi);
	memset(ni, 0, sizeof ni);
	strcpy(bi[0].ref, "a");
	bi[0].fig = (struct run_fig){.first_ms = 1000,
	    .last_ms = 2000,
	    .misses = 4,
	    .upstream_bytes = 1000};
	strcpy(bi[1].ref, "gone");
	strcpy(ni[0].ref, "a");
	/* faster, nothing from upstream, every request a hit */
	ni[0].fig = (struct run_fig){
	    .first_ms = 5000, .last_ms = 5100, .hits = 4, .cache_bytes = 1000};
	base.images = bi;
	base.nimages = 2;
	base.total = bi[0].fig;
	next.images = ni;
	next.nimages = 1;
	next.total = ni[0].fig;
	rows = record_compare(&base, &next, 10, &n);
	CHECK(n == 3); /* a, gone, total */
	CHECK_STR(rows[0].ref, "a");
	CHECK(rows[0].d[RUN_FIG_WALL].mark == RUN_MARK_BETTER);
	CHECK(rows[0].d[RUN_FIG_UPSTREAM].mark == RUN_MARK_BETTER);
	CHECK(rows[0].d[RUN_FIG_RATIO].mark == RUN_MARK_BETTER);
	CHECK(rows[1].in_base && !rows[1].in_next);
	CHECK(rows[1].d[RUN_FIG_WALL].mark == RUN_MARK_NA);
	CHECK(rows[2].ref[0] == '\0');
	CHECK(!record_compare_worse(rows, n));
	free(rows);
	/* the reverse is worse on every figure */
	rows = record_compare(&next, &base, 10, &n);
	CHECK(rows[0].d[RUN_FIG_WALL].mark == RUN_MARK_WORSE);
	CHECK(rows[0].d[RUN_FIG_UPSTREAM].mark == RUN_MARK_WORSE);
	CHECK(rows[0].d[RUN_FIG_RATIO].mark == RUN_MARK_WORSE);
	CHECK(record_compare_worse(rows, n));
	free(rows);
	/* within the threshold, or within the wall-time slack: same */
	ni[0].fig = bi[0].fig;
	ni[0].fig.last_ms += 50; /* +5% of 1 s */
	ni[0].fig.upstream_bytes = 1090;
	next.total = ni[0].fig;
	rows = record_compare(&base, &next, 10, &n);
	CHECK(rows[0].d[RUN_FIG_WALL].mark == RUN_MARK_SAME);
	CHECK(rows[0].d[RUN_FIG_UPSTREAM].mark == RUN_MARK_SAME);
	CHECK(rows[0].d[RUN_FIG_RATIO].mark == RUN_MARK_SAME);
	free(rows);
	bi[0].fig.last_ms = bi[0].fig.first_ms + 5; /* 5 ms -> 15 ms */
	ni[0].fig.last_ms = ni[0].fig.first_ms + 15;
	rows = record_compare(&base, &next, 10, &n);
	CHECK(rows[0].d[RUN_FIG_WALL].mark == RUN_MARK_SAME);
	free(rows);
}

static const struct unit_test tests[] = {
    {"names", test_names},
    {"state", test_state},
    {"codec", test_codec},
    {"json", test_json},
    {"compare", test_compare},
};

UNIT_MAIN("record", tests)
