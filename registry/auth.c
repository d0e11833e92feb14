/*
 * registry/auth.c: registry token auth (distribution's token spec).  Parses
 * WWW-Authenticate challenges, fetches bearer tokens from the challenge's
 * realm through upstream.c, caches them per upstream and scope until shortly
 * before they expire, and lets every transfer needing a scope wait on one
 * fetch.  Tokens and passwords are never logged.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../common/common.h"
#include "registry.h"

#define AUTH_BODY_MAX (256 * 1024)
/* Token spec: "if omitted, the token is valid for 60 seconds". */
#define AUTH_EXPIRES_DEFAULT_S 60
#define AUTH_EXPIRES_MAX_S 86400 /* a token is kept a day at most */
/* A token is dropped this long before it expires. */
#define AUTH_EXPIRES_MARGIN_S 10

struct auth_token {
	TAILQ_ENTRY(auth_token) link;
	char *scope;
	char *token;
	int64_t expires_ms; /* clock_now_ms() time */
};

struct auth_wait {
	TAILQ_ENTRY(auth_wait) link;
	struct auth_fetch *fetch;
	void (*cb)(void *, const char *, const char *);
	void *arg;
};

/* One token request in flight for one scope. */
struct auth_fetch {
	LIST_ENTRY(auth_fetch) link;
	struct auth_cache *cache;
	char *scope;
	struct upstream_xfer *xfer;
	long status;
	char *body;
	size_t len;
	TAILQ_HEAD(, auth_wait) waiters;
};

struct auth_cache {
	struct upstream *up;
	const char *username;
	const char *password;
	TAILQ_HEAD(, auth_token) tokens;
	LIST_HEAD(, auth_fetch) fetches;
};

/* Challenges ------------------------------------------------------------- */

static const char *
auth_skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

enum auth_scheme
auth_scheme_parse(const char *h)
{
	size_t len;

	if (h == NULL)
		return AUTH_NONE;
	h = auth_skip_space(h);
	len = strcspn(h, " \t,");
	if (len == 6 && strncasecmp(h, "Bearer", 6) == 0)
		return AUTH_BEARER;
	if (len == 5 && strncasecmp(h, "Basic", 5) == 0)
		return AUTH_BASIC;
	return AUTH_NONE;
}

/*
 * The value of auth-param key in a challenge (RFC 7235: name=token or
 * name="quoted \"string\""); new string, or NULL if absent.
 */
static char *
auth_param(const char *h, const char *key)
{
	const char *name;
	char *value;
	size_t nlen, i;

	h = auth_skip_space(h);
	h += strcspn(h, " \t"); /* the scheme */
	for (;;) {
		while (*h == ' ' || *h == '\t' || *h == ',')
			h++;
		if (*h == '\0')
			return NULL;
		name = h;
		nlen = strcspn(h, "= \t,");
		h = auth_skip_space(h + nlen);
		if (*h != '=')
			continue;
		h = auth_skip_space(h + 1);
		value = xmalloc(strlen(h) + 1);
		i = 0;
		if (*h == '"') {
			for (h++; *h != '\0' && *h != '"'; h++) {
				if (*h == '\\' && h[1] != '\0')
					h++;
				value[i++] = *h;
			}
			if (*h == '"')
				h++;
		} else {
			while (
			    *h != '\0' && *h != ',' && *h != ' ' && *h != '\t')
				value[i++] = *h++;
		}
		value[i] = '\0';
		if (nlen == strlen(key) && strncasecmp(name, key, nlen) == 0)
			return value;
		free(value);
	}
}

char *
auth_challenge_param(const char *challenge, const char *key)
{
	return auth_param(challenge, key);
}

/* Realms ----------------------------------------------------------------- */

/* 1 for an IP literal, which has no registrable domain. */
static int
auth_host_is_ip(const char *host)
{
	return strchr(host, ':') != NULL || host[0] == '[' ||
	    strspn(host, "0123456789.") == strlen(host);
}

/* The last two labels ("docker.io"), or NULL for a one-label host. */
static const char *
auth_host_tail(const char *host)
{
	const char *dot;
	size_t len = strlen(host);

	while (len > 0 && host[len - 1] != '.')
		len--;
	if (len == 0)
		return NULL;
	dot = host + len - 1;
	while (dot > host && dot[-1] != '.')
		dot--;
	return dot;
}

