/*
 * registry/registry.h: the OCI distribution pull API and the upstream
 * client.  Sections follow the files.  No libcurl or jansson type appears
 * here; libevent's event_base and evhttp are the server's own currency.
 */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../storage/storage.h"

struct event_base;
struct evbuffer;
struct server;

/* upstream.c: libcurl multi driven by the server's event_base ----------- */

/*
 * One configured registry (docker.io, ghcr.io, ...).  Owns its base URL,
 * credentials and token cache.  Created at start-up, read-only afterwards
 * except for the token cache.
 */
struct upstream;
/* The process-wide transfer engine: one CURLM on one event_base. */
struct upstream_client;

struct upstream_opts {
	long connect_timeout_ms; /* default 5000 */
	long low_speed_time_s;	 /* abort when < 1 byte/s for this long */
	const char *user_agent;
	long response_timeout_ms; /* to the first status line; 0: none */
};

struct upstream_client *upstream_client_new(
    struct event_base *, const struct upstream_opts *);
/* Cancels every transfer without calling back; NULL-safe. */
void upstream_client_free(struct upstream_client *);

/*
 * name is the registry host clients use ("docker.io"), url its API base
 * ("https://registry-1.docker.io").  Credentials may be NULL (anonymous).
 */
struct upstream *upstream_new(struct upstream_client *, const char *name,
    const char *url, const char *username, const char *password);
void upstream_free(struct upstream *);
const char *upstream_name(const struct upstream *);
const char *upstream_url(const struct upstream *);

enum upstream_method { UPSTREAM_GET, UPSTREAM_HEAD };

enum upstream_result {
	UPSTREAM_OK,	   /* complete response (any HTTP status) */
	UPSTREAM_ECONNECT, /* could not connect, DNS, TLS, timeout before
			      headers */
	UPSTREAM_EBODY,	   /* connection lost or stalled mid-body */
	UPSTREAM_EAUTH,	   /* token fetch failed or challenge refused */
	UPSTREAM_EABORT,   /* a callback returned -1 */
};

/* The final response's headers; borrowed for the duration of the callback. */
struct upstream_response {
	long status;
	int64_t content_length;	  /* -1 if absent */
	const char *content_type; /* NULL if absent */
	const char *docker_content_digest;
	const char *content_range;
	const char *retry_after;
	long ratelimit_limit;	  /* -1 if absent */
	long ratelimit_remaining; /* -1 if absent */
	int64_t duration_ms;	  /* from start to headers */
	const char *x_cache; /* a cache upstream's X-Cache (a parent tier) */
};

struct upstream_cbs {
	/*
	 * Once, when the final response's headers are in (after any token
	 * round trip and redirects; 401 challenges are handled inside).
	 * Return -1 to abort.
	 */
	int (*headers)(void *arg, const struct upstream_response *);
	/* Body bytes in order (only for 2xx); return -1 to abort. */
	int (*body)(void *arg, const void *buf, size_t len);
	/*
	 * Exactly once, last.  The transfer is freed after it returns.  why
	 * is a static reason when result != UPSTREAM_OK.
	 */
	void (*done)(void *arg, enum upstream_result, const char *why);
};

struct upstream_req {
	enum upstream_method method;
	const char *path;    /* "/v2/library/alpine/manifests/3.19" */
	const char *repo;    /* "library/alpine": the token scope */
	const char *accept;  /* Accept header value, or NULL */
	int64_t range_start; /* -1: whole; else "Range: bytes=N-" */
	const char *range;   /* range_start -1: "A-B", "A-" or "-S", or NULL */
};

/* Health and counters of one upstream (for routing and /metrics). */
#define UPSTREAM_NBUCKETS 11 /* finite histogram buckets; +Inf extra */
struct upstream_stats {
	int available;		      /* 0 while the circuit is open */
	int64_t ratelimited_until_ms; /* after a 429; 0 if not limited */
	long ratelimit_limit;	      /* Docker Hub's headers; -1 unknown */
	long ratelimit_remaining;
	uint64_t breaker_opens;
	/* answers by status; index upstream_code_count()-2 is "other",
	 * the last is "error" (no answer) */
	uint64_t requests[16];
	uint64_t duration_buckets[UPSTREAM_NBUCKETS + 1];
	double duration_sum_s;
	uint64_t duration_count;
};

