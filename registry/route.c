/*
 * registry/route.c: turns a raw request path and query into a struct route.
 * Handlers never see the URI.  Everything a path names is validated here
 * by the distribution grammar, before anything touches disk or upstream.
 */
#include <stdio.h>
#include <string.h>

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../common/common.h"
#include "registry.h"

#define ROUTE_ADMIN_PREFIX "/_ccprewarm/v1/"

/* Each kind's name (the /metrics route label). */
static const char *const route_kind_names[ROUTE_NKINDS] = {
    [ROUTE_BASE] = "base",
    [ROUTE_MANIFEST] = "manifest",
    [ROUTE_BLOB] = "blob",
    [ROUTE_TAGS] = "tags",
    [ROUTE_UPLOAD] = "upload",
    [ROUTE_CATALOG] = "catalog",
    [ROUTE_METRICS] = "metrics",
    [ROUTE_ADMIN] = "admin",
};

const char *
route_kind_name(enum route_kind k)
{
	return (size_t)k < ROUTE_NKINDS && route_kind_names[k] != NULL
	    ? route_kind_names[k]
	    : "unknown";
}

/* Fixed paths, matched exactly (with or without a trailing slash). */
static const struct route_fixed {
	const char *path;
	enum route_kind kind;
} route_fixed[] = {
    {"/v2", ROUTE_BASE},
    {"/v2/", ROUTE_BASE},
    {"/v2/_catalog", ROUTE_CATALOG},
    {"/metrics", ROUTE_METRICS},
};

/*
 * "/v2/<name>/<suffix><ref>": the suffix that ends the name decides the
 * route.  Checked in order; upload paths before blobs.
 */
static const struct route_rule {
	const char *marker;
	enum route_kind kind;
	int has_ref; /* the rest after marker is one reference component */
} route_rules[] = {
    {"/blobs/uploads", ROUTE_UPLOAD, 0},
    {"/tags/list", ROUTE_TAGS, 0},
    {"/manifests/", ROUTE_MANIFEST, 1},
    {"/blobs/", ROUTE_BLOB, 1},
};

int
route_is_host(const char *c, size_t len)
{
	if (len == 9 && memcmp(c, "localhost", 9) == 0)
		return 1;
	return memchr(c, '.', len) != NULL || memchr(c, ':', len) != NULL;
}

/*
 * host[:port] as distribution's reference grammar has it: dot-separated
 * labels of [a-z0-9-] that neither start nor end with '-', then an
 * optional numeric port.  ".." and friends are not hosts.
 */
static int
route_valid_host(const char *c, size_t len)
{
	size_t i, label = 0;

	for (i = 0; i < len && c[i] != ':'; i++) {
		if (c[i] == '.') {
			if (label == 0 || c[i - 1] == '-')
				return 0;
			label = 0;
		} else if ((c[i] >= 'a' && c[i] <= 'z') ||
		    (c[i] >= '0' && c[i] <= '9') || (c[i] == '-' && label > 0))
			label++;
		else
			return 0;
	}
	if (label == 0 || c[i - 1] == '-')
		return 0;
	if (i == len)
		return 1;
	if (++i == len)
		return 0; /* "host:" */
	for (; i < len; i++)
		if (c[i] < '0' || c[i] > '9')
			return 0;
	return 1;
}

/* Finds the last occurrence of marker in [s, s+len). */
static const char *
route_rfind(const char *s, size_t len, const char *marker)
{
	size_t mlen = strlen(marker);
	const char *p;

	if (len < mlen)
		return NULL;
	for (p = s + len - mlen;; p--) {
		if (memcmp(p, marker, mlen) == 0)
			return p;
		if (p == s)
			return NULL;
	}
}

