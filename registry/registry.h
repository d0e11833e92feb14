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

#include "../storage/storage.h"

struct event_base;

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
	long connect_timeout_ms;	/* default 5000 */
	long low_speed_time_s;		/* abort when < 1 byte/s for this long */
	const char *user_agent;
};

struct upstream_client *upstream_client_new(struct event_base *,
    const struct upstream_opts *);
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
	UPSTREAM_OK,		/* complete response (any HTTP status) */
	UPSTREAM_ECONNECT,	/* could not connect, DNS, TLS, timeout before headers */
	UPSTREAM_EBODY,		/* connection lost or stalled mid-body */
	UPSTREAM_EAUTH,		/* token fetch failed or challenge refused */
	UPSTREAM_EABORT,	/* a callback returned -1 */
};

/* The final response's headers; borrowed for the duration of the callback. */
struct upstream_response {
	long status;
	int64_t content_length;		/* -1 if absent */
	const char *content_type;	/* NULL if absent */
	const char *docker_content_digest;
	const char *content_range;
	const char *retry_after;
	long ratelimit_limit;		/* -1 if absent */
	long ratelimit_remaining;	/* -1 if absent */
	int64_t duration_ms;		/* from start to headers */
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
	const char *path;	/* "/v2/library/alpine/manifests/3.19" */
	const char *repo;	/* "library/alpine": the token scope */
	const char *accept;	/* Accept header value, or NULL */
	int64_t range_start;	/* -1: whole; else "Range: bytes=N-" */
};

/* Starts a transfer; callbacks come from the event loop, never from here. */
struct upstream_xfer *upstream_xfer_start(struct upstream *,
    const struct upstream_req *, const struct upstream_cbs *, void *arg);
/* Stops a transfer; no callback is called after this.  NULL-safe. */
void upstream_xfer_cancel(struct upstream_xfer *);

#endif