void upstream_stats(const struct upstream *, struct upstream_stats *);
/* 0 while the circuit is open or a 429's Retry-After has not passed. */
int upstream_usable(const struct upstream *);
/* 1 once a reply showed it is a cache tier (a ccprewarm parent). */
int upstream_is_cache(const struct upstream *);
/* Seconds left of a 429's Retry-After window (rounded up); 0 if none. */
long upstream_retry_after_s(const struct upstream *);
size_t upstream_code_count(void);
const char *upstream_code_label(size_t, char *buf, size_t len);
const double *upstream_duration_bounds(void); /* UPSTREAM_NBUCKETS */
/* A CA bundle for this upstream's TLS (NULL: the system's). */
void upstream_set_ca_file(struct upstream *, const char *);

/* Starts a transfer; callbacks come from the event loop, never from here. */
struct upstream_xfer *upstream_xfer_start(struct upstream *,
    const struct upstream_req *, const struct upstream_cbs *, void *arg);
/* Stops a transfer; no callback is called after this.  NULL-safe. */
void upstream_xfer_cancel(struct upstream_xfer *);

/*
 * For auth.c only: a GET of an absolute URL (a token realm) on the
 * upstream's client, with HTTP Basic credentials when username is set and
 * no challenge handling of its own.  Same callbacks and guarantees.
 */
struct upstream_xfer *upstream_xfer_start_url(struct upstream *,
    const char *url, const char *username, const char *password,
    const struct upstream_cbs *, void *arg);

/*
 * For s3.c: runs an easy handle it set up (a CURL *, void * here) on the
 * client's multi.  done gets curl's result code, once, from the loop, after
 * the handle has left the multi; the handle is the caller's again then.
 * Cancelling hands the handle over (freed outside curl's callbacks); no
 * callback after that.  NULL-safe.
 */
struct upstream_ext;
struct upstream_ext *upstream_ext_start(struct upstream_client *, void *easy,
    void (*done)(void *arg, int code), void *arg);
void upstream_ext_cancel(struct upstream_ext *);

/* auth.c: WWW-Authenticate challenges and the token cache (for upstream.c) */

