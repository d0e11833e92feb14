/*
 * registry/manifest.c: GET/HEAD /v2/<name>/manifests/<tag|digest>.
 * By digest: the store, else one fetch.  By tag: the LMDB mapping while it
 * is fresh; after that one upstream HEAD (free on Docker Hub) revalidates
 * it; an unreachable or failing upstream gets the cached mapping (STALE).
 * Fresh hits come from memory (registry/mcache.c) when both the mapping
 * and the bytes are there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/common.h"
#include "internal.h"

/*
 * Serves a stored manifest whose index record the caller has read, from
 * its file, and keeps its bytes in memory for the next hit (hashed again
 * first: memory only ever holds bytes that match their digest).
 */
static int
manifest_serve_file(
    struct req *r, const struct digest *d, const struct db_blob *meta)
{
	struct server *srv = r->srv;
	struct mcache_blob *b = NULL;
	struct digest got;
	off_t size;
	char *buf;
	int fd;

	if ((fd = blobstore_open_blob(srv->store, d, &size)) == -1)
		return -1;
	db_touch(srv->db, d, clock_wall_s());
	if (mcache_fits(srv->mcache, (size_t)size)) {
		buf = xmalloc((size_t)size + 1);
		if (pread(fd, buf, (size_t)size, 0) == size) {
			digest_buf(buf, (size_t)size, &got);
			if (digest_equal(&got, d))
				b = mcache_put(srv->mcache, d, meta->media_type,
				    buf, (size_t)size);
		}
		free(buf);
	}
	if (b != NULL) {
		close(fd);
		req_reply_cached(r, b, d);
	} else
		req_reply_file(r, fd, (uint64_t)size, meta->media_type, d);
	return 0;
}

/* From memory, no index or file access; -1 if not there. */
static int
manifest_serve_ram(struct req *r, const struct digest *d)
{
	struct mcache_blob *b;

	if ((b = mcache_get(r->srv->mcache, d)) == NULL)
		return -1;
	db_touch(r->srv->db, d, clock_wall_s());
	req_reply_cached(r, b, d);
	return 0;
}

static int
manifest_serve(
    struct req *r, const struct digest *d, const struct db_blob *meta)
{
	if (manifest_serve_ram(r, d) == 0)
		return 0;
	return manifest_serve_file(r, d, meta);
}

static int
manifest_serve_stored(struct req *r, const struct digest *d)
{
	struct db_blob meta;

	if (manifest_serve_ram(r, d) == 0)
		return 0;
	if (db_blob_get(r->srv->db, d, &meta) != 0)
		return -1;
	return manifest_serve_file(r, d, &meta);
}

/*
 * A fresh tag whose mapping and bytes are both in memory: no LMDB lookup,
 * no open or read.  The same conditions as the index path below.
 */
static int
manifest_tag_from_ram(struct req *r)
{
	struct server *srv = r->srv;
	struct db_tag t;

	if (mcache_tag_get(srv->mcache, upstream_name(r->up), r->route.name,
		r->route.tag, &t) != 0 ||
	    clock_wall_s() - t.confirmed_at >= srv->opts->tag_freshness_s ||
	    !oci_accepts(req_accept(r), t.media_type))
		return -1;
	r->cache = REQ_CACHE_HIT;
	if (manifest_serve_ram(r, &t.digest) == 0)
		return 0;
	r->cache = REQ_CACHE_NONE;
	return -1;
}

static void
manifest_path(const struct req *r, char *buf, size_t len)
{
	snprintf(buf, len, "/v2/%s/manifests/%s", r->route.name, r->route.tag);
}

static const char *
manifest_accept(struct req *r)
{
	const char *a = req_accept(r);

	return a != NULL && a[0] != '\0' ? a : oci_accept_all();
}

static void
manifest_stale(struct req *r, const char *why)
{
	log_info("serving cached '%s:%s' from '%s': %s", r->route.name,
	    r->route.tag, upstream_name(r->up), why);
	r->cache = REQ_CACHE_STALE;
	if (manifest_serve_stored(r, &r->stale.digest) == -1)
		req_error(
		    r, OCI_ERR_UNAVAILABLE, "upstream registry unavailable");
}

/*
 * The shared store's mapping for the tag arrived (or did not): serve the
 * manifest it names, by digest (from here or the bucket, verified), as
 * STALE; else the error the fill failed with.
 */
