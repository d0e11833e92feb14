/*
 * registry/upstream.c: the transfer engine.  One libcurl multi handle driven
 * by the server's event_base as in curl's hiperfifo.c (one event per socket
 * curl watches, one timer), the configured upstreams, and per transfer the
 * response-header parsing that hides redirects and 401 challenges (auth.c)
 * from the caller, who sees headers -> body -> done.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "../common/common.h"
#include "registry.h"

/* Error bodies are read and dropped up to this, so the connection stays. */
#define UPSTREAM_SWALLOW_MAX (64 * 1024)
#define UPSTREAM_MAXREDIRS 5L

enum upstream_xfer_state {
	UPSTREAM_XFER_QUEUED,	 /* waiting for the kick to enter the multi */
	UPSTREAM_XFER_CONNECT,	 /* in the multi, no status line yet */
	UPSTREAM_XFER_HEADERS,	 /* reading one response's header block */
	UPSTREAM_XFER_SKIP,	 /* redirect or 401 to retry: body dropped */
	UPSTREAM_XFER_AUTH,	 /* out of the multi, waiting for a token */
	UPSTREAM_XFER_BODY,	 /* final headers delivered, body flowing */
	UPSTREAM_XFER_DONE,	 /* done called; freed once the client idles */
	UPSTREAM_XFER_CANCELLED, /* no more callbacks; freed likewise */
};

static const char *const upstream_xfer_state_names[] = {
    "queued",
    "connect",
    "headers",
    "skip",
    "auth",
    "body",
    "done",
    "cancelled",
};

enum upstream_xfer_flags {
	UPSTREAM_XFER_NOAUTH = (1 << 0), /* a token fetch: 401 is final */
	UPSTREAM_XFER_BASIC = (1 << 1),	 /* send HTTP Basic credentials */
	UPSTREAM_XFER_PROBE = (1 << 2),	 /* the breaker's half-open probe */
};

/*
 * The circuit breaker: a connect failure or timeout opens it, and while it
 * is open every transfer fails at once (so a dead or black-holed upstream
 * costs one connect timeout, not one per request).  A timer then sends one
 * probe (GET /v2/, any HTTP answer will do): an answer closes it, a failure
 * opens it again for twice as long, up to UPSTREAM_OPEN_MAX_MS.
 */
enum upstream_breaker {
	UPSTREAM_BREAKER_CLOSED,
	UPSTREAM_BREAKER_OPEN,
	UPSTREAM_BREAKER_HALF_OPEN,
};

#define UPSTREAM_OPEN_MIN_MS 2000
#define UPSTREAM_OPEN_MAX_MS 60000
#define UPSTREAM_RETRY_AFTER_DEFAULT_S 60

/* /metrics label values for upstream answers, in the stats' order. */
static const long upstream_codes[] = {
    200, 206, 304, 307, 401, 403, 404, 429, 500, 502, 503, 504};
