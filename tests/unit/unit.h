/*
 * tests/unit/unit.h: the unit-test harness.  Each test file defines a table
 * of {name, fn} and calls unit_main(); every test prints one PASS:/FAIL:
 * line, which tests/run.sh counts.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unit_test {
	const char *name;
	void (*fn)(void);
};

static int unit_failed;

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			    __LINE__, #cond); \
			unit_failed = 1; \
			return; \
		} \
	} while (0)

#define CHECK_STR(a, b) \
	do { \
		const char *unit_a_ = (a), *unit_b_ = (b); \
		if (unit_a_ == NULL || unit_b_ == NULL || \
		    strcmp(unit_a_, unit_b_) != 0) { \
			fprintf(stderr, "%s:%d: '%s' != '%s'\n", __FILE__, \
			    __LINE__, unit_a_ ? unit_a_ : "(null)", \
			    unit_b_ ? unit_b_ : "(null)"); \
			unit_failed = 1; \
			return; \
		} \
	} while (0)

static inline int
unit_main(const char *suite, const struct unit_test *tests, size_t n)
{
	size_t i;
	int failures = 0;

	for (i = 0; i < n; i++) {
		unit_failed = 0;
		tests[i].fn();
		printf("%s: %s/%s\n", unit_failed ? "FAIL" : "PASS", suite,
		    tests[i].name);
		failures += unit_failed;
	}
	fflush(stdout);
	return failures ? 1 : 0;
}

#define UNIT_GOLDEN_LINE 4096

/* The golden files' directory: CCPREWARM_TESTDATA, else tests/data. */
static inline const char *
unit_datadir(void)
{
	const char *d = getenv("CCPREWARM_TESTDATA");

	return d != NULL ? d : "tests/data";
}

/* The next non-comment line without its newline, or NULL at EOF. */
static inline char *
unit_golden_next(FILE *f, char *buf, size_t len)
{
	while (fgets(buf, (int)len, f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		if (buf[0] != '#')
			return buf;
	}
	return NULL;
}

/*
 * Golden files: every line of NAME.in goes through fn, and what fn writes
 * must equal the same line of NAME.out ('#' lines are comments in both).
 * Marks the test failed on any difference; returns the number of cases.
 */
static inline int
unit_golden(const char *name, void (*fn)(const char *in, char *out, size_t))
{
	char in[UNIT_GOLDEN_LINE], want[UNIT_GOLDEN_LINE],
	    got[UNIT_GOLDEN_LINE];
	char path[1024];
	FILE *fin, *fout;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s.in", unit_datadir(), name);
	fin = fopen(path, "r");
	snprintf(path, sizeof(path), "%s/%s.out", unit_datadir(), name);
	fout = fopen(path, "r");
	if (fin == NULL || fout == NULL) {
		fprintf(stderr, "cannot open %s golden files under '%s'\n",
		    name, unit_datadir());
		unit_failed = 1;
		goto out;
	}
	while (unit_golden_next(fin, in, sizeof(in)) != NULL) {
		n++;
		if (unit_golden_next(fout, want, sizeof(want)) == NULL) {
			fprintf(
			    stderr, "%s.out ends before case %d\n", name, n);
			unit_failed = 1;
			goto out;
		}
		fn(in, got, sizeof(got));
		if (strcmp(got, want) != 0) {
			fprintf(stderr,
			    "%s.in case %d '%s': got '%s', want '%s'\n", name,
			    n, in, got, want);
			unit_failed = 1;
		}
	}
	if (unit_golden_next(fout, want, sizeof(want)) != NULL) {
		fprintf(
		    stderr, "%s.out has more lines than %s.in\n", name, name);
		unit_failed = 1;
	}
out:
	if (fin != NULL)
		fclose(fin);
	if (fout != NULL)
		fclose(fout);
	return n;
}

#define UNIT_MAIN(suite, table) \
	int main(void) \
	{ \
		return unit_main( \
		    suite, table, sizeof(table) / sizeof((table)[0])); \
	}

#endif