static void
manifest_shared_tag_cb(struct req *r, enum s3_result res, int64_t length,
    const char *body, size_t len)
{
	struct db_tag t;

	(void)length;
	if (res != S3_OK || shared_tag_parse(body, len, &t) == -1 ||
	    !oci_accepts(req_accept(r), t.media_type)) {
		if (res == S3_OK)
			log_warn(
			    "shared store: the mapping of '%s:%s' is not usable here; ignored",
			    r->route.name, r->route.tag);
		req_error(r, r->fill_err, r->fill_why);
		return;
	}
	log_info(
	    "serving '%s:%s' from the shared store's mapping, confirmed upstream %lld s ago: upstream unavailable",
	    r->route.name, r->route.tag,
	    (long long)(clock_wall_s() - t.confirmed_at));
	r->stale = t;
	r->route.by_digest = 1; /* from here on: that manifest, verified */
	r->route.digest = t.digest;
	r->cache = REQ_CACHE_STALE;
	if (manifest_serve_stored(r, &t.digest) == 0)
		return;
	if (stream_attach(r, FILL_MANIFEST) >= 0)
		r->cache = REQ_CACHE_STALE;
}

/*
 * No mapping here and upstream unreachable (never when it answered, e.g.
 * "not found"): another node's, from the shared store.  0 if asked.
 */
static int
manifest_shared_fallback(struct req *r)
{
	if (r->route.by_digest ||
	    (r->fill_err != OCI_ERR_UNAVAILABLE &&
		r->fill_err != OCI_ERR_TOOMANYREQUESTS))
		return -1;
	stream_detach(r);
	if (shared_get_tag(r, upstream_name(r->up), r->route.name, r->route.tag,
		manifest_shared_tag_cb) == 0)
		return 0;
	req_error(r, r->fill_err, r->fill_why);
	return 0;
}

/* The fill failed before a byte went out: the cached mapping, if any. */
static int
manifest_fill_failed(struct req *r)
{
	if (!r->have_stale)
		return manifest_shared_fallback(r);
	stream_detach(r);
	r->cache = REQ_CACHE_STALE;
	return manifest_serve_stored(r, &r->stale.digest);
}

static void
manifest_revalidated(struct req *r, const struct passthru_result *px)
{
	struct db_tag t;

	if (px->res != UPSTREAM_OK) {
		manifest_stale(r, "upstream unreachable");
		return;
	}
	if (px->status == 404) {
		/* Authoritative: the tag is gone upstream. */
		req_error(r, OCI_ERR_MANIFEST_UNKNOWN, NULL);
		return;
	}
	if (px->status != 200) {
		manifest_stale(r, "upstream refused the check");
		return;
	}
	if (px->have_digest && digest_equal(&px->digest, &r->stale.digest)) {
		t = r->stale;
		t.confirmed_at = clock_wall_s();
		if (db_tag_put(r->srv->db, upstream_name(r->up), r->route.name,
			r->route.tag, &t) == -1)
			log_warn("cannot record revalidation of '%s:%s'",
			    r->route.name, r->route.tag);
		else {
			shared_tag_publish(r->srv, upstream_name(r->up),
			    r->route.name, r->route.tag, &t);
			mcache_tag_put(r->srv->mcache, upstream_name(r->up),
			    r->route.name, r->route.tag, &t);
		}
		r->cache = REQ_CACHE_REVALIDATED;
		if (manifest_serve_stored(r, &t.digest) == 0)
			return;
	}
	/* Moved (or no digest to compare): fetch it; stale stays the fallback.
	 */
	stream_attach(r, FILL_MANIFEST);
}

/*
 * A client whose Accept list admits no index asks for a tag whose fresh
 * mapping is an index: answer what upstream (distribution, Docker Hub)
 * answers then, the linux/amd64 manifest, by digest, from the stored
 * index; the mapping stays the index.  0 if handled, -1 to fetch instead.
 */