/* upper bounds (seconds) of the time-to-headers histogram */
static const double upstream_bounds[UPSTREAM_NBUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* One socket curl asked us to watch. */
struct upstream_sock {
	struct upstream_client *client;
	curl_socket_t fd;
	struct event *ev;
	LIST_ENTRY(upstream_sock) link;
};

TAILQ_HEAD(upstream_xfer_list, upstream_xfer);

/* A transfer another file (s3.c) set up, run on this multi. */
struct upstream_ext {
	struct upstream_client *client;
	CURL *easy;
	void (*done)(void *, int);
	void *arg;
	int in_multi;
	int cancelled; /* the handle is ours; freed when the client idles */
	LIST_ENTRY(upstream_ext) link;
};

struct upstream_client {
	struct event_base *base;
	CURLM *multi;
	struct event *timer; /* curl's one timeout */
	struct event *kick;  /* adds queued transfers from the loop */
	long connect_timeout_ms;
	long response_timeout_ms; /* to the first status line; 0: none */
	long low_speed_time_s;
	char *user_agent;
	int busy; /* > 0 inside our own event callbacks */
	struct upstream_xfer_list queued;
	struct upstream_xfer_list dead; /* done or cancelled, to free */
	LIST_HEAD(, upstream) upstreams;
	LIST_HEAD(, upstream_sock) socks;
	LIST_HEAD(, upstream_ext) exts; /* upstream_ext_start() */
};

struct upstream {
	struct upstream_client *client; /* NULL once the client is freed */
	char *name;
	char *url;
	char *username;
	char *password;
	char *ca_file;
	struct auth_cache *auth;
	struct upstream_xfer_list xfers;
	LIST_ENTRY(upstream) link;
	enum upstream_breaker breaker;
	int64_t open_ms; /* how long it stays open this time */
	struct event *probe_ev;
	int local;    /* it is itself on a loopback or link-local address */
	int is_cache; /* its replies carry a ccprewarm X-Cache (a parent) */
	struct upstream_stats stats;
};

/* The response being read; reset by every status line. */
struct upstream_resp {
	long status;
	int64_t content_length;
	char *content_type;
	char *docker_content_digest;
	char *content_range;
	char *retry_after;
	char *www_authenticate;
	char *x_cache;
	long ratelimit_limit;
	long ratelimit_remaining;
	int has_location;
};

struct upstream_xfer {
	struct upstream_client *client;
	struct upstream *up; /* NULL once done or cancelled */
	enum upstream_xfer_state state;
	enum upstream_xfer_flags flags;
	enum upstream_method method;
	char *url;
	char *accept;
	char *repo;
	int64_t range_start;
	char *range;	      /* a client's range, forwarded as is (or NULL) */
	const char *username; /* borrowed from the upstream */
	const char *password;
	char *token; /* bearer token sent, or NULL */
	int attempts;
	int redirected;	 /* this attempt follows a redirect */
	int refused;	 /* we refused a connection (SSRF guard) */
	int local_errno; /* socket() failed here: not the upstream's fault */
	struct auth_wait *wait;
	struct event *answer_ev; /* response timeout */
	CURL *easy;
	int in_multi;
	struct curl_slist *hdrs;
	struct upstream_resp resp;
	size_t swallowed;
	int64_t start_ms;
	enum upstream_result abort_result;
	const char *abort_why; /* non-NULL once we told curl to stop */
	struct upstream_cbs cbs;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
	TAILQ_ENTRY(upstream_xfer) link;  /* up->xfers, then client->dead */
	TAILQ_ENTRY(upstream_xfer) qlink; /* client->queued */
};

enum upstream_hdr_kind {
	UPSTREAM_HDR_STR,
	UPSTREAM_HDR_INT64,
	UPSTREAM_HDR_RATELIMIT,
	UPSTREAM_HDR_CHALLENGE,
	UPSTREAM_HDR_PRESENT,
};

/* The response headers we keep; names compared case-insensitively. */
static const struct {
	const char *name;
	enum upstream_hdr_kind kind;
	size_t off;
} upstream_hdrs[] = {
    {"content-length", UPSTREAM_HDR_INT64,
	offsetof(struct upstream_resp, content_length)},
    {"content-type", UPSTREAM_HDR_STR,
	offsetof(struct upstream_resp, content_type)},
    {"docker-content-digest", UPSTREAM_HDR_STR,
	offsetof(struct upstream_resp, docker_content_digest)},
    {"content-range", UPSTREAM_HDR_STR,
	offsetof(struct upstream_resp, content_range)},
    {"retry-after", UPSTREAM_HDR_STR,
	offsetof(struct upstream_resp, retry_after)},
    {"ratelimit-limit", UPSTREAM_HDR_RATELIMIT,
	offsetof(struct upstream_resp, ratelimit_limit)},
    {"ratelimit-remaining", UPSTREAM_HDR_RATELIMIT,
	offsetof(struct upstream_resp, ratelimit_remaining)},
    {"www-authenticate", UPSTREAM_HDR_CHALLENGE,
	offsetof(struct upstream_resp, www_authenticate)},
    {"location", UPSTREAM_HDR_PRESENT,
	offsetof(struct upstream_resp, has_location)},
    {"x-cache", UPSTREAM_HDR_STR, offsetof(struct upstream_resp, x_cache)},
};

/* libcurl's global state, initialised with the first client. */
static int upstream_curl_users;

static void upstream_xfer_finish(
    struct upstream_xfer *, enum upstream_result, const char *);

/* Client ---------------------------------------------------------------- */

static void
upstream_client_enter(struct upstream_client *client)
{
	client->busy++;
}

static void upstream_xfer_free(struct upstream_xfer *);
static void upstream_ext_reap(struct upstream_client *);

/*
 * Transfers that ended while we were inside curl or a callback wait on the
 * dead list: curl forbids removing a handle from inside its callbacks, and
 * the caller's stack may still hold the transfer.
 */
static void
upstream_client_leave(struct upstream_client *client)
{
	struct upstream_xfer *x;

	if (--client->busy > 0)
		return;
	while ((x = TAILQ_FIRST(&client->dead)) != NULL) {
		TAILQ_REMOVE(&client->dead, x, link);
		upstream_xfer_free(x);
	}
	upstream_ext_reap(client);
}

static void
upstream_sock_free(struct upstream_sock *sock)
{
	LIST_REMOVE(sock, link);
	if (sock->ev != NULL)
		event_free(sock->ev);
	free(sock);
}

static void upstream_xfer_complete(struct upstream_xfer *, CURLcode);
static int upstream_ext_complete(struct upstream_client *, CURL *, CURLcode);

/* Hands every finished transfer to its completion. */
static void
upstream_client_drain(struct upstream_client *client)
{
	struct upstream_xfer *x;
	CURLMsg *msg;
	CURLcode code;
	char *priv;
	int left;

	while ((msg = curl_multi_info_read(client->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		code = msg->data.result;
		if (upstream_ext_complete(client, msg->easy_handle, code))
			continue;
		priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct upstream_xfer *)priv;
		if (x != NULL)
			upstream_xfer_complete(x, code);
	}
}

static void
upstream_sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_sock *sock = arg;
	struct upstream_client *client = sock->client;
	int action = 0, running;

	/* sock may be freed by curl's socket callback in here. */
	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	upstream_client_enter(client);
	curl_multi_socket_action(client->multi, fd, action, &running);
	upstream_client_drain(client);
	upstream_client_leave(client);
}

static void
upstream_timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_client *client = arg;
	int running;

	(void)fd;
	(void)what;
	upstream_client_enter(client);
	curl_multi_socket_action(
	    client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	upstream_client_drain(client);
	upstream_client_leave(client);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl asks, or forget it. */
static int
upstream_curl_socket_cb(
    CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct upstream_client *client = userp;
	struct upstream_sock *sock = socketp;
	short kind = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (sock != NULL)
			upstream_sock_free(sock);
		return 0;
	}
	if (sock == NULL) {
		sock = xcalloc(1, sizeof *sock);
		sock->client = client;
		sock->fd = fd;
		LIST_INSERT_HEAD(&client->socks, sock, link);
		curl_multi_assign(client->multi, fd, sock);
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	/* Freeing the event from inside its own callback is fine. */
	if (sock->ev != NULL)
		event_free(sock->ev);
	sock->ev =
	    event_new(client->base, fd, kind, upstream_sock_event_cb, sock);
	if (sock->ev == NULL || event_add(sock->ev, NULL) == -1) {
		log_error("cannot watch upstream socket %d", (int)fd);
		return -1;
	}
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer; curl must not be re-entered here. */
static int
upstream_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream_client *client = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(client->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(client->timer, &tv);
}

static void upstream_xfer_begin(struct upstream_xfer *);
static void upstream_ext_begin(struct upstream_client *);

static void
upstream_kick_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_client *client = arg;
	struct upstream_xfer *x;

	(void)fd;
	(void)what;
	upstream_client_enter(client);
	while ((x = TAILQ_FIRST(&client->queued)) != NULL) {
		TAILQ_REMOVE(&client->queued, x, qlink);
		upstream_xfer_begin(x);
	}
	upstream_ext_begin(client);
	upstream_client_leave(client);
}

struct upstream_client *
upstream_client_new(struct event_base *base, const struct upstream_opts *opts)
{
	struct upstream_client *client;

	if (upstream_curl_users++ == 0 &&
	    curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatal("cannot initialise libcurl");
	client = xcalloc(1, sizeof *client);
	client->base = base;
	client->connect_timeout_ms = 5000;
	client->low_speed_time_s = 30;
	if (opts != NULL && opts->connect_timeout_ms > 0)
		client->connect_timeout_ms = opts->connect_timeout_ms;
	if (opts != NULL && opts->low_speed_time_s > 0)
		client->low_speed_time_s = opts->low_speed_time_s;
	if (opts != NULL)
		client->response_timeout_ms = opts->response_timeout_ms;
	client->user_agent =
	    xstrdup(opts != NULL && opts->user_agent != NULL ? opts->user_agent
							     : "ccprewarm");
	TAILQ_INIT(&client->queued);
	TAILQ_INIT(&client->dead);
	LIST_INIT(&client->upstreams);
	LIST_INIT(&client->socks);
	LIST_INIT(&client->exts);
	if ((client->multi = curl_multi_init()) == NULL)
		fatal("cannot create the curl multi handle");
	curl_multi_setopt(
	    client->multi, CURLMOPT_SOCKETFUNCTION, upstream_curl_socket_cb);
	curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
	curl_multi_setopt(
	    client->multi, CURLMOPT_TIMERFUNCTION, upstream_curl_timer_cb);
	curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
	client->timer = evtimer_new(base, upstream_timer_event_cb, client);
	client->kick = event_new(base, -1, 0, upstream_kick_event_cb, client);
	if (client->timer == NULL || client->kick == NULL)
		fatal("cannot create the upstream client's events");
	return client;
}

static void upstream_detach(struct upstream *);
static void upstream_ext_abandon(struct upstream_client *);

void
upstream_client_free(struct upstream_client *client)
{
	struct upstream_sock *sock;
	struct upstream *up;

	if (client == NULL)
		return;
	while ((up = LIST_FIRST(&client->upstreams)) != NULL)
		upstream_detach(up);
	upstream_ext_abandon(client);
	/* Every easy handle is out of the multi now, as curl requires. */
	curl_multi_cleanup(client->multi);
	while ((sock = LIST_FIRST(&client->socks)) != NULL)
		upstream_sock_free(sock);
	event_free(client->kick);
	event_free(client->timer);
	free(client->user_agent);
	free(client);
	if (--upstream_curl_users == 0)
		curl_global_cleanup();
}

/* Upstreams ------------------------------------------------------------- */

static void upstream_probe_event_cb(evutil_socket_t, short, void *);
static struct upstream_xfer *upstream_xfer_new(
    struct upstream *, char *, const struct upstream_cbs *, void *);

struct upstream *
upstream_new(struct upstream_client *client, const char *name, const char *url,
    const char *username, const char *password)
{
	struct upstream *up;
	size_t len;

	up = xcalloc(1, sizeof *up);
	up->client = client;
	up->name = xstrdup(name);
	up->url = xstrdup(url);
	len = strlen(up->url);
	while (len > 0 && up->url[len - 1] == '/')
		up->url[--len] = '\0';
	if (username != NULL) {
		up->username = xstrdup(username);
		up->password = xstrdup(password != NULL ? password : "");
	}
	TAILQ_INIT(&up->xfers);
	up->auth = auth_cache_new(up, up->username, up->password);
	up->stats.available = 1;
	up->stats.ratelimit_limit = up->stats.ratelimit_remaining = -1;
	up->open_ms = UPSTREAM_OPEN_MIN_MS;
	if ((up->probe_ev = evtimer_new(
		 client->base, upstream_probe_event_cb, up)) == NULL)
		fatal("out of memory creating a probe timer");
	LIST_INSERT_HEAD(&client->upstreams, up, link);
	return up;
}

/*
 * Cancels the upstream's transfers, waiters before the token fetches they
 * wait on (auth_cache_free's precondition), and lets go of the client.
 */
static void
upstream_detach(struct upstream *up)
{
	struct upstream_client *client = up->client;
	struct upstream_xfer *x, *next;

	upstream_client_enter(client);
	for (x = TAILQ_FIRST(&up->xfers); x != NULL; x = next) {
		next = TAILQ_NEXT(x, link);
		if (!(x->flags & UPSTREAM_XFER_NOAUTH))
			upstream_xfer_cancel(x);
	}
	auth_cache_free(up->auth);
	up->auth = NULL;
	while ((x = TAILQ_FIRST(&up->xfers)) != NULL)
		upstream_xfer_cancel(x);
	upstream_client_leave(client);
	LIST_REMOVE(up, link);
	up->client = NULL;
	event_free(up->probe_ev);
	up->probe_ev = NULL;
}

void
upstream_free(struct upstream *up)
{
	if (up == NULL)
		return;
	if (up->client != NULL)
		upstream_detach(up);
	free(up->name);
	free(up->url);
	free(up->username);
	free(up->password);
	free(up->ca_file);
	free(up);
}

const char *
upstream_name(const struct upstream *up)
{
	return up->name;
}

int
upstream_is_cache(const struct upstream *up)
{
	return up->is_cache;
}

const char *
upstream_url(const struct upstream *up)
{
	return up->url;
}

/* Response headers -------------------------------------------------------- */

static void
upstream_resp_reset(struct upstream_resp *resp)
{
	free(resp->content_type);
	free(resp->docker_content_digest);
	free(resp->content_range);
	free(resp->retry_after);
	free(resp->www_authenticate);
	free(resp->x_cache);
	memset(resp, 0, sizeof *resp);
	resp->content_length = -1;
	resp->ratelimit_limit = -1;
	resp->ratelimit_remaining = -1;
}

/* "HTTP/1.1 200 OK", "HTTP/2 404" */
static long
upstream_resp_status(const char *line, size_t len)
{
	const char *end = line + len;
	long status = 0;

	while (line < end && *line != ' ')
		line++;
	while (line < end && *line == ' ')
		line++;
	for (; line < end && *line >= '0' && *line <= '9'; line++)
		status = status * 10 + (*line - '0');
	return status;
}

static void
upstream_resp_header(struct upstream_resp *resp, const char *line, size_t len)
{
	const char *colon, *v, *end = line + len;
	char *value, **str;
	size_t i, nlen;

	if ((colon = memchr(line, ':', len)) == NULL)
		return;
	nlen = (size_t)(colon - line);
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v &&
	    (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
		end[-1] == '\t'))
		end--;
	for (i = 0; i < nitems(upstream_hdrs); i++) {
		if (strlen(upstream_hdrs[i].name) == nlen &&
		    strncasecmp(line, upstream_hdrs[i].name, nlen) == 0)
			break;
	}
	if (i == nitems(upstream_hdrs))
		return;
	value = xstrndup(v, (size_t)(end - v));
	switch (upstream_hdrs[i].kind) {
	case UPSTREAM_HDR_INT64:
		*(int64_t *)((char *)resp + upstream_hdrs[i].off) =
		    value[0] >= '0' && value[0] <= '9'
		    ? strtoll(value, NULL, 10)
		    : -1;
		break;
	case UPSTREAM_HDR_RATELIMIT:
		/* Docker Hub: "100;w=21600" is 100 per 21600 s. */
		*(long *)((char *)resp + upstream_hdrs[i].off) =
		    value[0] >= '0' && value[0] <= '9' ? strtol(value, NULL, 10)
						       : -1;
		break;
	case UPSTREAM_HDR_PRESENT:
		*(int *)((char *)resp + upstream_hdrs[i].off) = 1;
		break;
	case UPSTREAM_HDR_CHALLENGE:
		/* Several challenges: keep a Bearer one if there is one. */
		if (auth_scheme_parse(resp->www_authenticate) == AUTH_BEARER)
			break;
		/* FALLTHROUGH */
	case UPSTREAM_HDR_STR:
		str = (char **)(void *)((char *)resp + upstream_hdrs[i].off);
		free(*str);
		*str = value;
		return;
	}
	free(value);
}

/* Transfers ------------------------------------------------------------- */

static const char *
upstream_xfer_name(const struct upstream_xfer *x)
{
	return x->up != NULL ? x->up->name : "?";
}

/* Every state change goes through here. */
static void
upstream_xfer_set_state(struct upstream_xfer *x, enum upstream_xfer_state state)
{
	if (x->state == state)
		return;
	log_debug("upstream '%s': transfer %p '%s': %s -> %s",
	    upstream_xfer_name(x), (void *)x, x->url,
	    upstream_xfer_state_names[x->state],
	    upstream_xfer_state_names[state]);
	x->state = state;
}

static void
upstream_xfer_free(struct upstream_xfer *x)
{
	if (x->answer_ev != NULL)
		event_free(x->answer_ev);
	if (x->in_multi)
		curl_multi_remove_handle(x->client->multi, x->easy);
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->hdrs);
	upstream_resp_reset(&x->resp);
	free(x->url);
	free(x->accept);
	free(x->range);
	free(x->repo);
	free(x->token);
	free(x);
}

/*
 * Ends x's life as a transfer (DONE or CANCELLED): off the upstream and the
 * queue, no token wait; freed when the client next idles.
 */
static void
upstream_xfer_bury(struct upstream_xfer *x, enum upstream_xfer_state state)
{
	struct upstream_client *client = x->client;

	if (x->state == UPSTREAM_XFER_QUEUED)
		TAILQ_REMOVE(&client->queued, x, qlink);
	auth_wait_cancel(x->wait);
	x->wait = NULL;
	upstream_xfer_set_state(x, state);
	if (x->up != NULL) {
		TAILQ_REMOVE(&x->up->xfers, x, link);
		x->up = NULL;
	}
	TAILQ_INSERT_TAIL(&client->dead, x, link);
}

static void
upstream_xfer_finish(
    struct upstream_xfer *x, enum upstream_result result, const char *why)
{
	struct upstream_client *client = x->client;

	upstream_client_enter(client);
	upstream_xfer_bury(x, UPSTREAM_XFER_DONE);
	if (x->cbs.done != NULL)
		x->cbs.done(x->arg, result, result == UPSTREAM_OK ? NULL : why);
	upstream_client_leave(client);
}

/* Asks curl to stop (from one of its callbacks) and says what to report. */
static size_t
upstream_xfer_abort(
    struct upstream_xfer *x, enum upstream_result result, const char *why)
{
	if (x->abort_why == NULL) {
		x->abort_result = result;
		x->abort_why = why;
	}
	return 0;
}

static void
upstream_xfer_queue(struct upstream_xfer *x)
{
	upstream_xfer_set_state(x, UPSTREAM_XFER_QUEUED);
	TAILQ_INSERT_TAIL(&x->client->queued, x, qlink);
	event_active(x->client->kick, 0, 0);
}

/* A response arrived: count it, remember rate limits, close the breaker. */
static void
upstream_note_response(struct upstream *up, const struct upstream_response *r)
{
	struct upstream_stats *st = &up->stats;
	double secs = (double)r->duration_ms / 1000.0;
	long retry;
	size_t i;

	for (i = 0; i < nitems(upstream_codes); i++)
		if (upstream_codes[i] == r->status)
			break;
	st->requests[i]++; /* i == nitems: "other" */
	/* another ccprewarm (a parent tier) says which tier served */
	if (r->x_cache != NULL && r->x_cache[0] != '\0' &&
	    r->x_cache[strspn(r->x_cache, "ABCDEFGHIJKLMNOPQRSTUVWXYZ, ")] ==
		'\0')
		up->is_cache = 1;
	for (i = 0; i < UPSTREAM_NBUCKETS && secs > upstream_bounds[i]; i++)
		;
	st->duration_buckets[i]++;
	st->duration_sum_s += secs;
	st->duration_count++;
	if (r->ratelimit_limit >= 0)
		st->ratelimit_limit = r->ratelimit_limit;
	if (r->ratelimit_remaining >= 0)
		st->ratelimit_remaining = r->ratelimit_remaining;
	if (r->status == 429) {
		retry = r->retry_after != NULL ? atol(r->retry_after) : 0;
		if (retry <= 0 || retry > 86400)
			retry = UPSTREAM_RETRY_AFTER_DEFAULT_S;
		st->ratelimited_until_ms = clock_now_ms() + retry * 1000;
		log_warn(
		    "upstream '%s' is rate limiting (429); serving cached tags without checking for %ld s",
		    up->name, retry);
	}
	if (up->breaker != UPSTREAM_BREAKER_CLOSED) {
		log_info(
		    "upstream '%s' answers again; circuit closed", up->name);
		up->breaker = UPSTREAM_BREAKER_CLOSED;
		up->open_ms = UPSTREAM_OPEN_MIN_MS;
		st->available = 1;
		event_del(up->probe_ev);
	}
}

/* A connect failure or timeout: open the breaker (or keep it open). */
static void
upstream_breaker_trip(struct upstream *up, const char *why)
{
	struct timeval tv;

	if (up->breaker == UPSTREAM_BREAKER_OPEN)
		return;
	if (up->breaker == UPSTREAM_BREAKER_HALF_OPEN)
		up->open_ms = up->open_ms * 2 > UPSTREAM_OPEN_MAX_MS
		    ? UPSTREAM_OPEN_MAX_MS
		    : up->open_ms * 2;
	up->breaker = UPSTREAM_BREAKER_OPEN;
	up->stats.available = 0;
	up->stats.breaker_opens++;
	log_warn("upstream '%s' unreachable (%s); failing fast for %lld ms",
	    up->name, why, (long long)up->open_ms);
	tv.tv_sec = up->open_ms / 1000;
	tv.tv_usec = (up->open_ms % 1000) * 1000;
	evtimer_add(up->probe_ev, &tv);
}

static void
upstream_probe_done_cb(void *arg, enum upstream_result res, const char *why)
{
	(void)arg;
	(void)res;
	(void)why;
	/* upstream_note_response closed it, or the failure re-opened it */
}

static void
upstream_probe_event_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct upstream_cbs cbs = {
	    NULL, NULL, upstream_probe_done_cb};
	struct upstream *up = arg;
	struct upstream_xfer *x;
	char *url;

	(void)fd;
	(void)what;
	if (up->client == NULL || up->breaker != UPSTREAM_BREAKER_OPEN)
		return;
	up->breaker = UPSTREAM_BREAKER_HALF_OPEN;
	xasprintf(&url, "%s/v2/", up->url);
	x = upstream_xfer_new(up, url, &cbs, NULL);
	x->method = UPSTREAM_GET;
	x->flags = UPSTREAM_XFER_NOAUTH | UPSTREAM_XFER_PROBE;
	upstream_xfer_queue(x);
}

