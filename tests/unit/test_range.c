/*
 * tests/unit/test_range.c: registry/range.c.  Golden file: every line of
 * tests/data/range.in ("SIZE<TAB>header") goes through range_parse and
 * the result ("206 FIRST-LAST", "200" or "416") must equal the same line
 * of range.out.  '#' lines are comments in both.  Then every file under
 * tests/data/range-crashers/ (fuzzer finds) is replayed.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define TEST_RANGE_LINE 4096

static const char *
test_range_datadir(void)
{
	const char *d = getenv("CCPREWARM_TESTDATA");

	return d != NULL ? d : "tests/data";
}

static char *
test_range_next(FILE *f, char *buf, size_t len)
{
	while (fgets(buf, (int)len, f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] != '#')
			return buf;
	}
	return NULL;
}

/* What range_parse says about header against size, as range.out has it. */
static void
test_range_eval(const char *h, uint64_t size, char *out, size_t len)
{
	uint64_t start = 7, end = 7;

	switch (range_parse(h, size, &start, &end)) {
	case RANGE_PARTIAL:
		snprintf(out, len, "206 %" PRIu64 "-%" PRIu64, start, end - 1);
		if (start >= end || end > size)
			snprintf(out, len, "bad span %" PRIu64 "-%" PRIu64,
			    start, end);
		break;
	case RANGE_WHOLE:
		snprintf(out, len, "200");
		if (start != 0 || end != size)
			snprintf(out, len, "200 but span %" PRIu64 "-%" PRIu64,
			    start, end);
		break;
	case RANGE_UNSATISFIABLE:
		snprintf(out, len, "416");
		break;
	default:
		snprintf(out, len, "unknown result");
	}
}

static void
test_range_golden(void)
{
	char in[TEST_RANGE_LINE], want[TEST_RANGE_LINE], got[TEST_RANGE_LINE];
	char path[1024], *tab, *ep;
	FILE *fin = NULL, *fout = NULL;
	uint64_t size;
	int n = 0, bad = 0;

	snprintf(path, sizeof(path), "%s/range.in", test_range_datadir());
	fin = fopen(path, "r");
	snprintf(path, sizeof(path), "%s/range.out", test_range_datadir());
	fout = fopen(path, "r");
	if (fin == NULL || fout == NULL) {
		fprintf(stderr, "cannot open golden files under '%s'\n",
		    test_range_datadir());
		unit_failed = 1;
		goto out;
	}
	while (test_range_next(fin, in, sizeof(in)) != NULL) {
		n++;
		if (test_range_next(fout, want, sizeof(want)) == NULL) {
			fprintf(stderr, "range.out ends before line %d\n", n);
			unit_failed = 1;
			goto out;
		}
		if ((tab = strchr(in, '\t')) == NULL) {
			fprintf(stderr, "range.in case %d has no tab\n", n);
			unit_failed = 1;
			goto out;
		}
		*tab = '\0';
		size = strtoull(in, &ep, 10);
		test_range_eval(tab + 1, size, got, sizeof(got));
		if (strcmp(got, want) != 0) {
			fprintf(stderr,
			    "case %d: size %s 'Range: %s': got '%s', want "
			    "'%s'\n",
			    n, in, tab + 1, got, want);
			bad = 1;
		}
	}
	if (test_range_next(fout, want, sizeof(want)) != NULL) {
		fprintf(stderr, "range.out has more lines than range.in\n");
		bad = 1;
	}
	if (bad)
		unit_failed = 1;
out:
	if (fin != NULL)
		fclose(fin);
	if (fout != NULL)
		fclose(fout);
}

static void
test_range_null(void)
{
	uint64_t s = 1, e = 1;

	CHECK(range_parse(NULL, 10, &s, &e) == RANGE_WHOLE);
	CHECK(s == 0 && e == 10);
}

/* Every fuzzer find, with sizes that stress both ends. */
static void
test_range_crashers(void)
{
	static const uint64_t sizes[] = {0, 1, 1000, UINT64_MAX};
	char path[1024], buf[TEST_RANGE_LINE], got[64];
	struct dirent *de;
	size_t i, len;
	DIR *d;
	FILE *f;

	snprintf(path, sizeof(path), "%s/range-crashers", test_range_datadir());
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/range-crashers/%s",
		    test_range_datadir(), de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			test_range_eval(buf, sizes[i], got, sizeof(got));
	}
	closedir(d);
}

static const struct unit_test tests[] = {
    {"golden", test_range_golden},
    {"null", test_range_null},
    {"crashers", test_range_crashers},
};

UNIT_MAIN("range", tests)
