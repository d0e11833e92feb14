/*
 * registry/admin.c: /_ccprewarm/v1/... for the CLI.  Read-only /metrics is
 * for anyone; these are for the node itself, so anything not from a
 * loopback address is refused.  A table maps the path to its handler.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "../common/common.h"
#include "registry.h"

static int
admin_peer_is_loopback(struct req *r)
{
	char *addr = NULL;
	ev_uint16_t port;

	if (r->evcon == NULL)
		return 0;
	evhttp_connection_get_peer(r->evcon, &addr, &port);
	if (addr == NULL)
		return 0;
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	    strcmp(addr, "::ffff:127.0.0.1") == 0;
}

void
admin_stats(struct req *r, void *arg)
{
	(void)arg;
	char *json = metrics_json(r->srv);

	req_reply_mem(r, 200, "application/json", NULL, json, strlen(json));
	free(json);
}

void
admin_add(struct server *srv, const char *path, enum req_method method,
    admin_fn fn, void *arg)
{
	struct server_admin *a;

	if (srv->nadmin == nitems(srv->admin))
		fatal("too many admin commands");
	a = &srv->admin[srv->nadmin++];
	xstrlcpy(a->path, path, sizeof a->path);
	a->method = method;
	a->fn = fn;
	a->arg = arg;
}

const char *
req_admin_arg(struct req *r)
{
	return r->admin_arg != NULL ? r->admin_arg : "";
}

void
admin_handle(struct req *r)
{
	struct server *srv = r->srv;
	const struct server_admin *a;
	const char *path = r->route.admin;
	size_t i, n;

	if (!admin_peer_is_loopback(r)) {
		req_error(r, OCI_ERR_DENIED,
		    "the admin API answers loopback "
		    "clients only");
		return;
	}
	for (i = 0; i < srv->nadmin; i++) {
		a = &srv->admin[i];
		n = strlen(a->path);
		if (n > 0 && a->path[n - 1] == '/'
			? strncmp(path, a->path, n) != 0 || path[n] == '\0'
			: strcmp(path, a->path) != 0)
			continue;
		if (a->method != r->method)
			continue;
		r->admin_arg =
		    path + (a->path[n - 1] == '/' ? n : strlen(path));
		a->fn(r, a->arg);
		return;
	}
	req_error(r, OCI_ERR_NOT_FOUND, "unknown admin command or method");
}