void
upstream_stats(const struct upstream *up, struct upstream_stats *out)
{
	*out = up->stats;
	if (out->ratelimited_until_ms <= clock_now_ms())
		out->ratelimited_until_ms = 0;
}

int
upstream_usable(const struct upstream *up)
{
	return up->breaker == UPSTREAM_BREAKER_CLOSED &&
	    up->stats.ratelimited_until_ms <= clock_now_ms();
}

long
upstream_retry_after_s(const struct upstream *up)
{
	int64_t left = up->stats.ratelimited_until_ms - clock_now_ms();

	return left > 0 ? (long)((left + 999) / 1000) : 0;
}

size_t
upstream_code_count(void)
{
	return nitems(upstream_codes) + 2;
}

const char *
upstream_code_label(size_t i, char *buf, size_t len)
{
	if (i < nitems(upstream_codes))
		snprintf(buf, len, "%ld", upstream_codes[i]);
	else
		xstrlcpy(
		    buf, i == nitems(upstream_codes) ? "other" : "error", len);
	return buf;
}

const double *
upstream_duration_bounds(void)
{
	return upstream_bounds;
}

void
upstream_set_ca_file(struct upstream *up, const char *path)
{
	free(up->ca_file);
	up->ca_file = path != NULL ? xstrdup(path) : NULL;
}