static int
route_query_ns(const char *query, char *out, size_t outlen)
{
	struct evkeyvalq q;
	const char *ns;
	int rc = 0;

	out[0] = '\0';
	if (query == NULL || query[0] == '\0')
		return 0;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) != 0)
		return -1;
	if ((ns = evhttp_find_header(&q, "ns")) != NULL) {
		if (ns[0] == '\0' || strlen(ns) >= outlen ||
		    !route_is_host(ns, strlen(ns)) ||
		    !route_valid_host(ns, strlen(ns)) ||
		    strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789.-:") !=
			strlen(ns))
			rc = -1;
		else
			xstrlcpy(out, ns, outlen);
	}
	evhttp_clear_headers(&q);
	return rc;
}

/* Why ref (which failed digest_parsen) is not a digest we can serve. */
static const char *
route_digest_why(const char *ref, size_t len)
{
	const char *colon = memchr(ref, ':', len);
	size_t alen = colon != NULL ? (size_t)(colon - ref) : len;

	if (colon == NULL || alen == 0)
		return "invalid digest: want 'sha256:' and 64 hex digits";
	if (alen != 6 || memcmp(ref, "sha256", 6) != 0)
		return "unsupported digest algorithm: only sha256 is supported";
	if (len - alen - 1 != 64)
		return "invalid sha256 digest: want 64 hex digits after 'sha256:'";
	return "invalid sha256 digest: want lower-case hex digits (0-9, a-f) after 'sha256:'";
}

#define ROUTE_FAIL(e, w) \
	do { \
		*err = (e); \
		*why = (w); \
		return -1; \
	} while (0)

int
route_parse(const char *path, const char *query, struct route *rt,
    enum oci_err *err, const char **why)
{
	const struct route_rule *rule = NULL;
	const char *rest, *m = NULL, *name, *ref;
	size_t i, restlen, namelen, reflen;
	const char *slash;

	memset(rt, 0, sizeof *rt);
	for (i = 0; i < nitems(route_fixed); i++) {
		if (strcmp(path, route_fixed[i].path) == 0) {
			rt->kind = route_fixed[i].kind;
			return 0;
		}
	}
	if (strncmp(path, ROUTE_ADMIN_PREFIX, sizeof ROUTE_ADMIN_PREFIX - 1) ==
	    0) {
		rest = path + sizeof ROUTE_ADMIN_PREFIX - 1;
		/* recipe names and "recipe@<version>" (0.5.0+v5.7.0) */
		if (strlen(rest) >= sizeof rt->admin ||
		    strspn(rest,
			"abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/.@+") !=
			strlen(rest))
			ROUTE_FAIL(OCI_ERR_NOT_FOUND, "unknown admin path");
		rt->kind = ROUTE_ADMIN;
		xstrlcpy(rt->admin, rest, sizeof rt->admin);
		return 0;
	}
	if (strncmp(path, "/v2/", 4) != 0)
		ROUTE_FAIL(OCI_ERR_NOT_FOUND, "not an OCI distribution path");
	rest = path + 4;
	restlen = strlen(rest);
	/* Names, tags and digests never contain these: refuse, don't decode. */
	if (strpbrk(rest, "%\\") != NULL)
		ROUTE_FAIL(OCI_ERR_NAME_INVALID, "invalid character in path");
	for (i = 0; i < nitems(route_rules); i++) {
		m = route_rfind(rest, restlen, route_rules[i].marker);
		if (m == NULL)
			continue;
		if (!route_rules[i].has_ref) {
			const char *after = m + strlen(route_rules[i].marker);

			/* tags/list must end the path; uploads may go on */
			if (route_rules[i].kind == ROUTE_TAGS && *after != '\0')
				continue;
			if (route_rules[i].kind == ROUTE_UPLOAD &&
			    *after != '\0' && *after != '/')
				continue;
		} else if (strchr(m + strlen(route_rules[i].marker), '/') !=
		    NULL)
			continue;
		rule = &route_rules[i];
		break;
	}
	if (rule == NULL)
		ROUTE_FAIL(OCI_ERR_NOT_FOUND, "unknown API path");
	rt->kind = rule->kind;
	name = rest;
	namelen = (size_t)(m - rest);

