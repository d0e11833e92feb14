/*
 * registry/ref.c: image references ("nginx:1.27", "quay.io/x/y@sha256:..").
 * Parses and normalises them the way docker does (distribution/reference:
 * ParseNormalizedNamed), and validates the repository and tag components
 * the HTTP router sees.  Pure string logic: no allocation, no I/O.
 */
#include <stdio.h>
#include <string.h>

#include "../common/common.h"
#include "registry.h"

#define REF_DEFAULT_HOST "docker.io"
#define REF_LEGACY_HOST "index.docker.io"
#define REF_OFFICIAL_NS "library/"
#define REF_DIGEST_PREFIX "sha256:"

static int
ref_is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int
ref_is_alnum(int c)
{
	return ref_is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static int
ref_is_word(int c)
{
	return ref_is_alnum(c) || c == '_';
}

static int
ref_is_hex(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/*
 * One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.  Returns 0, or -1
 * with the reason in *why.
 */
static int
ref_valid_component(const char *s, size_t len, const char **why)
{
	size_t i = 0, seplen;

	if (len == 0) {
		*why = "empty path component";
		return -1;
	}
	for (;;) {
		if (i >= len || !ref_is_lower_alnum((unsigned char)s[i]))
			goto bad;
		while (i < len && ref_is_lower_alnum((unsigned char)s[i]))
			i++;
		if (i == len)
			return 0;
		/* A separator: '.', '_', '__' or a run of '-'. */
		seplen = 0;
		if (s[i] == '.') {
			seplen = 1;
		} else if (s[i] == '_') {
			seplen = (i + 1 < len && s[i + 1] == '_') ? 2 : 1;
		} else if (s[i] == '-') {
			while (i + seplen < len && s[i + seplen] == '-')
				seplen++;
		} else {
			goto bad;
		}
		i += seplen;
	}
bad:
	if (i < len && s[i] >= 'A' && s[i] <= 'Z')
		*why = "uppercase in repository name";
	else
		*why = "invalid repository name";
	return -1;
}

static int
ref_check_name(const char *name, size_t len, const char **why)
{
	size_t start = 0, i;

	if (len == 0) {
		*why = "empty repository name";
		return -1;
	}
	if (len > REF_NAME_MAX) {
		*why = "repository name too long";
		return -1;
	}
	for (i = 0; i <= len; i++) {
		if (i < len && name[i] != '/')
			continue;
		if (ref_valid_component(name + start, i - start, why) == -1)
			return -1;
		start = i + 1;
	}
	return 0;
}

int
ref_valid_name(const char *name, size_t len)
{
	const char *why;

	return ref_check_name(name, len, &why) == 0;
}

int
ref_valid_tag(const char *tag, size_t len)
{
	size_t i;

	if (len == 0 || len > REF_TAG_MAX || tag[0] == '.' || tag[0] == '-')
		return 0;
	for (i = 0; i < len; i++) {
		if (!ref_is_word((unsigned char)tag[i]) && tag[i] != '.' &&
		    tag[i] != '-')
			return 0;
	}
	return 1;
}

/*
 * distribution/reference: host := domain-name | IPv4 | "[" IPv6 "]", then an
 * optional ":" port.  domain-component := [a-zA-Z0-9]([a-zA-Z0-9-]*
 * [a-zA-Z0-9])?, joined by dots.
 */
static int
ref_valid_host(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0)
		return 0;
	if (s[0] == '[') {
		for (i = 1; i < len &&
		     (ref_is_hex((unsigned char)s[i]) || s[i] == ':');)
			i++;
		if (i == 1 || i >= len || s[i] != ']')
			return 0;
		i++;
	} else {
		for (;;) {
			if (i >= len || !ref_is_alnum((unsigned char)s[i]))
				return 0;
			while (i < len &&
			    (ref_is_alnum((unsigned char)s[i]) || s[i] == '-'))
				i++;
			if (s[i - 1] == '-')
				return 0;
			if (i < len && s[i] == '.') {
				i++;
				continue;
			}
			break;
		}
	}
	if (i == len)
		return 1;
	if (s[i] != ':' || ++i == len)
		return 0;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/*
 * docker's splitDockerDomain: the first component names a registry host if
 * it contains '.' or ':' or is "localhost".  Unlike docker, an upper-case
 * first component is not taken as a host: it is an invalid repository.
 */
static int
ref_first_is_host(const char *s, size_t len)
{
	return memchr(s, '.', len) != NULL || memchr(s, ':', len) != NULL ||
	    (len == 9 && memcmp(s, "localhost", 9) == 0);
}

static int
ref_all_hex64(const char *s, size_t len)
{
	size_t i;

	if (len != 64)
		return 0;
	for (i = 0; i < len; i++)
		if (!ref_is_hex((unsigned char)s[i]) ||
		    (s[i] >= 'A' && s[i] <= 'F'))
			return 0;
	return 1;
}

static int
ref_parse_into(struct ref *ref, const char *s, const char **why)
{
	const char *at, *end, *name, *slash, *colon, *p, *repo;
	size_t namelen, hostlen, repolen, total;
	int need_library = 0;

	memset(ref, 0, sizeof(*ref));
	*why = NULL;
	if (s == NULL || *s == '\0') {
		*why = "empty reference";
		return -1;
	}
	if (strlen(s) > REF_STRLEN) {
		*why = "reference too long";
		return -1;
	}

	/* Digest: everything after the first '@' (names and tags have none). */
	end = s + strlen(s);
	if ((at = strchr(s, '@')) != NULL) {
		if (strncmp(at + 1, REF_DIGEST_PREFIX,
			strlen(REF_DIGEST_PREFIX)) != 0) {
			*why = strchr(at + 1, ':') != NULL
			    ? "unsupported digest algorithm"
			    : "invalid digest";
			return -1;
		}
		if (digest_parse(&ref->digest, at + 1) == -1) {
			*why = "invalid digest";
			return -1;
		}
		ref->has_digest = 1;
		end = at;
	}

	/* Tag: a ':' after the last '/' (an earlier one is a port). */
	name = s;
	for (p = end, colon = NULL; p > name; p--) {
		if (p[-1] == '/')
			break;
		if (p[-1] == ':') {
			colon = p - 1;
			break;
		}
	}
	if (colon != NULL) {
		if (!ref_valid_tag(colon + 1, end - colon - 1)) {
			*why = "invalid tag";
			return -1;
		}
		memcpy(ref->tag, colon + 1, end - colon - 1);
		ref->tag[end - colon - 1] = '\0';
		end = colon;
	}
	namelen = end - name;
	if (namelen == 0) {
		*why = "empty repository name";
		return -1;
	}

	/* Host. */
	slash = memchr(name, '/', namelen);
	if (slash != NULL && ref_first_is_host(name, slash - name)) {
		hostlen = slash - name;
		if (!ref_valid_host(name, hostlen)) {
			*why = "invalid registry host";
			return -1;
		}
		if (hostlen >= sizeof(ref->host)) {
			*why = "registry host too long";
			return -1;
		}
		for (p = name; p < slash; p++)
			ref->host[p - name] =
			    (*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p;
		ref->host[hostlen] = '\0';
		if (strcmp(ref->host, REF_LEGACY_HOST) == 0)
			xstrlcpy(
			    ref->host, REF_DEFAULT_HOST, sizeof(ref->host));
		repo = slash + 1;
	} else {
		if (ref_all_hex64(name, namelen) && colon == NULL &&
		    !ref->has_digest) {
			/* docker: ambiguous with an image id. */
			*why = "repository name is a 64-byte hex string";
			return -1;
		}
		xstrlcpy(ref->host, REF_DEFAULT_HOST, sizeof(ref->host));
		repo = name;
	}
	repolen = end - repo;
	if (strcmp(ref->host, REF_DEFAULT_HOST) == 0 &&
	    memchr(repo, '/', repolen) == NULL)
		need_library = 1;

	if (ref_check_name(repo, repolen, why) == -1)
		return -1;
	/* distribution: NameTotalLengthMax applies to host "/" path. */
	total = strlen(ref->host) + 1 + repolen +
	    (need_library ? strlen(REF_OFFICIAL_NS) : 0);
	if (total > REF_NAME_MAX) {
		*why = "repository name too long";
		return -1;
	}
	snprintf(ref->repo, sizeof(ref->repo), "%s%.*s",
	    need_library ? REF_OFFICIAL_NS : "", (int)repolen, repo);
	return 0;
}

int
ref_parse(struct ref *ref, const char *s, const char **why)
{
	if (ref_parse_into(ref, s, why) == 0)
		return 0;
	memset(ref, 0, sizeof(*ref)); /* nothing half-parsed escapes */
	return -1;
}

void
ref_format(const struct ref *ref, char *buf, size_t len)
{
	char dg[DIGEST_STRLEN];
	const char *tag = ref->tag;

	if (tag[0] == '\0' && !ref->has_digest)
		tag = "latest";
	dg[0] = '\0';
	if (ref->has_digest)
		digest_format(&ref->digest, dg);
	snprintf(buf, len, "%s/%s%s%s%s%s", ref->host, ref->repo,
	    tag[0] != '\0' ? ":" : "", tag, ref->has_digest ? "@" : "", dg);
}

int
ref_is_floating(const struct ref *ref)
{
	return !ref->has_digest &&
	    (ref->tag[0] == '\0' || strcmp(ref->tag, "latest") == 0);
}