/* Calls the headers callback; -1 if the transfer must stop. */
static int
upstream_xfer_deliver_headers(struct upstream_xfer *x)
{
	struct upstream_response r;

	upstream_xfer_set_state(x, UPSTREAM_XFER_BODY);
	memset(&r, 0, sizeof r);
	r.status = x->resp.status;
	r.content_length = x->resp.content_length;
	r.content_type = x->resp.content_type;
	r.docker_content_digest = x->resp.docker_content_digest;
	r.content_range = x->resp.content_range;
	r.retry_after = x->resp.retry_after;
	r.ratelimit_limit = x->resp.ratelimit_limit;
	r.ratelimit_remaining = x->resp.ratelimit_remaining;
	r.x_cache = x->resp.x_cache;
	r.duration_ms = clock_now_ms() - x->start_ms;
	if (x->up != NULL)
		upstream_note_response(x->up, &r);
	if (x->cbs.headers == NULL)
		return 0;
	if (x->cbs.headers(x->arg, &r) == -1) {
		upstream_xfer_abort(
		    x, UPSTREAM_EABORT, "aborted by the headers callback");
		return -1;
	}
	return x->state == UPSTREAM_XFER_CANCELLED ? -1 : 0;
}

/* 1 if this 401 is ours to answer: once, and only with something to send. */
static int
upstream_xfer_can_auth(const struct upstream_xfer *x)
{
	switch (auth_scheme_parse(x->resp.www_authenticate)) {
	case AUTH_BEARER:
		break;
	case AUTH_BASIC:
		if (x->up->username == NULL || (x->flags & UPSTREAM_XFER_BASIC))
			return 0;
		break;
	case AUTH_NONE:
		return 0;
	}
	return !(x->flags & UPSTREAM_XFER_NOAUTH) && x->attempts == 0;
}