	if (route_query_ns(query, rt->host, sizeof rt->host) == -1)
		ROUTE_FAIL(OCI_ERR_NAME_INVALID, "invalid ns parameter");
	/* A host as the first component picks the upstream (podman, skopeo). */
	if (rt->host[0] == '\0' &&
	    (slash = memchr(name, '/', namelen)) != NULL &&
	    route_is_host(name, (size_t)(slash - name))) {
		size_t hlen = (size_t)(slash - name);

		if (hlen >= sizeof rt->host || !route_valid_host(name, hlen))
			ROUTE_FAIL(
			    OCI_ERR_NAME_INVALID, "invalid registry host");
		memcpy(rt->host, name, hlen);
		rt->host[hlen] = '\0';
		name = slash + 1;
		namelen -= hlen + 1;
	}
	if (namelen == 0 || namelen >= sizeof rt->name ||
	    !ref_valid_name(name, namelen))
		ROUTE_FAIL(OCI_ERR_NAME_INVALID, "invalid repository name");
	memcpy(rt->name, name, namelen);
	rt->name[namelen] = '\0';

	if (!rule->has_ref)
		return 0;
	ref = m + strlen(rule->marker);
	reflen = strlen(ref);
	/*
	 * distribution-spec: a manifest GET/HEAD answers 200 or 404; a
	 * reference that cannot exist is simply unknown (TAG_INVALID is a
	 * schema1 push-era code).  Blobs keep DIGEST_INVALID.
	 */
	if (rt->kind == ROUTE_BLOB || memchr(ref, ':', reflen) != NULL) {
		if (digest_parsen(&rt->digest, ref, reflen) == -1)
			ROUTE_FAIL(rt->kind == ROUTE_BLOB
				? OCI_ERR_DIGEST_INVALID
				: OCI_ERR_MANIFEST_UNKNOWN,
			    route_digest_why(ref, reflen));
		rt->by_digest = 1;
		return 0;
	}
	if (reflen == 0 || reflen > ROUTE_TAG_MAX ||
	    !ref_valid_tag(ref, reflen))
		ROUTE_FAIL(OCI_ERR_MANIFEST_UNKNOWN,
		    "invalid tag: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
	memcpy(rt->tag, ref, reflen);
	rt->tag[reflen] = '\0';
	return 0;
}

struct upstream *
route_upstream_find(struct upstream *const *ups, size_t n, const char *host)
{
	size_t i;

	/* Un-prefixed names, and Docker Hub's other names, are docker.io. */
	if (host == NULL || host[0] == '\0' ||
	    strcmp(host, "index.docker.io") == 0 ||
	    strcmp(host, "registry-1.docker.io") == 0)
		host = "docker.io";
	for (i = 0; i < n; i++)
		if (strcmp(upstream_name(ups[i]), host) == 0)
			return ups[i];
	return NULL;
}

struct upstream *
route_upstream(struct upstream *const *ups, size_t n, struct route *rt,
    enum oci_err *err, const char **why)
{
	struct upstream *up;
	char tmp[ROUTE_NAME_MAX];

	if ((up = route_upstream_find(ups, n, rt->host)) == NULL) {
		*err = OCI_ERR_NAME_UNKNOWN;
		*why = "registry is not configured as an upstream";
		return NULL;
	}
	if (strcmp(upstream_name(up), "docker.io") == 0 &&
	    strchr(rt->name, '/') == NULL) {
		/* Docker Hub: official images live under library/ */
		if ((size_t)snprintf(tmp, sizeof tmp, "library/%s", rt->name) >=
		    sizeof tmp) {
			*err = OCI_ERR_NAME_INVALID;
			*why = "name too long";
			return NULL;
		}
		memcpy(rt->name, tmp, sizeof tmp);
	}
	return up;
}
