/*
 * prewarm/version.c: Co-op Cloud recipe versions, "<recipe-semver>+<upstream
 * version>" (0.5.0+v5.7.0): parsing, semver precedence on the recipe part,
 * and the window of the newest released versions.  Pure logic, no I/O.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "prewarm.h"

/* "0", "12": digits only; leading zeros tolerated (old recipes have them). */
static int
version_num(const char *s, size_t len, unsigned long *out)
{
	size_t i;

	if (len == 0 || len > 9)
		return -1;
	*out = 0;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*out = *out * 10 + (unsigned long)(s[i] - '0');
	}
	return 0;
}

int
version_parse(const char *tag, struct version *v)
{
	const char *plus, *p, *dot;
	unsigned long *nums[3];
	size_t i, prelen;

	memset(v, 0, sizeof *v);
	nums[0] = &v->major;
	nums[1] = &v->minor;
	nums[2] = &v->patch;
	if ((plus = strchr(tag, '+')) == NULL || plus[1] == '\0' ||
	    strchr(plus + 1, '+') != NULL)
		return -1;
	p = tag;
	for (i = 0; i < 3; i++) {
		dot = p;
		while (dot < plus && isdigit((unsigned char)*dot))
			dot++;
		if (version_num(p, (size_t)(dot - p), nums[i]) == -1)
			return -1;
		if (i < 2) {
			if (*dot != '.')
				return -1;
			p = dot + 1;
		} else
			p = dot;
	}
	if (p == plus)
		return 0;
	if (*p != '-')
		return -1;
	prelen = (size_t)(plus - p - 1);
	if (prelen == 0 || prelen >= sizeof v->pre)
		return -1;
	memcpy(v->pre, p + 1, prelen);
	v->pre[prelen] = '\0';
	for (i = 0; i < prelen; i++)
		if (!isalnum((unsigned char)v->pre[i]) && v->pre[i] != '.' &&
		    v->pre[i] != '-')
			return -1;
	return 0;
}

int
version_is_release(const char *tag)
{
	struct version v;

	return version_parse(tag, &v) == 0 && v.pre[0] == '\0';
}

/* semver 11.4: dot-separated identifiers, numeric ones numerically and
 * below alphanumeric ones, a shorter list first when all else is equal. */
static int
version_pre_cmp(const char *a, const char *b)
{
	size_t la, lb;
	int na, nb, c;

	for (;;) {
		if (*a == '\0' || *b == '\0')
			return (*a != '\0') - (*b != '\0');
		la = strcspn(a, ".");
		lb = strcspn(b, ".");
		na = strspn(a, "0123456789") == la;
		nb = strspn(b, "0123456789") == lb;
		if (na && nb) {
			if (la != lb)
				return la < lb ? -1 : 1;
			if ((c = strncmp(a, b, la)) != 0)
				return c < 0 ? -1 : 1;
		} else if (na != nb)
			return na ? -1 : 1;
		else {
			c = strncmp(a, b, la < lb ? la : lb);
			if (c != 0)
				return c < 0 ? -1 : 1;
			if (la != lb)
				return la < lb ? -1 : 1;
		}
		a += la + (a[la] == '.');
		b += lb + (b[lb] == '.');
	}
}

int
version_cmp(const char *a, const char *b)
{
	struct version va, vb;
	int oka = version_parse(a, &va) == 0, okb = version_parse(b, &vb) == 0;
	int c;

	if (!oka || !okb) {
		if (oka != okb)
			return oka ? 1 : -1; /* anything else sorts below */
		c = strcmp(a, b);
		return c < 0 ? -1 : c > 0;
	}
	if (va.major != vb.major)
		return va.major < vb.major ? -1 : 1;
	if (va.minor != vb.minor)
		return va.minor < vb.minor ? -1 : 1;
	if (va.patch != vb.patch)
		return va.patch < vb.patch ? -1 : 1;
	if ((va.pre[0] == '\0') != (vb.pre[0] == '\0'))
		return va.pre[0] == '\0' ? 1 : -1; /* 1.0.0-rc1 < 1.0.0 */
	if ((c = version_pre_cmp(va.pre, vb.pre)) != 0)
		return c;
	c = strcmp(a, b); /* same recipe version, other upstream part */
	return c < 0 ? -1 : c > 0;
}

static int
version_qsort_desc(const void *a, const void *b)
{
	return version_cmp(*(char *const *)b, *(char *const *)a);
}

void
version_sort_desc(char **tags, size_t n)
{
	if (n > 1)
		qsort(tags, n, sizeof *tags, version_qsort_desc);
}

size_t
version_window(char **tags, size_t ntags, size_t n, char **out)
{
	size_t i, k = 0;

	version_sort_desc(tags, ntags);
	for (i = 0; i < ntags && k < n; i++)
		if (version_is_release(tags[i]))
			out[k++] = tags[i];
	return k;
}