/*
 * End of a header block: an interim response (1xx), a redirect curl is
 * about to follow, a challenge we answer, or the final response, whose
 * headers go to the caller now, before any body byte.
 */
static int
upstream_xfer_headers_end(struct upstream_xfer *x)
{
	long status = x->resp.status;

	if (status >= 100 && status < 200) {
		upstream_xfer_set_state(x, UPSTREAM_XFER_CONNECT);
		return 0;
	}
	if (x->method == UPSTREAM_GET && status >= 300 && status < 400 &&
	    x->resp.has_location) {
		x->redirected = 1;
		upstream_xfer_set_state(x, UPSTREAM_XFER_SKIP);
		return 0;
	}
	if (status == 401 && upstream_xfer_can_auth(x)) {
		upstream_xfer_set_state(x, UPSTREAM_XFER_SKIP);
		return 0;
	}
	return upstream_xfer_deliver_headers(x);
}

/* CURLOPT_HEADERFUNCTION: every header line of every response, one a call. */
static size_t
upstream_header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct upstream_xfer *x = arg;
	size_t len = size * n;

	switch (x->state) {
	case UPSTREAM_XFER_CONNECT:
	case UPSTREAM_XFER_HEADERS:
	case UPSTREAM_XFER_SKIP:
		break;
	case UPSTREAM_XFER_BODY: /* trailers */
		return len;
	default:
		return 0;
	}
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		if (x->answer_ev != NULL)
			evtimer_del(x->answer_ev); /* it answers */
		upstream_resp_reset(&x->resp);
		x->resp.status = upstream_resp_status(buf, len);
		x->swallowed = 0;
		upstream_xfer_set_state(x, UPSTREAM_XFER_HEADERS);
		return len;
	}
	if (x->state != UPSTREAM_XFER_HEADERS)
		return len;
	if (buf[0] == '\r' || buf[0] == '\n')
		return upstream_xfer_headers_end(x) == 0 ? len : 0;
	upstream_resp_header(&x->resp, buf, len);
	return len;
}

/* CURLOPT_WRITEFUNCTION: body bytes (curl decodes nothing). */
static size_t
upstream_write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct upstream_xfer *x = arg;
	size_t len = size * n;

	switch (x->state) {
	case UPSTREAM_XFER_BODY:
		if (x->resp.status >= 200 && x->resp.status < 300) {
			if (x->cbs.body != NULL &&
			    x->cbs.body(x->arg, buf, len) == -1)
				return upstream_xfer_abort(x, UPSTREAM_EABORT,
				    "aborted by the body callback");
			return x->state == UPSTREAM_XFER_BODY ? len : 0;
		}
		/* The caller has the status; closing beats reading on. */
		x->swallowed += len;
		if (x->swallowed > UPSTREAM_SWALLOW_MAX)
			return upstream_xfer_abort(
			    x, UPSTREAM_OK, "error body too large");
		return len;
	case UPSTREAM_XFER_SKIP:
		x->swallowed += len;
		if (x->swallowed > UPSTREAM_SWALLOW_MAX)
			return upstream_xfer_abort(x, UPSTREAM_ECONNECT,
			    "interim response body too large");
		return len;
	default:
		return 0;
	}
}

