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

static void admin_stats(struct req *);

static const struct admin_cmd {
	const char *path;
	enum req_method method;
	void (*fn)(struct req *);
} admin_cmds[] = {
	{ "stats", REQ_GET, admin_stats },
};

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

static void
admin_stats(struct req *r)
{
	char *json = metrics_json(r->srv);

	req_reply_mem(r, 200, "application/json", NULL, json, strlen(json));
	free(json);
}

void
admin_handle(struct req *r)
{
	size_t i;

	if (!admin_peer_is_loopback(r)) {
		req_error(r, OCI_ERR_DENIED, "the admin API answers loopback "
		    "clients only");
		return;
	}
	for (i = 0; i < nitems(admin_cmds); i++) {
		if (strcmp(r->route.admin, admin_cmds[i].path) != 0)
			continue;
		if (admin_cmds[i].method != r->method) {
			req_error(r, OCI_ERR_UNSUPPORTED, "wrong method");
			return;
		}
		admin_cmds[i].fn(r);
		return;
	}
	req_error(r, OCI_ERR_NOT_FOUND, "unknown admin command");
}
