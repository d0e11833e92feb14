/*
 * registry/admin.c: /_ccprewarm/v1/... for the CLI.  Read-only /metrics is
 * for anyone; these are for the node itself, so anything not from a
 * loopback address is refused, and so is a request a browser on the node
 * could have been made to send (DNS rebinding, CSRF): a Host or Origin that
 * is not loopback, a POST that is not JSON.  A table maps the path to its
 * handler.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "../common/common.h"
#include "internal.h"

static int
admin_peer_is_loopback(struct req *r)
{
	/* taken when it arrived, on whichever loop (a relayed request has
	 * no connection here) */
	const char *addr = r->peer;

	if (addr[0] == '\0')
		return 0;
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	    strcmp(addr, "::ffff:127.0.0.1") == 0;
}

/* "127.0.0.1", "localhost", "[::1]", each with an optional ":port". */
static int
admin_host_is_loopback(const char *h)
{
	char host[64];
	const char *end;
	struct in_addr a;
	size_t n;

	if (h[0] == '[') {
		if ((end = strchr(h, ']')) == NULL)
			return 0;
		n = (size_t)(end - h - 1);
		end++;
		if (n != 3 || strncmp(h + 1, "::1", 3) != 0)
			return 0;
	} else {
		n = strcspn(h, ":");
		end = h + n;
		if (n == 0 || n >= sizeof host)
			return 0;
		memcpy(host, h, n);
		host[n] = '\0';
		if (strcasecmp(host, "localhost") != 0 &&
		    (inet_pton(AF_INET, host, &a) != 1 ||
			(ntohl(a.s_addr) >> 24) != 127))
			return 0;
	}
	if (*end == '\0')
		return 1;
	return *end == ':' && end[1] != '\0' &&
	    strspn(end + 1, "0123456789") == strlen(end + 1);
}

/* NULL if the request may be an admin command, else why not. */
static const char *
admin_refuse(struct req *r)
{
	const char *host = req_header(r, "Host");
	const char *origin = req_header(r, "Origin");
	const char *ctype = req_header(r, "Content-Type");

	if (!admin_peer_is_loopback(r))
		return "the admin API answers loopback clients only";
	if (host == NULL || !admin_host_is_loopback(host))
		return "the admin API wants a loopback Host header (127.0.0.1, localhost, [::1])";
	if (origin != NULL &&
	    (strncmp(origin, "http://", 7) == 0
		    ? !admin_host_is_loopback(origin + 7)
		    : strncmp(origin, "https://", 8) != 0 ||
			!admin_host_is_loopback(origin + 8)))
		return "the admin API refuses requests from a web page of another origin";
	if (r->method == REQ_POST &&
	    (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0 ||
		(ctype[16] != '\0' && ctype[16] != ';')))
		return "admin commands want Content-Type: application/json";
	return NULL;
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
	const char *why;
	size_t i, n;

	if ((why = admin_refuse(r)) != NULL) {
		req_error(r, OCI_ERR_DENIED, why);
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
		/* the request hook (runs) reads what these change, from
		 * every loop */
		pthread_mutex_lock(&srv->hook_mu);
		a->fn(r, a->arg);
		pthread_mutex_unlock(&srv->hook_mu);
		return;
	}
	req_error(r, OCI_ERR_NOT_FOUND, "unknown admin command or method");
}