/* 1 for loopback, link-local and unspecified addresses (v4, v6, mapped). */
static int
upstream_addr_is_local(const struct sockaddr *sa)
{
	const struct sockaddr_in *in4;
	const struct sockaddr_in6 *in6;
	const unsigned char *b;
	uint32_t a;

	if (sa->sa_family == AF_INET) {
		in4 = (const struct sockaddr_in *)(const void *)sa;
		a = ntohl(in4->sin_addr.s_addr);
	} else if (sa->sa_family == AF_INET6) {
		in6 = (const struct sockaddr_in6 *)(const void *)sa;
		b = in6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		    IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
			return 1;
		if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return 0;
		a = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
		    (uint32_t)b[14] << 8 | b[15];
	} else
		return 0;
	return (a >> 24) == 127 || (a >> 24) == 0 || (a >> 16) == 0xa9fe;
}

/*
 * CURLOPT_OPENSOCKETFUNCTION: every new connection.  An upstream may be on
 * loopback (tests, a local registry), which its first connection tells us;
 * otherwise a redirect to a loopback or link-local address (the node's own
 * services, a cloud metadata endpoint) is refused: an upstream must not
 * make the mirror fetch from the node.  A socket() that fails for lack of
 * fds or memory is recorded as local, so it never opens a breaker.
 */
static curl_socket_t
upstream_opensocket_cb(
    void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct upstream_xfer *x = arg;
	int local = upstream_addr_is_local(&addr->addr);
	curl_socket_t fd;

	(void)purpose;
	if (local && x->up != NULL && !x->redirected)
		x->up->local = 1;
	if (local && x->redirected && (x->up == NULL || !x->up->local)) {
		x->refused = 1;
		return CURL_SOCKET_BAD;
	}
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd == CURL_SOCKET_BAD)
		x->local_errno = errno;
	return fd;
}

/*
 * CURLOPT_PREREQFUNCTION: before every request, on a new or a reused
 * connection.  A connection from curl's pool (opened for another upstream
 * that is local) is never seen by upstream_opensocket_cb; the same rule
 * holds here, by the connection's address.
 */
static int
upstream_prereq_cb(void *arg, char *primary_ip, char *local_ip,
    int primary_port, int local_port)
{
	struct upstream_xfer *x = arg;
	struct sockaddr_storage ss;
	struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;

	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (!x->redirected || (x->up != NULL && x->up->local))
		return CURL_PREREQFUNC_OK;
	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, primary_ip, &in4->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, primary_ip, &in6->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	if (!upstream_addr_is_local((struct sockaddr *)(void *)&ss))
		return CURL_PREREQFUNC_OK;
	x->refused = 1;
	return CURL_PREREQFUNC_ABORT;
}

/* The easy handle's options that hold for every attempt. */
static int
upstream_xfer_setup(struct upstream_xfer *x)
{
	struct upstream_client *client = x->client;
	CURL *e;
	char range[32];
	int bad = 0;

	if ((e = x->easy = curl_easy_init()) == NULL)
		fatal("cannot create a curl handle");
	bad |= curl_easy_setopt(e, CURLOPT_URL, x->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
	/*
	 * A transfer removed while its name lookup still runs would join the
	 * threaded resolver's thread on the loop (curl's Curl_resolver_kill),
	 * freezing every request until getaddrinfo gives up (10 s with
	 * glibc's defaults).  With QUICK_EXIT curl detaches the thread, which
	 * frees its own state when the lookup ends (curl >= 7.87).
	 */
	bad |= curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION,
		   upstream_opensocket_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x) != CURLE_OK;
	bad |= curl_easy_setopt(
		   e, CURLOPT_PREREQFUNCTION, upstream_prereq_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PREREQDATA, x) != CURLE_OK;
	/* Bigger reads: fewer write callbacks, pwrites and wake-ups per blob.
	 */
	bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		   client->connect_timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
		   client->low_speed_time_s) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	if (x->up != NULL && x->up->ca_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, x->up->ca_file) !=
		    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, client->user_agent) !=
	    CURLE_OK;
	/* A proxy's "200 Connection established" is not the response. */
	bad |= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") !=
	    CURLE_OK;
	bad |= curl_easy_setopt(
		   e, CURLOPT_HEADERFUNCTION, upstream_header_cb) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_write_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
	/* No CURLOPT_ACCEPT_ENCODING: bytes must reach the store unchanged. */
	if (x->method == UPSTREAM_HEAD) {
		bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
	} else {
		/*
		 * Docker Hub sends blobs to a CDN.  curl (>= 7.58, and >= 7.83
		 * also for another port or scheme) drops our Authorization
		 * header and Basic credentials when a redirect leaves the
		 * host that challenged; CURLOPT_UNRESTRICTED_AUTH stays off.
		 */
		bad |=
		    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_MAXREDIRS,
			   UPSTREAM_MAXREDIRS) != CURLE_OK;
	}
	if (x->range_start >= 0) {
		snprintf(
		    range, sizeof range, "%lld-", (long long)x->range_start);
		bad |= curl_easy_setopt(e, CURLOPT_RANGE, range) != CURLE_OK;
	} else if (x->range != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_RANGE, x->range) != CURLE_OK;
	if (bad)
		log_error("cannot set up curl for '%s'", x->url);
	return bad ? -1 : 0;
}

/*
 * An upstream that accepts connections but never answers (black-holed
 * behind a load balancer, wedged) would otherwise cost curl's low-speed
 * limit (30 s) per request; no status line within response_timeout_ms
 * counts as a connect failure and opens the breaker.
 */
static void
upstream_answer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_xfer *x = arg;

	(void)fd;
	(void)what;
	if (x->state != UPSTREAM_XFER_CONNECT || !x->in_multi)
		return;
	log_warn("upstream '%s': no answer to '%s' within %ld ms",
	    upstream_xfer_name(x), x->url, x->client->response_timeout_ms);
	curl_multi_remove_handle(x->client->multi, x->easy);
	x->in_multi = 0;
	if (x->up != NULL) {
		x->up->stats.requests[nitems(upstream_codes) + 1]++;
		upstream_breaker_trip(x->up, "no answer");
	}
	upstream_xfer_finish(x, UPSTREAM_ECONNECT, "upstream did not answer");
}

