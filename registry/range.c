/*
 * registry/range.c: the Range request header (RFC 9110 section 14) against
 * a representation of known size, as a pure function: no request, no I/O.
 * Syntax errors make the header ignored (a whole 200), an all-unsatisfiable
 * range-set is a 416, one satisfiable span is a 206.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "registry.h"

/* More range-specs than this is a broken client or a DoS (RFC 9110 14.2:
 * a server MAY ignore such a header). */
#define RANGE_SPECS_MAX 16

struct range_spec {
	uint64_t first, last; /* inclusive; last UINT64_MAX: to the end */
	int suffix;	      /* "-N": first holds N */
};

/*
 * 1*DIGIT at *p into *v, saturating at UINT64_MAX: a number too large for
 * 64 bits is still a number (RFC 9110 has no upper bound), only one larger
 * than any size.  -1 if there is no digit.
 */
static int
range_number(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	*p = s;
	*v = n;
	return 0;
}

static const char *
range_ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* range-spec = int-range / suffix-range; -1 on a syntax error or an
 * int-range whose last-pos is below its first-pos (RFC 9110 14.1.1: invalid).
 */
static int
range_spec_parse(const char **p, struct range_spec *sp)
{
	const char *s = *p;

	sp->suffix = 0;
	if (*s == '-') {
		s++;
		if (range_number(&s, &sp->first) < 0)
			return -1;
		sp->suffix = 1;
		sp->last = UINT64_MAX;
	} else {
		if (range_number(&s, &sp->first) < 0 || *s != '-')
			return -1;
		s++;
		sp->last = UINT64_MAX;
		if (*s >= '0' && *s <= '9') {
			if (range_number(&s, &sp->last) < 0 ||
			    sp->last < sp->first)
				return -1;
		}
	}
	*p = s;
	return 0;
}

/* The satisfiable part of one spec as [*a, *b) or -1 (RFC 9110 14.1.2). */
static int
range_spec_clip(
    const struct range_spec *sp, uint64_t size, uint64_t *a, uint64_t *b)
{
	if (sp->suffix) {
		if (sp->first == 0 || size == 0)
			return -1;
		*a = sp->first >= size ? 0 : size - sp->first;
		*b = size;
		return 0;
	}
	if (sp->first >= size)
		return -1;
	*a = sp->first;
	*b = sp->last >= size - 1 ? size : sp->last + 1;
	return 0;
}

enum range_result
range_parse(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
	struct range_spec specs[RANGE_SPECS_MAX];
	uint64_t a, b, lo = 0, hi = 0;
	size_t n = 0, i, sat = 0;
	int grew;

	*start = 0;
	*end = size;
	if (h == NULL)
		return RANGE_WHOLE;
	h = range_ows(h);
	/* range-unit is a case-insensitive token; another unit is ignored. */
	if (strncasecmp(h, "bytes=", 6) != 0)
		return RANGE_WHOLE;
	h += 6;
	/* 1#range-spec: commas with optional whitespace, empty elements
	 * allowed (RFC 9110 5.6.1.2), at least one spec. */
	for (;;) {
		h = range_ows(h);
		if (*h == ',') {
			h++;
			continue;
		}
		if (*h == '\0')
			break;
		if (n == RANGE_SPECS_MAX || range_spec_parse(&h, &specs[n]) < 0)
			return RANGE_WHOLE;
		n++;
		h = range_ows(h);
		if (*h != ',' && *h != '\0')
			return RANGE_WHOLE;
	}
	if (n == 0)
		return RANGE_WHOLE;
	/*
	 * Satisfiable specs, coalesced (RFC 9110 14.2 lets a server merge
	 * overlapping or adjacent ranges in any order).  One span left: a
	 * 206.  Disjoint spans would need multipart/byteranges, which no
	 * registry client asks for: the whole representation instead.
	 */
	for (i = 0; i < n; i++) {
		/* A non-empty suffix of nothing is satisfiable but has no
		 * Content-Range to say so: ignore the header. */
		if (size == 0 && specs[i].suffix && specs[i].first > 0)
			return RANGE_WHOLE;
		sat += range_spec_clip(&specs[i], size, &a, &b) == 0;
	}
	if (sat == 0)
		return RANGE_UNSATISFIABLE;
	do {
		grew = 0;
		for (i = 0; i < n; i++) {
			if (range_spec_clip(&specs[i], size, &a, &b) < 0)
				continue;
			if (hi == lo) {
				lo = a;
				hi = b;
				grew = 1;
			} else if (a <= hi && b >= lo && (a < lo || b > hi)) {
				lo = a < lo ? a : lo;
				hi = b > hi ? b : hi;
				grew = 1;
			}
		}
	} while (grew);
	for (i = 0; i < n; i++) {
		if (range_spec_clip(&specs[i], size, &a, &b) == 0 &&
		    (a < lo || b > hi))
			return RANGE_WHOLE;
	}
	*start = lo;
	*end = hi;
	return RANGE_PARTIAL;
}