static int
manifest_from_index(struct req *r)
{
	struct oci_manifest m;
	const struct oci_desc *pick = NULL;
	const char *why;
	off_t size;
	ssize_t n;
	char *buf;
	size_t i;
	int fd;

	if ((fd = blobstore_open_blob(
		 r->srv->store, &r->stale.digest, &size)) == -1)
		return -1;
	if (size > OCI_MANIFEST_MAX) {
		close(fd);
		return -1;
	}
	buf = xmalloc((size_t)size + 1);
	n = pread(fd, buf, (size_t)size, 0);
	close(fd);
	if (n != size ||
	    oci_manifest_parse(buf, (size_t)size, &m, &why) == -1) {
		free(buf);
		return -1;
	}
	free(buf);
	for (i = 0; m.kind == OCI_KIND_INDEX && i < m.ndescs; i++) {
		if (strcmp(m.descs[i].os, "linux") == 0 &&
		    strcmp(m.descs[i].arch, "amd64") == 0 &&
		    oci_accepts(req_accept(r), m.descs[i].media_type)) {
			pick = &m.descs[i];
			break;
		}
	}
	if (pick == NULL) {
		oci_manifest_release(&m);
		return -1;
	}
	r->route.by_digest = 1;
	r->route.digest = pick->digest;
	oci_manifest_release(&m);
	r->have_stale = 0;
	r->cache = REQ_CACHE_HIT;
	if (manifest_serve_stored(r, &r->route.digest) == 0)
		return 0;
	r->cache = REQ_CACHE_NONE;
	stream_attach(r, FILL_MANIFEST);
	return 0;
}

/*
 * The store alone: by digest, or a fresh tag mapping whose type the
 * client accepts.  0 if it answered, -1 (nothing sent) if it takes more.
 * Safe on any loop (LMDB reads, the store's files).
 */
int
manifest_hit(struct req *r)
{
	struct server *srv = r->srv;
	struct db_blob meta;
	struct db_tag t;

	if (!r->route.by_digest && manifest_tag_from_ram(r) == 0)
		return 0;
	r->cache = REQ_CACHE_HIT;
	if (r->route.by_digest) {
		if (manifest_serve_stored(r, &r->route.digest) == 0)
			return 0;
	} else if (db_tag_get(srv->db, upstream_name(r->up), r->route.name,
		       r->route.tag, &t) == 0 &&
	    clock_wall_s() - t.confirmed_at < srv->opts->tag_freshness_s &&
	    oci_accepts(req_accept(r), t.media_type) &&
	    db_blob_get(srv->db, &t.digest, &meta) == 0 &&
	    manifest_serve(r, &t.digest, &meta) == 0)
		return 0;
	r->cache = REQ_CACHE_NONE;
	return -1;
}

void
manifest_handle(struct req *r)
{
	struct server *srv = r->srv;
	struct db_blob meta;
	char path[ROUTE_NAME_MAX + ROUTE_TAG_MAX + 32];
	int rc;

	r->fill_failed = manifest_fill_failed;
	if (r->route.by_digest) {
		/* Digest references are immutable: never an upstream request.
		 */
		r->cache = REQ_CACHE_HIT;
		if (manifest_serve_stored(r, &r->route.digest) == 0)
			return;
		r->cache = REQ_CACHE_NONE;
		stream_attach(r, FILL_MANIFEST);
		return;
	}
	if (manifest_tag_from_ram(r) == 0)
		return;
	rc = db_tag_get(srv->db, upstream_name(r->up), r->route.name,
	    r->route.tag, &r->stale);
	if (rc == 0) /* the index's record, so the next hit needs no lookup */
		mcache_tag_put(srv->mcache, upstream_name(r->up), r->route.name,
		    r->route.tag, &r->stale);
	if (rc == 0 && db_blob_get(srv->db, &r->stale.digest, &meta) == 0 &&
	    !oci_accepts(req_accept(r), r->stale.media_type) &&
	    clock_wall_s() - r->stale.confirmed_at <
		srv->opts->tag_freshness_s &&
	    manifest_from_index(r) == 0)
		return;
	if (rc == 0 && db_blob_get(srv->db, &r->stale.digest, &meta) == 0 &&
	    oci_accepts(req_accept(r), r->stale.media_type)) {
		r->have_stale = 1;
		if (clock_wall_s() - r->stale.confirmed_at <
		    srv->opts->tag_freshness_s) {
			r->cache = REQ_CACHE_HIT;
			if (manifest_serve(r, &r->stale.digest, &meta) == 0)
				return;
			r->cache = REQ_CACHE_NONE;
			r->have_stale = 0;
		} else if (!upstream_usable(r->up)) {
			manifest_stale(
			    r, "upstream unreachable or rate limiting");
			return;
		} else {
			manifest_path(r, path, sizeof path);
			passthru_start(r, UPSTREAM_HEAD, path,
			    manifest_accept(r), manifest_revalidated);
			return;
		}
	}
	stream_attach(r, FILL_MANIFEST);
}