static void
upstream_xfer_arm_answer(struct upstream_xfer *x)
{
	long ms = x->client->response_timeout_ms;
	struct timeval tv;

	if (ms <= 0)
		return;
	if (x->answer_ev == NULL &&
	    (x->answer_ev = evtimer_new(
		 x->client->base, upstream_answer_event_cb, x)) == NULL)
		fatal("out of memory creating a response timer");
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(x->answer_ev, &tv);
}

/* Per attempt: request headers and credentials, then into the multi. */
static void
upstream_xfer_begin(struct upstream_xfer *x)
{
	struct curl_slist *hdrs = NULL;
	char *h;

	if (x->up != NULL && x->up->breaker != UPSTREAM_BREAKER_CLOSED &&
	    !(x->flags & UPSTREAM_XFER_PROBE)) {
		x->up->stats.requests[nitems(upstream_codes) + 1]++;
		upstream_xfer_finish(x, UPSTREAM_ECONNECT,
		    "upstream unreachable (circuit open)");
		return;
	}
	upstream_xfer_set_state(x, UPSTREAM_XFER_CONNECT);
	if (x->easy == NULL && upstream_xfer_setup(x) == -1) {
		upstream_xfer_finish(
		    x, UPSTREAM_ECONNECT, "cannot set up the transfer");
		return;
	}
	if (x->accept != NULL) {
		xasprintf(&h, "Accept: %s", x->accept);
		hdrs = curl_slist_append(hdrs, h);
		free(h);
	}
	if (x->token != NULL) {
		xasprintf(&h, "Authorization: Bearer %s", x->token);
		hdrs = curl_slist_append(hdrs, h);
		free(h);
	}
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, hdrs);
	curl_slist_free_all(x->hdrs);
	x->hdrs = hdrs;
	if (x->flags & UPSTREAM_XFER_BASIC) {
		curl_easy_setopt(
		    x->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(x->easy, CURLOPT_USERNAME, x->username);
		curl_easy_setopt(x->easy, CURLOPT_PASSWORD, x->password);
	}
	upstream_resp_reset(&x->resp);
	x->swallowed = 0;
	x->redirected = x->refused = x->local_errno = 0;
	x->errbuf[0] = '\0';
	if (curl_multi_add_handle(x->client->multi, x->easy) != CURLM_OK) {
		log_error("cannot add a transfer for '%s' to curl", x->url);
		upstream_xfer_finish(
		    x, UPSTREAM_ECONNECT, "cannot start the transfer");
		return;
	}
	x->in_multi = 1;
	upstream_xfer_arm_answer(x);
}

static void
upstream_xfer_retry(struct upstream_xfer *x, const char *token)
{
	if (token != NULL) {
		free(x->token);
		x->token = xstrdup(token);
	}
	x->attempts++;
	upstream_xfer_queue(x);
}

/* auth.c's answer for a transfer in UPSTREAM_XFER_AUTH. */
static void
upstream_xfer_token_cb(void *arg, const char *token, const char *why)
{
	struct upstream_xfer *x = arg;

	x->wait = NULL;
	if (token == NULL) {
		upstream_xfer_finish(x, UPSTREAM_EAUTH, why);
		return;
	}
	upstream_xfer_retry(x, token);
}

/* A 401 we answer: Basic with the credentials, Bearer with a token. */
static void
upstream_xfer_auth(struct upstream_xfer *x)
{
	struct upstream *up = x->up;
	const char *token, *why = "token fetch failed";

	if (auth_scheme_parse(x->resp.www_authenticate) == AUTH_BASIC) {
		x->flags |= UPSTREAM_XFER_BASIC;
		upstream_xfer_retry(x, NULL);
		return;
	}
	/* The token we sent was refused: never offer it again. */
	if (x->token != NULL)
		auth_token_forget(up->auth, x->repo, x->token);
	if ((token = auth_token_find(up->auth, x->repo)) != NULL) {
		upstream_xfer_retry(x, token);
		return;
	}
	upstream_xfer_set_state(x, UPSTREAM_XFER_AUTH);
	x->wait = auth_token_wait(up->auth, x->resp.www_authenticate, x->repo,
	    upstream_xfer_token_cb, x, &why);
	if (x->wait == NULL)
		upstream_xfer_finish(x, UPSTREAM_EAUTH, why);
}

/*
 * Failures that say the upstream is down: it could not be reached, or it
 * accepted and said nothing (a timeout before any status line).  Anything
 * else (a redirect loop, an unsupported protocol, HTTP/0.9, an empty
 * reply, TLS trouble) is one request's fault and fails that request only.
 */
static const CURLcode upstream_down_codes[] = {
    CURLE_COULDNT_RESOLVE_PROXY,
    CURLE_COULDNT_RESOLVE_HOST,
    CURLE_COULDNT_CONNECT,
    CURLE_OPERATION_TIMEDOUT,
};

/* 1 if this failed attempt counts against the upstream's breaker. */
static int
upstream_xfer_says_down(const struct upstream_xfer *x, CURLcode code)
{
	size_t i;

	if (x->refused || x->local_errno != 0 ||
	    x->state != UPSTREAM_XFER_CONNECT)
		return 0;
	for (i = 0; i < nitems(upstream_down_codes); i++)
		if (upstream_down_codes[i] == code)
			return 1;
	return 0;
}

static void
upstream_xfer_failed(struct upstream_xfer *x, CURLcode code)
{
	enum upstream_result result;
	const char *why = curl_easy_strerror(code);

	result =
	    x->state == UPSTREAM_XFER_BODY ? UPSTREAM_EBODY : UPSTREAM_ECONNECT;
	if (x->refused) {
		why = "redirect to a loopback or link-local address refused";
		log_warn("upstream '%s': %s ('%s')", upstream_xfer_name(x), why,
		    x->url);
	} else if (x->local_errno != 0) {
		why = "no local resources for an upstream connection";
		log_warn("upstream '%s': cannot open a socket for '%s': %s",
		    upstream_xfer_name(x), x->url, strerror(x->local_errno));
	} else
		log_warn("upstream '%s': transfer of '%s' failed: %s",
		    upstream_xfer_name(x), x->url,
		    x->errbuf[0] != '\0' ? x->errbuf : why);
	if (x->up != NULL && x->local_errno == 0) {
		x->up->stats.requests[nitems(upstream_codes) + 1]++;
		if (upstream_xfer_says_down(x, code))
			upstream_breaker_trip(x->up, why);
	}
	upstream_xfer_finish(x, result, why);
}