/* scheme, host and port (the scheme's default if none) of url, new
 * strings; -1 if it does not parse. */
static int
auth_url_host(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u;
	char *user = NULL;
	int rc = -1;

	*scheme = *host = *port = NULL;
	if ((u = curl_url()) == NULL)
		fatal("cannot allocate a curl url");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) !=
		CURLUE_OK)
		goto out;
	/* Credentials inside a realm are nobody's business. */
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		goto out;
	rc = 0;
out:
	curl_free(user);
	curl_url_cleanup(u);
	return rc;
}

int
auth_realm_check(const char *realm, const char *upstream_url)
{
	char *rscheme = NULL, *rhost = NULL, *uscheme = NULL, *uhost = NULL;
	char *rport = NULL, *uport = NULL;
	const char *rtail, *utail;
	int rc = -1;

	if (auth_url_host(realm, &rscheme, &rhost, &rport) == -1 ||
	    auth_url_host(upstream_url, &uscheme, &uhost, &uport) == -1)
		goto out;
	if (strcasecmp(rscheme, "https") != 0 &&
	    strcasecmp(rscheme, "http") != 0)
		goto out;
	/* never from https down to http: the credentials would be clear */
	if (strcasecmp(uscheme, "https") == 0 &&
	    strcasecmp(rscheme, "https") != 0)
		goto out;
	/*
	 * The same host is the same service only on the same scheme and
	 * port: another port on it may be anyone's (any local user can bind
	 * one), and the token request carries the credentials.
	 */
	if (strcasecmp(rhost, uhost) == 0) {
		if (strcasecmp(rscheme, uscheme) == 0 &&
		    strcmp(rport, uport) == 0)
			rc = 0;
		goto out;
	}
	/*
	 * Siblings of one registry: auth.docker.io for registry-1.docker.io.
	 * Two labels is not the registrable domain under a two-label public
	 * suffix (co.uk), but upstreams are configured, not client-chosen.
	 */
	if (auth_host_is_ip(rhost) || auth_host_is_ip(uhost))
		goto out;
	rtail = auth_host_tail(rhost);
	utail = auth_host_tail(uhost);
	if (rtail != NULL && utail != NULL && strcasecmp(rtail, utail) == 0)
		rc = 0;
out:
	curl_free(rscheme);
	curl_free(rhost);
	curl_free(rport);
	curl_free(uscheme);
	curl_free(uhost);
	curl_free(uport);
	return rc;
}