enum auth_scheme { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

/* Per-upstream bearer tokens keyed by scope, and the fetches in flight. */
struct auth_cache;
/* One transfer waiting for a token. */
struct auth_wait;

enum auth_scheme auth_scheme_parse(const char *www_authenticate);
/* Pure: the value of auth-param key (case-insensitive) in a challenge,
 * token or quoted-string unescaped; new string, or NULL if absent. */
char *auth_challenge_param(const char *challenge, const char *key);
/* Pure: a token server's JSON reply ("token" or "access_token", optional
 * "expires_in"); 0 with *token a new string, or -1. */
int auth_token_reply_parse(
    const char *body, size_t len, char **token, long *expires_in);
/*
 * 0 if a token realm may be used for the upstream at upstream_url: http(s)
 * on the same host, or a host sharing its last two labels
 * (auth.docker.io for registry-1.docker.io); else -1.
 */
int auth_realm_check(const char *realm, const char *upstream_url);

/* username/password (may be NULL) are borrowed: the upstream outlives us. */
struct auth_cache *auth_cache_new(
    struct upstream *, const char *username, const char *password);
/*
 * Cancels the fetches in flight; call once no transfer waits any more.
 * NULL-safe.
 */
void auth_cache_free(struct auth_cache *);
/*
 * The unexpired token for repo's pull scope (repo may be NULL), or NULL;
 * borrowed until the next auth_ call.
 */
const char *auth_token_find(struct auth_cache *, const char *repo);
/* Drops repo's token if it is still token (the upstream refused it). */
void auth_token_forget(
    struct auth_cache *, const char *repo, const char *token);
/*
 * Waits for a token for repo from a Bearer challenge; one fetch per scope
 * however many wait.  cb is called once, from the loop: token borrowed for
 * the call, or NULL and a static why.  NULL (with *why, no callback) when
 * the challenge is refused.
 */
struct auth_wait *auth_token_wait(struct auth_cache *, const char *challenge,
    const char *repo, void (*cb)(void *arg, const char *token, const char *why),
    void *arg, const char **why);
/* No callback after this.  NULL-safe. */
void auth_wait_cancel(struct auth_wait *);

/* s3.c: the shared blob store on an S3-compatible bucket ---------------- */

/* A bucket several nodes share; objects "<prefix>/blobs/sha256/<hex>". */
struct s3;
struct s3_xfer;	  /* one request */
struct s3_upload; /* one blob upload (single PUT or multipart) */

struct s3_conf {
	const char *url;    /* endpoint, "http://127.0.0.1:7480" (path style) */
	const char *bucket; /* must exist */
	const char *region; /* NULL: us-east-1 */
	const char *access_key;
	const char *secret_key;
	const char *prefix;	  /* NULL or "" for none */
	uint64_t multipart_min;	  /* 0: 64 MiB */
	uint64_t part_size;	  /* 0: 16 MiB; at least 5 MiB */
	long connect_timeout_ms;  /* 0: 3000 */
	long response_timeout_ms; /* blob GET/HEAD status line; 0: 2000 */
};

enum s3_result {
	S3_OK,
	S3_ENOTFOUND, /* 404: no such object */
	S3_EFAIL,     /* no answer, 5xx, refused (logged, breaker fed) */
	S3_EABORT,    /* a callback returned -1 */
};

struct s3_cbs {
	/* 2xx only, before any body: length -1 if unknown, content_type
	 * NULL if none; -1 aborts. */
	int (*headers)(void *arg, int64_t length, const char *content_type);
	int (*body)(void *arg, const void *, size_t);
	/* Exactly once, last, from the loop; never cancel the request here. */
	void (*done)(void *arg, enum s3_result, const char *why);
};

struct s3_stats {
	int available;			/* 0 while the breaker is open */
	uint64_t hits, misses, corrupt; /* shared_count() */
	uint64_t bytes_in, bytes_out;
	uint64_t errors;  /* failed requests */
	uint64_t skipped; /* not tried: breaker open */
	uint64_t uploads; /* blobs stored in the bucket */
	uint64_t breaker_opens;
};

struct s3 *s3_new(
    struct event_base *, struct upstream_client *, const struct s3_conf *);
/* Cancels everything in flight, without callbacks; NULL-safe. */
void s3_free(struct s3 *);
/* 0 while the breaker is open: callers go straight to upstream. */
int s3_usable(const struct s3 *);
void s3_stats(const struct s3 *, struct s3_stats *);
/* The counters shared.c keeps for fills (hits, misses, corrupt). */
struct s3_stats *s3_counters(struct s3 *);
const char *s3_bucket(const struct s3 *);
/* The pool that hashes multipart parts (each part is signed with its own
 * SHA-256); without one, blobs from multipart_min are not uploaded. */
struct pool;
void s3_set_pool(struct s3 *, struct pool *);
const char *s3_prefix(const struct s3 *); /* "" or "ci/" */
/*
 * GET (or HEAD) of the blob object for d.  NULL (no callback) when the
 * breaker is open or the request cannot be made.
 */
struct s3_xfer *s3_blob_get(struct s3 *, const struct digest *, int head,
    const struct s3_cbs *, void *arg);
/*
 * Uploads [0, size) of fd (dup'ed) as the object for d, which the caller
 * has verified: one PUT signed with d as the payload hash, or a multipart
 * upload from conf->multipart_min.  NULL (no callback) when it cannot
 * start.  cbs->done ends it.
 */
struct s3_upload *s3_blob_put(struct s3 *, const struct digest *, int fd,
    uint64_t size, const struct s3_cbs *, void *arg);
/* The same from memory (manifests), stored with ctype as Content-Type. */
struct s3_upload *s3_blob_put_mem(struct s3 *, const struct digest *,
    const char *ctype, const void *, size_t, const struct s3_cbs *, void *arg);
/* No callback after this; NULL-safe. */
void s3_upload_cancel(struct s3_upload *);
/* Small objects by name under the prefix ("pins/node-a.json"). */
struct s3_xfer *s3_object_get(
    struct s3 *, const char *name, const struct s3_cbs *, void *arg);
struct s3_xfer *s3_object_put(struct s3 *, const char *name, const void *,
    size_t, const struct s3_cbs *, void *arg);
struct s3_xfer *s3_object_delete(
    struct s3 *, const char *name, const struct s3_cbs *, void *arg);
/* ListObjectsV2 under "<prefix><under>"; read s3_xfer_xml() in done. */
struct s3_xfer *s3_list(struct s3 *, const char *under, const char *token,
    const struct s3_cbs *, void *arg);
/* A listing's XML answer, borrowed until done returns; NULL if none. */
const char *s3_xfer_xml(const struct s3_xfer *);
/*
 * Calls fn for every key (full, with the prefix) of a listing, with its
 * size and LastModified (epoch seconds, 0 if unreadable); token gets the
 * continuation token, "" when the listing is complete.  -1 if fn did.
 */
int s3_list_each(const char *xml,
    int (*fn)(void *, const char *key, int64_t size, int64_t mtime), void *arg,
    char *token, size_t tokenlen);
/* No callback after this; NULL-safe. */
void s3_xfer_cancel(struct s3_xfer *);

/* ref.c: image references ------------------------------------------------ */

#define REF_NAME_MAX 255 /* distribution: host "/" path */
#define REF_TAG_MAX 128
/* Room for any ref_format() output, NUL included. */
#define REF_STRLEN 512

/*
 * A parsed, normalised image reference: host lower-cased, "index.docker.io"
 * is "docker.io", Docker Hub single-component names get "library/".
 */
struct ref {
	char host[REF_NAME_MAX + 1]; /* "docker.io", "localhost:5000" */
	char repo[REF_NAME_MAX + 1]; /* "library/nginx" */
	char tag[REF_TAG_MAX + 1];   /* "" if none */
	int has_digest;
	struct digest digest; /* sha256 only */
};

/*
 * Parses "[host[:port]/]path[:tag][@sha256:hex]" as docker does (the first
 * component is a host if it has a '.' or ':' or is "localhost").  0, or -1
 * with a static reason in *why ("invalid tag", "uppercase in repository
 * name", ...) and the struct zeroed.
 */
int ref_parse(struct ref *, const char *s, const char **why);
/*
 * Writes the canonical "host/repo:tag[@sha256:hex]" into buf (REF_STRLEN
 * always suffices).  No tag and no digest is written as ":latest", what a
 * pull would fetch; a digest without a tag has no ":tag".
 */
void ref_format(const struct ref *, char *buf, size_t len);
/* 1 if the reference has no digest and no tag or the tag "latest". */
int ref_is_floating(const struct ref *);
/* 1 if name[0..len) is a valid repository path ("library/nginx"). */
int ref_valid_name(const char *name, size_t len);
/* 1 if tag[0..len) is a valid tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
int ref_valid_tag(const char *tag, size_t len);

/* oci.c: the spec's error codes, media types, manifest JSON -------------- */

enum oci_err {
	OCI_ERR_BLOB_UNKNOWN,
	OCI_ERR_DIGEST_INVALID,
	OCI_ERR_MANIFEST_INVALID,
	OCI_ERR_MANIFEST_UNKNOWN,
	OCI_ERR_NAME_INVALID,
	OCI_ERR_NAME_UNKNOWN,
	OCI_ERR_TAG_INVALID,
	OCI_ERR_UNAUTHORIZED,
	OCI_ERR_DENIED,
	OCI_ERR_UNSUPPORTED,
	OCI_ERR_TOOMANYREQUESTS,
	OCI_ERR_RANGE_INVALID,
	OCI_ERR_SIZE_INVALID,
	OCI_ERR_UNAVAILABLE,
	OCI_ERR_NOT_FOUND,
	OCI_ERR_INTERNAL,
};

/* Manifests larger than this are refused (distribution uses 4 MiB). */
#define OCI_MANIFEST_MAX (4 * 1024 * 1024)
#define OCI_MEDIA_TYPE_MAX DB_MEDIA_TYPE_MAX

int oci_err_status(enum oci_err);
const char *oci_err_code(enum oci_err);
/* The OCI error for an upstream status that is not 2xx (blob: a 404 is
 * BLOB_UNKNOWN, else MANIFEST_UNKNOWN); UNAVAILABLE for the rest. */
enum oci_err oci_err_from_status(long status, int blob);
/* The spec's error body for one error; new string, caller frees. */
char *oci_err_body(enum oci_err, const char *detail);
/* The Accept list sent upstream when the client sent none. */
const char *oci_accept_all(void);
/* 1 if media_type is one of the Accept list's types (or the list is empty
 * or has a wildcard), else 0. */
int oci_accepts(const char *accept, const char *media_type);
/* 1 if the Accept list admits both index types (OCI index, Docker list):
 * what upstream answers then is the tag's meaning for every client. */
int oci_accepts_indexes(const char *accept);
/*
 * Reads the top-level "mediaType" of a manifest; 0 and out filled, or -1
 * if the bytes are not a JSON object (MANIFEST_INVALID).  A manifest
 * without mediaType yields "" (old OCI manifests omit it).
 */
int oci_manifest_media_type(const void *, size_t, char *out, size_t outlen);

/* A descriptor: an index's child manifest, a config or a layer. */
struct oci_desc {
	struct digest digest;
	int64_t size; /* -1 if absent */
	char media_type[OCI_MEDIA_TYPE_MAX];
	char os[32], arch[32], variant[32]; /* index children */
	int foreign; /* has urls: not served by registries */
};

enum oci_kind { OCI_KIND_INDEX, OCI_KIND_IMAGE };

struct oci_manifest {
	enum oci_kind kind;
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct oci_desc config; /* OCI_KIND_IMAGE */
	struct oci_desc *descs; /* children, or layers; owned */
	size_t ndescs;
};

/* Parses an index/manifest list or an image manifest.  0, or -1 with a
 * static reason (schema1 manifests are refused).  Release after use. */
int oci_manifest_parse(
    const void *, size_t, struct oci_manifest *, const char **why);
void oci_manifest_release(struct oci_manifest *);

/* route.c: request path + query -> struct route --------------------------- */

enum route_kind {
	ROUTE_BASE,	/* /v2/ */
	ROUTE_MANIFEST, /* /v2/<name>/manifests/<tag|digest> */
	ROUTE_BLOB,	/* /v2/<name>/blobs/<digest> */
	ROUTE_TAGS,	/* /v2/<name>/tags/list */
	ROUTE_UPLOAD,	/* /v2/<name>/blobs/uploads/... (push) */
	ROUTE_CATALOG,	/* /v2/_catalog */
	ROUTE_METRICS,	/* /metrics */
	ROUTE_ADMIN,	/* /_ccprewarm/v1/<what>: loopback only */
	ROUTE_NKINDS
};

#define ROUTE_NAME_MAX 256
#define ROUTE_TAG_MAX 128

struct route {
	enum route_kind kind;
	char name[ROUTE_NAME_MAX]; /* repository, without any host prefix */
	char host[ROUTE_NAME_MAX]; /* registry from ?ns= or a path prefix; "" =
				      default */
	char tag[ROUTE_TAG_MAX + 1]; /* manifests by tag; "" when by digest */
	char admin[64];		     /* ROUTE_ADMIN: what follows v1/ */
	int by_digest;
	struct digest digest; /* blobs, manifests by digest */
};

/*
 * Parses a raw (undecoded) request path and query.  0 and *rt filled, or
 * -1 with the OCI error and a static reason for the client.
 */
int route_parse(const char *path, const char *query, struct route *rt,
    enum oci_err *err, const char **why);
/*
 * The upstream of ups[0..n) for a registry host ("" and Docker Hub's other
 * names are "docker.io"); NULL if none is configured.
 */
struct upstream *route_upstream_find(
    struct upstream *const *ups, size_t n, const char *host);
/*
 * The upstream a route names, with Docker Hub's official images put under
 * "library/" in rt->name.  NULL with the OCI error and a static reason for
 * the client if there is none.
 */
struct upstream *route_upstream(struct upstream *const *ups, size_t n,
    struct route *rt, enum oci_err *err, const char **why);
/* A kind's name ("manifest"), the /metrics route label. */
const char *route_kind_name(enum route_kind);
/* 1 if a first path component names a registry host ("quay.io",
 * "localhost:5000"). */
int route_is_host(const char *component, size_t len);

/* range.c: the Range header against a size (RFC 9110 section 14) ------- */

enum range_result {
	RANGE_UNSATISFIABLE = -1, /* 416, Content-Range: bytes * /size */
	RANGE_WHOLE = 0,	  /* absent, other unit, bad syntax: 200 */
	RANGE_PARTIAL = 1,	  /* 206 with [*start, *end) */
};

/* Pure: header (NULL-able) against a representation of size bytes.  Sets
 * *start and *end (exclusive; 0 and size unless RANGE_PARTIAL).  Numbers
 * too large for 64 bits saturate (a first-pos past the end is still a
 * 416); several ranges are coalesced when they overlap or touch, else
 * ignored (no multipart replies); more than 16 ranges are ignored. */
enum range_result range_parse(
    const char *header, uint64_t size, uint64_t *start, uint64_t *end);

/* stream.c: what a reply streaming a growing file sends next ------------ */

enum stream_step {
	STREAM_WAIT, /* nothing to send until more bytes land (or verify) */
	STREAM_SEND, /* [off, off + *n) */
	STREAM_END,  /* all sent and verified: the reply may end */
};

/* Pure: a reply of [off, end) (end UINT64_MAX: length unknown, it ends
 * where the file ends once verified) from a file with avail bytes, at most
 * max per step.  The reply's last byte is held back until verified. */
enum stream_step stream_window(uint64_t off, uint64_t end, uint64_t avail,
    int verified, uint64_t max, uint64_t *n);

/* pool.c: worker threads for blocking work, completions on the loop ---- */

struct pool;

struct pool *pool_new(struct event_base *, size_t nthreads);
/* work runs on a worker thread; done later on the loop's thread. */
void pool_submit(
    struct pool *, void (*work)(void *), void (*done)(void *), void *arg);
/* Finishes what was submitted (running its done callbacks), then frees. */
void pool_free(struct pool *);

/* server.c: the one top-level context ------------------------------------- */

struct server;
struct shared;
struct fill;
struct req;

#define SERVER_MAX_UPSTREAMS 16

struct server_upstream_conf {
	const char *name;     /* "docker.io", "ghcr.io", "127.0.0.1:5001" */
	const char *url;      /* "https://registry-1.docker.io" */
	const char *username; /* NULL: anonymous */
	const char *password;
	const char *ca_file; /* NULL: the system's CA bundle */
};

struct server_opts {
	const char *listen_host;
	unsigned short listen_port;
	const char *data_dir;
	struct server_upstream_conf upstreams[SERVER_MAX_UPSTREAMS];
	size_t nupstreams; /* "docker.io" takes un-prefixed names */
	int64_t
	    tag_freshness_s; /* re-check a tag upstream at most this often */
	int64_t connect_timeout_ms;
	int64_t response_timeout_ms; /* upstream's first answer */
	int64_t idle_timeout_s;	     /* client connections */
	int64_t drain_timeout_s;     /* SIGTERM: wait this long for requests */
	int64_t max_requests;	     /* live requests; more get 503 */
	int64_t index_map_bytes;     /* LMDB map size; 0: db.c's default */
	int64_t stall_s;	     /* an upstream body this long without a
					byte is cut (and resumed) */
	int64_t stall_total_s;	     /* no resume after this long without
					a byte, over all attempts */
	int64_t header_timeout_s;    /* a request's headers, from its first
					byte; 0: no limit */
	const char *access_log;	     /* path, "-" for stderr, NULL for none */
	int64_t access_log_buffer_bytes; /* 0: a write per line */
	int64_t access_log_flush_ms;	 /* buffered lines wait at most this */
	int64_t manifest_cache_bytes;	 /* small manifests in RAM; 0: off */
	/* the store's budget (storage/lru.c); 0 is off */
	uint64_t max_bytes;
	uint64_t min_free_bytes;
	int64_t min_free_percent;
	int64_t low_water_percent;   /* 0: the default, 90 */
	int64_t runs_keep;	     /* `ccprewarm run`: finished runs kept */
	struct s3_conf shared_store; /* .url NULL: no shared store */
	const char *shared_node;     /* pin set name; NULL: the host name */
	int64_t shared_pins_s;	     /* publish the pin set this often */
	int64_t loops; /* event loops (threads) serving clients; 1: one */
};

/* Opens the store and index, binds the listener.  NULL (logged) on error. */
struct server *server_new(struct event_base *, const struct server_opts *);
/* Stops accepting and finishes once in-flight requests drain (or the
 * deadline passes); then breaks the loop. */
void server_shutdown(struct server *);
void server_free(struct server *);
/* The bound port (useful with port 0). */
unsigned short server_port(const struct server *);

/* Inside registry/ the context and the request are registry/internal.h's;
 * other layers hold them as opaque handles and use what follows. */

/* What higher layers read of the context. */
struct event_base *server_base(struct server *);
struct db *server_db(struct server *);
struct blobstore *server_store(struct server *);
const struct server_opts *server_opts(const struct server *);
/* The upstream for a registry host ("" = the default); NULL if unknown. */
struct upstream *server_upstream(struct server *, const char *host);

/* Requests as admin handlers and the request hook see them ---------------- */

enum req_method { REQ_GET, REQ_HEAD, REQ_POST, REQ_DELETE, REQ_OTHER };
/* X-Cache: what the cache did for this request. */
enum req_cache {
	REQ_CACHE_NONE,
	REQ_CACHE_HIT,	       /* served from the store */
	REQ_CACHE_MISS,	       /* fetched from upstream by this request */
	REQ_CACHE_COALESCED,   /* joined a fetch another request started */
	REQ_CACHE_REVALIDATED, /* tag re-checked upstream, unchanged */
	REQ_CACHE_STALE,       /* upstream failed; served the cached mapping */
};

/* A finished request, as the request hook sees it (borrowed for the call). */
struct req_summary {
	enum req_method method;
	enum req_cache cache;
	int routed;		   /* route is valid */
	const struct route *route; /* NULL unless routed */
	const struct upstream *up; /* NULL if none */
	int status;
	uint64_t sent; /* body bytes handed to evhttp */
	int64_t start_ms;
	int64_t upstream_ms;	     /* -1: none */
	const char *peer;	     /* the client's address, "" if unknown */
	const struct digest *served; /* the Docker-Content-Digest, or NULL */
};

typedef void (*admin_fn)(struct req *, void *arg);
typedef void (*metrics_fn)(struct evbuffer *, void *arg);
/* Called for every finished request, before it is freed. */
typedef void (*req_hook_fn)(void *arg, const struct req_summary *);

/* The spec's error reply, then req_finish. */
void req_error(struct req *, enum oci_err, const char *detail);
/* A whole reply from memory (body NULL-able; not sent for HEAD). */
void req_reply_mem(struct req *, int status, const char *content_type,
    const struct digest *, const void *body, size_t len);
/* What followed the matched prefix ("" for an exact match). */
const char *req_admin_arg(struct req *);
/* The request body, NUL-terminated (owned by the request), or NULL. */
const char *req_body(struct req *, size_t *len);
/*
 * Adds an admin command: path is matched exactly, or as a prefix when it
 * ends in '/' (the rest is in req_admin_arg()).  Higher layers (prewarm/)
 * plug in here, so registry/ never includes their headers.
 */
void admin_add(
    struct server *, const char *path, enum req_method, admin_fn, void *arg);
/*
 * The one request hook (NULL to remove): fn sees every finished request once
 * its last byte was handed to the kernel, before the request is freed.  Higher
 * layers (prewarm/) plug in here, so registry/ never includes their headers.
 */
void req_hook_set(struct server *, req_hook_fn, void *arg);
/* Metrics text written by a higher layer, appended to /metrics. */
void metrics_add(struct server *, metrics_fn, void *arg);
/* 1 while pinned content alone exceeds the budget. */
int evict_pins_over(const struct server *);

/* alog.c: the access log's buffer ---------------------------------------- */

struct alog;
/*
 * Opens path ("-": stderr) for appending; buffer_bytes 0 writes each line
 * at once, else lines wait in the buffer until it is full or flush_ms
 * passed (a timer on base).  NULL (logged) if it cannot open, or for a
 * NULL or empty path (no log: check path first).
 */
struct alog *alog_open(struct event_base *, const char *path,
    size_t buffer_bytes, int64_t flush_ms);
/* Appends one whole line (with its newline); any thread. */
void alog_line(struct alog *, const char *line, size_t len);
/* Writes what is buffered; any thread.  NULL-safe. */
void alog_flush(struct alog *);
/* Flushes and closes; NULL-safe.  Only on the loop that opened it. */
void alog_close(struct alog *);

/* mcache.c: small manifests in RAM --------------------------------------- */

/*
 * Manifest bytes by digest and tag -> digest mappings (struct db_tag, with
 * its confirmed_at), LRU within max_bytes (every entry's bytes and its
 * overhead).  Any thread: one mutex, held only for a lookup or an insert.
 * The mappings mirror the index: put one wherever db_tag_put() succeeds.
 */
struct mcache;
struct mcache_blob;
struct mcache_stats {
	uint64_t hits, misses; /* mcache_get() */
	uint64_t evictions;    /* entries pushed out by the budget */
	uint64_t bytes, entries, max_bytes;
};
/* NULL (no cache; every function below takes it) when max_bytes is 0. */
struct mcache *mcache_new(size_t max_bytes);
void mcache_free(struct mcache *);
/* Copies the bytes; a new reference to the entry, or NULL if not kept
 * (larger than an eighth of the budget). */
struct mcache_blob *mcache_put(struct mcache *, const struct digest *,
    const char *media_type, const void *, size_t);
/* 1 if len bytes would be kept (not larger than an eighth of the budget). */
int mcache_fits(const struct mcache *, size_t len);
/* A new reference to d's bytes, or NULL; unref when done with them. */
struct mcache_blob *mcache_get(struct mcache *, const struct digest *);
const void *mcache_blob_bytes(const struct mcache_blob *, size_t *len);
const char *mcache_blob_type(const struct mcache_blob *);
void mcache_blob_unref(struct mcache_blob *); /* NULL-safe */
void mcache_tag_put(struct mcache *, const char *upstream, const char *repo,
    const char *tag, const struct db_tag *);
/* 0 found (copied to *out), 1 absent. */
int mcache_tag_get(struct mcache *, const char *upstream, const char *repo,
    const char *tag, struct db_tag *out);
/* d's bytes and every mapping to d go (evicted, deleted). */
void mcache_drop(struct mcache *, const struct digest *);
void mcache_clear(struct mcache *);
void mcache_stats(struct mcache *, struct mcache_stats *);

/* fill.c for pre-warm ---------------------------------------------------- */

enum fill_kind { FILL_BLOB, FILL_MANIFEST };
/*
 * For callers without a client connection (pre-warm): fetch a blob or a
 * manifest into the store through the same single flight.  tag NULL means
 * by digest d.  cb gets the stored digest, or NULL and a reason.  A fill
 * already in flight is joined; the caller checks the store first.
 */
typedef void (*fill_fetch_cb)(
    void *arg, const struct digest *, const char *why);
struct fill_sub;
struct fill_sub *fill_fetch(struct server *, struct upstream *,
    const char *repo, enum fill_kind, const char *tag, const struct digest *,
    fill_fetch_cb, void *arg);
/* No callback after this; NULL-safe. */
void fill_fetch_cancel(struct fill_sub *);

/* shared.c: the shared store's node name ----------------------------------- */

/* 1 if name may name a node's pin set ("ci-runner-3": [A-Za-z0-9._-]). */
int shared_node_valid(const char *name);
/* A published tag mapping's text ("sha256:<hex>\n<confirmed_at>\n<media
 * type>\n") -> mapping; 0, or -1 if it is not exactly one. */
int shared_tag_parse(const char *, size_t, struct db_tag *);

#endif
