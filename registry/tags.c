/*
 * registry/tags.c: GET /v2/<name>/tags/list, passed through to the
 * upstream (not cached: a tag list is only useful fresh).
 */
#include <stdio.h>

#include <event2/buffer.h>

#include "../common/common.h"
#include "internal.h"

static void
tags_done(struct req *r, const struct passthru_result *px)
{
	size_t len;

	if (px->res != UPSTREAM_OK) {
		req_error(
		    r, OCI_ERR_UNAVAILABLE, "upstream registry unavailable");
		return;
	}
	if (px->status != 200) {
		req_error(r,
		    px->status == 404 ? OCI_ERR_NAME_UNKNOWN
				      : oci_err_from_status(px->status, 0),
		    NULL);
		return;
	}
	r->cache = REQ_CACHE_MISS;
	len = px->body != NULL ? evbuffer_get_length(px->body) : 0;
	req_reply_mem(r, 200, px->ctype[0] ? px->ctype : "application/json",
	    NULL, len ? evbuffer_pullup(px->body, -1) : NULL, len);
}

void
tags_handle(struct req *r)
{
	char path[ROUTE_NAME_MAX + 32];

	snprintf(path, sizeof path, "/v2/%s/tags/list", r->route.name);
	passthru_start(r, UPSTREAM_GET, path, NULL, tags_done);
}
