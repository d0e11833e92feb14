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

	r->px.status = resp->status;
	r->px.length = resp->content_length;
	r->upstream_ms = resp->duration_ms;
	r->px.ctype[0] = '\0';
	if (resp->content_type != NULL)
		xstrlcpy(r->px.ctype, resp->content_type, sizeof r->px.ctype);
	r->px.have_digest = resp->docker_content_digest != NULL &&
	    digest_parse(&r->px.digest, resp->docker_content_digest) == 0;
	return 0;
}

static int
passthru_body_cb(void *arg, const void *buf, size_t len)
{
	struct req *r = arg;

	if (r->px.body == NULL)
		r->px.body = evbuffer_new();
	if (evbuffer_get_length(r->px.body) + len > OCI_MANIFEST_MAX)
		return -1;
	metrics_upstream_bytes(r->srv, len);
	return evbuffer_add(r->px.body, buf, len);
}

static void
passthru_done_cb(void *arg, enum upstream_result res, const char *why)
{
	struct req *r = arg;

	(void)why;
	r->xfer = NULL;
	r->px.res = res;
	metrics_upstream_result(r->srv, res, r->px.status);
	r->passthru_done(r, &r->px);
}

void
passthru_start(struct req *r, enum upstream_method m, const char *path,
    const char *accept, passthru_done_fn done)
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
	r->px.status = 0;
	r->px.length = -1;
	r->passthru_done = done;
	r->state = REQ_WAITING;
	if ((r->xfer = upstream_xfer_start(r->up, &ureq, &cbs, r)) == NULL)
		req_error(
		    r, OCI_ERR_INTERNAL, "cannot start upstream transfer");
}
