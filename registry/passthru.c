/*
 * registry/passthru.c: a small upstream request that belongs to one client
 * request (tags/list, a blob HEAD, a tag revalidation).  Its result is kept
 * in the request; nothing is stored.
 */
#include <string.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "internal.h"

static int
passthru_headers_cb(void *arg, const struct upstream_response *resp)
{
	struct req *r = arg;

	r->xstatus = resp->status;
	r->xlength = resp->content_length;
	r->upstream_ms = resp->duration_ms;
	r->xctype[0] = '\0';
	if (resp->content_type != NULL)
		xstrlcpy(r->xctype, resp->content_type, sizeof r->xctype);
	r->have_xdigest = resp->docker_content_digest != NULL &&
	    digest_parse(&r->xdigest, resp->docker_content_digest) == 0;
	return 0;
}

static int
passthru_body_cb(void *arg, const void *buf, size_t len)
{
	struct req *r = arg;

	if (r->xbody == NULL)
		r->xbody = evbuffer_new();
	if (evbuffer_get_length(r->xbody) + len > OCI_MANIFEST_MAX)
		return -1;
	metrics_upstream_bytes(r->srv, len);
	return evbuffer_add(r->xbody, buf, len);
}

static void
passthru_done_cb(void *arg, enum upstream_result res, const char *why)
{
	struct req *r = arg;

	(void)why;
	r->xfer = NULL;
	metrics_upstream_result(r->srv, res, r->xstatus);
	r->passthru_done(r, res);
}

void
passthru_start(struct req *r, enum upstream_method m, const char *path,
    const char *accept, void (*done)(struct req *, enum upstream_result))
{
	static const struct upstream_cbs cbs = {
	    passthru_headers_cb, passthru_body_cb, passthru_done_cb};
	struct upstream_req ureq;

	memset(&ureq, 0, sizeof ureq);
	ureq.method = m;
	ureq.path = path;
	ureq.repo = r->route.name;
	ureq.accept = accept;
	ureq.range_start = -1;
	r->xstatus = 0;
	r->xlength = -1;
	r->passthru_done = done;
	r->state = REQ_WAITING;
	if ((r->xfer = upstream_xfer_start(r->up, &ureq, &cbs, r)) == NULL)
		req_error(
		    r, OCI_ERR_INTERNAL, "cannot start upstream transfer");
}
