/*
 * tests/fuzz/fuzz_route.c: libFuzzer target for routing: a request line
 * "METHOD URI" goes through the URI parser evhttp uses for requests and
 * then route_parse() (registry/route.c).  A route that parses must name
 * only what the distribution grammar allows: a valid repository name, a
 * valid tag or a digest, a registry host that route_is_host() accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "../../registry/registry.h"

#define FUZZ_MAX_LEN 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_route_methods[] = {
    "GET", "HEAD", "POST", "DELETE", "PUT", "PATCH"};

static void
fuzz_route_check(const struct route *rt)
{
	size_t nlen = strnlen(rt->name, sizeof(rt->name));

	if (nlen == sizeof(rt->name) ||
	    strnlen(rt->host, sizeof(rt->host)) == sizeof(rt->host) ||
	    strnlen(rt->tag, sizeof(rt->tag)) == sizeof(rt->tag))
		abort();
	switch (rt->kind) {
	case ROUTE_MANIFEST:
		if (rt->by_digest ? rt->tag[0] != '\0'
				  : !ref_valid_tag(rt->tag, strlen(rt->tag)))
			abort();
		/* FALLTHROUGH */
	case ROUTE_BLOB:
	case ROUTE_TAGS:
		if (!ref_valid_name(rt->name, nlen))
			abort();
		if (rt->host[0] != '\0' &&
		    !route_is_host(rt->host, strlen(rt->host)))
			abort();
		break;
	case ROUTE_BASE:
	case ROUTE_UPLOAD:
	case ROUTE_CATALOG:
	case ROUTE_METRICS:
	case ROUTE_ADMIN:
		break;
	default:
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[FUZZ_MAX_LEN + 1], *uri_s;
	struct evhttp_uri *uri;
	struct route rt;
	enum oci_err err;
	const char *why, *path;
	size_t i;
	int known = 0;

	if (size > FUZZ_MAX_LEN)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if ((uri_s = strchr(line, ' ')) == NULL)
		return 0;
	*uri_s++ = '\0';
	for (i = 0;
	     i < sizeof(fuzz_route_methods) / sizeof(*fuzz_route_methods); i++)
		known |= strcmp(line, fuzz_route_methods[i]) == 0;
	if (!known)
		return 0; /* evhttp answers 400/405 before any routing */
	if ((uri = evhttp_uri_parse_with_flags(uri_s, 0)) == NULL)
		return 0;
	path = evhttp_uri_get_path(uri);
	memset(&rt, 0xa5, sizeof rt);
	if (path != NULL &&
	    route_parse(path, evhttp_uri_get_query(uri), &rt, &err, &why) == 0)
		fuzz_route_check(&rt);
	else if (path != NULL && (why == NULL || oci_err_status(err) < 400))
		abort();
	evhttp_uri_free(uri);
	return 0;
}