/* curl is done with x's attempt (CURLMSG_DONE). */
static void
upstream_xfer_complete(struct upstream_xfer *x, CURLcode code)
{
	curl_multi_remove_handle(x->client->multi, x->easy);
	x->in_multi = 0;
	switch (x->state) {
	case UPSTREAM_XFER_DONE:
	case UPSTREAM_XFER_CANCELLED:
		return;
	default:
		break;
	}
	if (x->abort_why != NULL) {
		upstream_xfer_finish(x, x->abort_result, x->abort_why);
		return;
	}
	if (code != CURLE_OK) {
		upstream_xfer_failed(x, code);
		return;
	}
	if (x->state == UPSTREAM_XFER_SKIP && x->resp.status == 401) {
		upstream_xfer_auth(x);
		return;
	}
	/* Bodyless or not followed: the headers go out now. */
	if (x->state != UPSTREAM_XFER_BODY &&
	    upstream_xfer_deliver_headers(x) == -1) {
		if (x->state != UPSTREAM_XFER_CANCELLED)
			upstream_xfer_finish(x, x->abort_result, x->abort_why);
		return;
	}
	upstream_xfer_finish(x, UPSTREAM_OK, NULL);
}

static struct upstream_xfer *
upstream_xfer_new(
    struct upstream *up, char *url, const struct upstream_cbs *cbs, void *arg)
{
	struct upstream_xfer *x;

	x = xcalloc(1, sizeof *x);
	x->client = up->client;
	x->up = up;
	x->state = UPSTREAM_XFER_QUEUED;
	x->url = url;
	x->range_start = -1;
	x->start_ms = clock_now_ms();
	x->cbs = *cbs;
	x->arg = arg;
	upstream_resp_reset(&x->resp);
	TAILQ_INSERT_TAIL(&up->xfers, x, link);
	return x;
}

struct upstream_xfer *
upstream_xfer_start(struct upstream *up, const struct upstream_req *req,
    const struct upstream_cbs *cbs, void *arg)
{
	struct upstream_xfer *x;
	const char *token;
	char *url;

	if (up->client == NULL) {
		log_error("upstream '%s': transfer after shutdown", up->name);
		return NULL;
	}
	xasprintf(&url, "%s%s", up->url, req->path);
	x = upstream_xfer_new(up, url, cbs, arg);
	x->method = req->method;
	x->accept = req->accept != NULL ? xstrdup(req->accept) : NULL;
	x->repo = req->repo != NULL ? xstrdup(req->repo) : NULL;
	x->range_start = req->range_start;
	x->range = req->range != NULL ? xstrdup(req->range) : NULL;
	x->username = up->username;
	x->password = up->password;
	/* Skip the 401 round trip when a token for the scope is at hand. */
	if ((token = auth_token_find(up->auth, x->repo)) != NULL)
		x->token = xstrdup(token);
	upstream_xfer_queue(x);
	return x;
}

struct upstream_xfer *
upstream_xfer_start_url(struct upstream *up, const char *url,
    const char *username, const char *password, const struct upstream_cbs *cbs,
    void *arg)
{
	struct upstream_xfer *x;

	if (up->client == NULL)
		return NULL;
	x = upstream_xfer_new(up, xstrdup(url), cbs, arg);
	x->method = UPSTREAM_GET;
	x->flags = UPSTREAM_XFER_NOAUTH;
	if (username != NULL) {
		x->flags |= UPSTREAM_XFER_BASIC;
		x->username = username;
		x->password = password != NULL ? password : "";
	}
	upstream_xfer_queue(x);
	return x;
}

void
upstream_xfer_cancel(struct upstream_xfer *x)
{
	struct upstream_client *client;

	if (x == NULL)
		return;
	switch (x->state) {
	case UPSTREAM_XFER_DONE: /* inside its own done callback */
	case UPSTREAM_XFER_CANCELLED:
		return;
	default:
		break;
	}
	client = x->client;
	upstream_client_enter(client);
	upstream_xfer_bury(x, UPSTREAM_XFER_CANCELLED);
	upstream_client_leave(client);
}

/* Foreign transfers (s3.c) ------------------------------------------------ */

/* Adds the transfers started since the last kick to the multi. */
static void
upstream_ext_begin(struct upstream_client *client)
{
	struct upstream_ext *e, *next;

	for (e = LIST_FIRST(&client->exts); e != NULL; e = next) {
		next = LIST_NEXT(e, link);
		if (e->in_multi || e->cancelled)
			continue;
		if (curl_multi_add_handle(client->multi, e->easy) != CURLM_OK) {
			log_error("cannot add a shared-store transfer to curl");
			LIST_REMOVE(e, link);
			e->done(e->arg, (int)CURLE_FAILED_INIT);
			free(e);
			continue;
		}
		e->in_multi = 1;
	}
}

/* 1 if easy was a foreign transfer (now done and freed), else 0. */
static int
upstream_ext_complete(struct upstream_client *client, CURL *easy, CURLcode code)
{
	struct upstream_ext *e;

	LIST_FOREACH(e, &client->exts, link)
		if (e->easy == easy)
			break;
	if (e == NULL)
		return 0;
	curl_multi_remove_handle(client->multi, easy);
	e->in_multi = 0;
	if (e->cancelled)
		return 1; /* reaped when the client idles */
	LIST_REMOVE(e, link);
	e->done(e->arg, (int)code);
	free(e);
	return 1;
}

/* Frees the cancelled ones, outside curl's callbacks. */
static void
upstream_ext_reap(struct upstream_client *client)
{
	struct upstream_ext *e, *next;

	for (e = LIST_FIRST(&client->exts); e != NULL; e = next) {
		next = LIST_NEXT(e, link);
		if (!e->cancelled)
			continue;
		LIST_REMOVE(e, link);
		if (e->in_multi)
			curl_multi_remove_handle(client->multi, e->easy);
		curl_easy_cleanup(e->easy);
		free(e);
	}
}

/* Shutdown: every foreign transfer ends without a callback. */
static void
upstream_ext_abandon(struct upstream_client *client)
{
	struct upstream_ext *e;

	LIST_FOREACH(e, &client->exts, link)
		e->cancelled = 1;
	upstream_ext_reap(client);
}

struct upstream_ext *
upstream_ext_start(struct upstream_client *client, void *easy,
    void (*done)(void *arg, int code), void *arg)
{
	struct upstream_ext *e;

	e = xcalloc(1, sizeof *e);
	e->client = client;
	e->easy = easy;
	e->done = done;
	e->arg = arg;
	LIST_INSERT_HEAD(&client->exts, e, link);
	event_active(client->kick, 0, 0);
	return e;
}

void
upstream_ext_cancel(struct upstream_ext *e)
{
	struct upstream_client *client;

	if (e == NULL || e->cancelled)
		return;
	client = e->client;
	e->cancelled = 1;
	if (client->busy == 0)
		upstream_ext_reap(client);
}