/* realm?service=...&scope=..., URL-encoded; new string or NULL. */
static char *
auth_token_url(const char *realm, const char *service, const char *scope)
{
	CURLU *u;
	char *q, *url = NULL, *out = NULL;
	int bad = 0;

	if ((u = curl_url()) == NULL)
		fatal("cannot allocate a curl url");
	if (curl_url_set(u, CURLUPART_URL, realm, 0) != CURLUE_OK)
		goto out;
	if (service != NULL) {
		xasprintf(&q, "service=%s", service);
		bad |= curl_url_set(u, CURLUPART_QUERY, q,
			   CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK;
		free(q);
	}
	if (scope[0] != '\0') {
		xasprintf(&q, "scope=%s", scope);
		bad |= curl_url_set(u, CURLUPART_QUERY, q,
			   CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK;
		free(q);
	}
	if (bad || curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto out;
	out = xstrdup(url);
out:
	curl_free(url);
	curl_url_cleanup(u);
	return out;
}

/* Cache ------------------------------------------------------------------ */

/* "repository:<repo>:pull", or "" when there is no repository. */
static char *
auth_scope(const char *repo)
{
	char *scope;

	if (repo == NULL)
		return xstrdup("");
	xasprintf(&scope, "repository:%s:pull", repo);
	return scope;
}

static void
auth_token_free(struct auth_cache *cache, struct auth_token *t)
{
	TAILQ_REMOVE(&cache->tokens, t, link);
	free(t->scope);
	free(t->token);
	free(t);
}

static struct auth_token *
auth_token_lookup(struct auth_cache *cache, const char *scope)
{
	struct auth_token *t;

	for (t = TAILQ_FIRST(&cache->tokens); t != NULL;
	     t = TAILQ_NEXT(t, link)) {
		if (strcmp(t->scope, scope) == 0)
			break;
	}
	if (t != NULL && t->expires_ms <= clock_now_ms()) {
		auth_token_free(cache, t);
		t = NULL;
	}
	return t;
}

static void
auth_token_store(struct auth_cache *cache, const char *scope, const char *token,
    long expires_in)
{
	struct auth_token *t;
	long margin;

	if ((t = auth_token_lookup(cache, scope)) != NULL)
		auth_token_free(cache, t);
	margin = expires_in > 2 * AUTH_EXPIRES_MARGIN_S ? AUTH_EXPIRES_MARGIN_S
							: expires_in / 2;
	t = xcalloc(1, sizeof *t);
	t->scope = xstrdup(scope);
	t->token = xstrdup(token);
	t->expires_ms = clock_now_ms() + (int64_t)(expires_in - margin) * 1000;
	TAILQ_INSERT_TAIL(&cache->tokens, t, link);
}

struct auth_cache *
auth_cache_new(struct upstream *up, const char *username, const char *password)
{
	struct auth_cache *cache;

	cache = xcalloc(1, sizeof *cache);
	cache->up = up;
	cache->username = username;
	cache->password = password;
	TAILQ_INIT(&cache->tokens);
	LIST_INIT(&cache->fetches);
	return cache;
}

static void
auth_fetch_free(struct auth_fetch *f)
{
	struct auth_wait *w;

	while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
		TAILQ_REMOVE(&f->waiters, w, link);
		free(w);
	}
	free(f->scope);
	free(f->body);
	free(f);
}

void
auth_cache_free(struct auth_cache *cache)
{
	struct auth_fetch *f;
	struct auth_token *t;

	if (cache == NULL)
		return;
	while ((f = LIST_FIRST(&cache->fetches)) != NULL) {
		LIST_REMOVE(f, link);
		upstream_xfer_cancel(f->xfer);
		auth_fetch_free(f);
	}
	while ((t = TAILQ_FIRST(&cache->tokens)) != NULL)
		auth_token_free(cache, t);
	free(cache);
}

const char *
auth_token_find(struct auth_cache *cache, const char *repo)
{
	struct auth_token *t;
	char *scope;

	if (cache == NULL)
		return NULL;
	scope = auth_scope(repo);
	t = auth_token_lookup(cache, scope);
	free(scope);
	return t != NULL ? t->token : NULL;
}

void
auth_token_forget(struct auth_cache *cache, const char *repo, const char *token)
{
	struct auth_token *t;
	char *scope;

	scope = auth_scope(repo);
	t = auth_token_lookup(cache, scope);
	if (t != NULL && strcmp(t->token, token) == 0)
		auth_token_free(cache, t);
	free(scope);
}

/* Fetches ---------------------------------------------------------------- */

/* {"token": "...", "expires_in": 300}; some servers say access_token. */
static int
auth_reply_parse(const char *body, size_t len, char **token, long *expires_in)
{
	json_t *root, *t, *e;
	json_error_t err;
	double v;
	int rc = -1;

	*token = NULL;
	if ((root = json_loadb(body, len, 0, &err)) == NULL)
		return -1;
	t = json_object_get(root, "token");
	if (!json_is_string(t) || json_string_length(t) == 0)
		t = json_object_get(root, "access_token");
	if (!json_is_string(t) || json_string_length(t) == 0)
		goto out;
	e = json_object_get(root, "expires_in");
	v = json_is_number(e) ? json_number_value(e) : 0;
	/* capped before the conversion: 3E40 is no long (fuzz_auth) */
	*expires_in = v < 1	     ? AUTH_EXPIRES_DEFAULT_S
	    : v > AUTH_EXPIRES_MAX_S ? AUTH_EXPIRES_MAX_S
				     : (long)v;
	*token = xstrdup(json_string_value(t));
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int
auth_token_reply_parse(
    const char *body, size_t len, char **token, long *expires_in)
{
	return auth_reply_parse(body, len, token, expires_in);
}

static int
auth_fetch_headers_cb(void *arg, const struct upstream_response *r)
{
	struct auth_fetch *f = arg;

	f->status = r->status;
	return 0;
}

static int
auth_fetch_body_cb(void *arg, const void *buf, size_t len)
{
	struct auth_fetch *f = arg;

	if (len > AUTH_BODY_MAX - f->len)
		return -1;
	f->body = xreallocarray(f->body, f->len + len, 1);
	memcpy(f->body + f->len, buf, len);
	f->len += len;
	return 0;
}

static void
auth_fetch_done_cb(void *arg, enum upstream_result result, const char *why)
{
	struct auth_fetch *f = arg;
	struct auth_cache *cache = f->cache;
	struct auth_wait *w;
	const char *name = upstream_name(cache->up);
	char *token = NULL;
	long expires_in = AUTH_EXPIRES_DEFAULT_S;

	/* Off the cache first: a waiter's callback may start a new fetch. */
	f->xfer = NULL;
	LIST_REMOVE(f, link);
	if (result != UPSTREAM_OK) {
		log_warn("upstream '%s': cannot fetch a token for '%s': %s",
		    name, f->scope, why);
		why = "token fetch failed";
	} else if (f->status != 200) {
		log_warn(
		    "upstream '%s': token request for '%s' refused with status %ld",
		    name, f->scope, f->status);
		why = "token request refused";
	} else if (auth_reply_parse(f->body, f->len, &token, &expires_in) ==
	    -1) {
		log_warn(
		    "upstream '%s': bad token reply for '%s'", name, f->scope);
		why = "bad token reply";
	} else {
		auth_token_store(cache, f->scope, token, expires_in);
		why = NULL;
	}
	/* The cache may be gone once a waiter has been told. */
	while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
		void (*cb)(void *, const char *, const char *) = w->cb;
		void *warg = w->arg;

		TAILQ_REMOVE(&f->waiters, w, link);
		free(w);
		cb(warg, token, why);
	}
	free(token);
	auth_fetch_free(f);
}

static const struct upstream_cbs auth_fetch_cbs = {
    auth_fetch_headers_cb,
    auth_fetch_body_cb,
    auth_fetch_done_cb,
};

struct auth_wait *
auth_token_wait(struct auth_cache *cache, const char *challenge,
    const char *repo, void (*cb)(void *, const char *, const char *), void *arg,
    const char **why)
{
	struct auth_fetch *f;
	struct auth_wait *w = NULL;
	const char *name = upstream_name(cache->up);
	char *scope, *realm = NULL, *service = NULL, *url = NULL;

	scope = auth_scope(repo);
	for (f = LIST_FIRST(&cache->fetches); f != NULL;
	     f = LIST_NEXT(f, link)) {
		if (strcmp(f->scope, scope) == 0)
			goto wait;
	}
	if ((realm = auth_param(challenge, "realm")) == NULL) {
		log_warn(
		    "upstream '%s': bearer challenge without a realm", name);
		*why = "bearer challenge without a realm";
		goto out;
	}
	if (auth_realm_check(realm, upstream_url(cache->up)) == -1) {
		log_warn(
		    "upstream '%s': token realm '%s' refused: not on the registry's host",
		    name, realm);
		*why = "token realm refused";
		goto out;
	}
	service = auth_param(challenge, "service");
	if ((url = auth_token_url(realm, service, scope)) == NULL) {
		log_warn("upstream '%s': bad token realm '%s'", name, realm);
		*why = "bad token realm";
		goto out;
	}
	f = xcalloc(1, sizeof *f);
	f->cache = cache;
	f->scope = xstrdup(scope);
	TAILQ_INIT(&f->waiters);
	f->xfer = upstream_xfer_start_url(cache->up, url, cache->username,
	    cache->password, &auth_fetch_cbs, f);
	if (f->xfer == NULL) {
		auth_fetch_free(f);
		*why = "upstream shut down";
		goto out;
	}
	LIST_INSERT_HEAD(&cache->fetches, f, link);
wait:
	w = xcalloc(1, sizeof *w);
	w->fetch = f;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&f->waiters, w, link);
out:
	free(url);
	free(service);
	free(realm);
	free(scope);
	return w;
}

void
auth_wait_cancel(struct auth_wait *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&w->fetch->waiters, w, link);
	free(w);
}
