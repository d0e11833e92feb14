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

#define UNIT_MAIN(suite, table) \
	int main(void) \
	{ \
		return unit_main( \
		    suite, table, sizeof(table) / sizeof((table)[0])); \
	}

#endif
