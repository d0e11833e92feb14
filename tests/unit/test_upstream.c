/*
 * tests/unit/test_upstream.c: registry/upstream.c and auth.c against real
 * in-process servers on the same event_base: evhttp on 127.0.0.1 (blobs,
 * 404, HEAD, Range, bearer and basic challenges, a token endpoint), a second
 * evhttp on 127.0.0.2 (the "CDN" of a redirect) and a raw socket server that
 * cuts a body short.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "../../common/common.h"
#include "../../registry/registry.h"
#include "unit.h"

#define BLOB "0123456789abcdefghijklmnopqrstuvwxyz"
#define BLOB_DIGEST "sha256:0000000000000000000000000000000000000000"
#define BIG_LEN (1024 * 1024)
#define TOKEN_REPLY "{\"token\":\"t1\",\"expires_in\":300}"
#define BASIC_USER_PASS "Basic dXNlcjpwYXNz" /* user:pass */

struct fx {
	struct event_base *base;
	struct evhttp *http;  /* the registry, 127.0.0.1 */
	struct evhttp *http2; /* the CDN, 127.0.0.2 */
	struct evconnlistener *raw;
	int port, port2, raw_port;
	struct upstream_client *client;
	struct upstream *up;
	struct upstream *up_creds; /* with user:pass */
	struct event *watchdog;
	struct event *stop;
	int timed_out;
	int dones, expect;
	/* what the servers saw */
	int token_requests;
	int unauthorized;
	int a_saw_auth;
	int cdn_hits, cdn_saw_auth;
	char token_query[256];
	char token_authz[64];
	char range[64];
	char accept[64];
};

struct res {
	struct fx *fx;
	struct upstream_xfer *xfer;
	int cancel_in_body;
	int headers_calls, body_calls, done_calls;
	struct upstream_response resp;
	char ctype[64], digest[80], crange[64];
	char *body;
	size_t len;
	enum upstream_result result;
	const char *why;
};

/* Servers ----------------------------------------------------------------- */

static const char *
test_header(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

static void
test_reply(struct evhttp_request *req, int code, const char *body, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add(b, body, len);
	evhttp_send_reply(req, code, NULL, b);
	evbuffer_free(b);
}

static void
test_challenge(struct fx *fx, struct evhttp_request *req, const char *realm)
{
	char *h;

	fx->unauthorized++;
	xasprintf(&h,
	    "Bearer realm=\"%s\",service=\"test\",scope=\"repository:x:pull\"",
	    realm);
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "WWW-Authenticate", h);
	free(h);
	test_reply(req, 401, "{\"errors\":[]}", 13);
}

static int
test_bearer_ok(struct fx *fx, struct evhttp_request *req)
{
	const char *a = test_header(req, "Authorization");
	char *realm;

	if (a != NULL && strcmp(a, "Bearer t1") == 0)
		return 1;
	xasprintf(&realm, "http://127.0.0.1:%d/token", fx->port);
	test_challenge(fx, req, realm);
	free(realm);
	return 0;
}

static void
test_blob(struct fx *fx, struct evhttp_request *req)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	const char *range = test_header(req, "Range");
	char buf[64];
	long start;

	evhttp_add_header(out, "Content-Type", "application/octet-stream");
	evhttp_add_header(out, "Docker-Content-Digest", BLOB_DIGEST);
	evhttp_add_header(out, "RateLimit-Limit", "100;w=21600");
	evhttp_add_header(out, "ratelimit-remaining", "99;w=21600");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(buf, sizeof buf, "%zu", strlen(BLOB));
		evhttp_add_header(out, "Content-Length", buf);
		evhttp_send_reply(req, 200, "OK", NULL);
		return;
	}
	if (range != NULL) {
		snprintf(fx->range, sizeof fx->range, "%s", range);
		start = strtol(range + strlen("bytes="), NULL, 10);
		snprintf(buf, sizeof buf, "bytes %ld-%zu/%zu", start,
		    strlen(BLOB) - 1, strlen(BLOB));
		evhttp_add_header(out, "Content-Range", buf);
		test_reply(
		    req, 206, BLOB + start, strlen(BLOB) - (size_t)start);
		return;
	}
	test_reply(req, 200, BLOB, strlen(BLOB));
}

static void
test_registry_cb(struct evhttp_request *req, void *arg)
{
	struct fx *fx = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	const char *a = test_header(req, "Authorization");
	const char *accept = test_header(req, "Accept");
	char *body, *loc;

	if (accept != NULL)
		snprintf(fx->accept, sizeof fx->accept, "%s", accept);
	if (strcmp(path, "/v2/x/blobs/plain") == 0) {
		test_blob(fx, req);
	} else if (strcmp(path, "/v2/x/blobs/missing") == 0) {
		test_reply(
		    req, 404, "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}", 36);
	} else if (strcmp(path, "/v2/x/blobs/big") == 0) {
		body = xcalloc(1, BIG_LEN);
		test_reply(req, 200, body, BIG_LEN);
		free(body);
	} else if (strcmp(path, "/v2/x/manifests/auth") == 0) {
		if (test_bearer_ok(fx, req))
			test_reply(req, 200, "manifest", 8);
	} else if (strcmp(path, "/v2/x/manifests/never") == 0) {
		xasprintf(&loc, "http://127.0.0.1:%d/token", fx->port);
		test_challenge(fx, req, loc);
		free(loc);
	} else if (strcmp(path, "/v2/x/manifests/badrealm") == 0) {
		test_challenge(fx, req, "http://evil.example/token");
	} else if (strcmp(path, "/v2/x/manifests/basic") == 0) {
		if (a != NULL && strcmp(a, BASIC_USER_PASS) == 0) {
			test_reply(req, 200, "basic", 5);
			return;
		}
		fx->unauthorized++;
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Basic realm=\"test\"");
		test_reply(req, 401, "", 0);
	} else if (strcmp(path, "/v2/x/blobs/redirect") == 0) {
		if (!test_bearer_ok(fx, req))
			return;
		fx->a_saw_auth = 1;
		xasprintf(&loc, "http://127.0.0.2:%d/cdn/blob", fx->port2);
		evhttp_add_header(
		    evhttp_request_get_output_headers(req), "Location", loc);
		free(loc);
		test_reply(req, 307, "", 0);
	} else if (strcmp(path, "/token") == 0) {
		fx->token_requests++;
		snprintf(fx->token_query, sizeof fx->token_query, "%s",
		    query != NULL ? query : "");
		snprintf(fx->token_authz, sizeof fx->token_authz, "%s",
		    a != NULL ? a : "");
		test_reply(req, 200, TOKEN_REPLY, strlen(TOKEN_REPLY));
	} else {
		test_reply(req, 404, "", 0);
	}
}

static void
test_cdn_cb(struct evhttp_request *req, void *arg)
{
	struct fx *fx = arg;

	fx->cdn_hits++;
	if (test_header(req, "Authorization") != NULL)
		fx->cdn_saw_auth = 1;
	test_reply(req, 200, BLOB, strlen(BLOB));
}

/* The raw server: promises 1000 bytes, sends 10, closes. */
static void
test_raw_write_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
}

static void
test_raw_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	static const char reply[] = "HTTP/1.1 200 OK\r\n"
				    "Content-Length: 1000\r\n"
				    "Content-Type: application/octet-stream\r\n"
				    "\r\n"
				    "0123456789";

	if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos == -1)
		return;
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_setcb(bev, NULL, test_raw_write_cb, NULL, arg);
	bufferevent_write(bev, reply, strlen(reply));
}

static void
test_raw_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev);
}

static void
test_raw_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent *bev;

	(void)sa;
	(void)salen;
	bev = bufferevent_socket_new(
	    evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, test_raw_read_cb, NULL, test_raw_event_cb, arg);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static int
test_fd_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	return ntohs(sin.sin_port);
}

static struct evhttp *
test_http_new(struct event_base *base, const char *addr,
    void (*cb)(struct evhttp_request *, void *), void *arg, int *port)
{
	struct evhttp *http;
	struct evhttp_bound_socket *bound;

	http = evhttp_new(base);
	evhttp_set_gencb(http, cb, arg);
	if ((bound = evhttp_bind_socket_with_handle(http, addr, 0)) == NULL) {
		evhttp_free(http);
		return NULL;
	}
	*port = test_fd_port(evhttp_bound_socket_get_fd(bound));
	return http;
}

/* Fixture ----------------------------------------------------------------- */

static void
test_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;

	(void)fd;
	(void)what;
	fprintf(stderr, "watchdog: no completion after 10 s\n");
	fx->timed_out = 1;
	event_base_loopbreak(fx->base);
}

static void
test_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(fx->base);
}

static int
fx_init(struct fx *fx)
{
	struct upstream_opts opts = {2000, 5, "ccprewarm-test", 0};
	struct sockaddr_in sin;
	char *url;

	if (getenv("UNIT_DEBUG") != NULL)
		log_init(LOG_LEVEL_DEBUG, "test_upstream");
	/* Loopback only, whatever the environment says. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	memset(fx, 0, sizeof *fx);
	fx->base = event_base_new();
	fx->http = test_http_new(
	    fx->base, "127.0.0.1", test_registry_cb, fx, &fx->port);
	fx->http2 =
	    test_http_new(fx->base, "127.0.0.2", test_cdn_cb, fx, &fx->port2);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx->raw = evconnlistener_new_bind(fx->base, test_raw_accept_cb, fx,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
	    (struct sockaddr *)&sin, sizeof sin);
	if (fx->http == NULL || fx->http2 == NULL || fx->raw == NULL)
		return -1;
	fx->raw_port = test_fd_port(evconnlistener_get_fd(fx->raw));
	fx->client = upstream_client_new(fx->base, &opts);
	xasprintf(&url, "http://127.0.0.1:%d/", fx->port);
	fx->up = upstream_new(fx->client, "test", url, NULL, NULL);
	fx->up_creds = upstream_new(fx->client, "creds", url, "user", "pass");
	free(url);
	fx->watchdog = evtimer_new(fx->base, test_watchdog_cb, fx);
	fx->stop = evtimer_new(fx->base, test_stop_cb, fx);
	return 0;
}

static void
fx_release(struct fx *fx)
{
	upstream_free(fx->up);
	upstream_free(fx->up_creds);
	upstream_client_free(fx->client);
	if (fx->raw != NULL)
		evconnlistener_free(fx->raw);
	if (fx->http2 != NULL)
		evhttp_free(fx->http2);
	if (fx->http != NULL)
		evhttp_free(fx->http);
	if (fx->stop != NULL)
		event_free(fx->stop);
	if (fx->watchdog != NULL)
		event_free(fx->watchdog);
	event_base_free(fx->base);
}

/* Runs the loop until n more transfers are done; 0 unless the dog bit. */
static int
fx_run(struct fx *fx, int n)
{
	struct timeval tv = {10, 0};

	fx->expect = fx->dones + n;
	evtimer_add(fx->watchdog, &tv);
	if (fx->dones < fx->expect)
		event_base_dispatch(fx->base);
	evtimer_del(fx->watchdog);
	return fx->timed_out ? -1 : 0;
}

/* Runs the loop for ms milliseconds. */
static void
fx_run_for(struct fx *fx, int ms)
{
	struct timeval tv = {0, ms * 1000};

	evtimer_add(fx->stop, &tv);
	event_base_dispatch(fx->base);
}

static int
test_headers_cb(void *arg, const struct upstream_response *resp)
{
	struct res *r = arg;

	r->headers_calls++;
	r->resp = *resp;
	snprintf(r->ctype, sizeof r->ctype, "%s",
	    resp->content_type ? resp->content_type : "");
	snprintf(r->digest, sizeof r->digest, "%s",
	    resp->docker_content_digest ? resp->docker_content_digest : "");
	snprintf(r->crange, sizeof r->crange, "%s",
	    resp->content_range ? resp->content_range : "");
	/* Borrowed: gone after the callback. */
	r->resp.content_type = r->resp.docker_content_digest = NULL;
	r->resp.content_range = r->resp.retry_after = NULL;
	return 0;
}

static int
test_body_cb(void *arg, const void *buf, size_t len)
{
	struct res *r = arg;

	r->body_calls++;
	r->body = xreallocarray(r->body, r->len + len + 1, 1);
	memcpy(r->body + r->len, buf, len);
	r->len += len;
	r->body[r->len] = '\0';
	if (r->cancel_in_body)
		upstream_xfer_cancel(r->xfer);
	return 0;
}

static void
test_done_cb(void *arg, enum upstream_result result, const char *why)
{
	struct res *r = arg;

	r->done_calls++;
	r->result = result;
	r->why = why;
	if (++r->fx->dones >= r->fx->expect)
		event_base_loopbreak(r->fx->base);
}

static const struct upstream_cbs test_cbs = {
    test_headers_cb,
    test_body_cb,
    test_done_cb,
};

static void
test_start(struct fx *fx, struct res *r, struct upstream *up,
    enum upstream_method method, const char *path, int64_t range)
{
	struct upstream_req req = {method, path, "x", NULL, range, NULL};

	memset(r, 0, sizeof *r);
	r->fx = fx;
	if (strstr(path, "manifests") != NULL)
		req.accept = "application/vnd.oci.image.index.v1+json";
	r->xfer = upstream_xfer_start(up, &req, &test_cbs, r);
}

/* Tests ------------------------------------------------------------------- */

static void
test_get_blob(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/blobs/plain", -1);
	CHECK(r.xfer != NULL);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.why == NULL);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.status == 200);
	CHECK(r.resp.content_length == (int64_t)strlen(BLOB));
	CHECK_STR(r.ctype, "application/octet-stream");
	CHECK_STR(r.digest, BLOB_DIGEST);
	CHECK(r.resp.ratelimit_limit == 100);
	CHECK(r.resp.ratelimit_remaining == 99);
	CHECK(r.resp.duration_ms >= 0);
	CHECK(r.len == strlen(BLOB));
	CHECK_STR(r.body, BLOB);
	free(r.body);
	fx_release(&fx);
}

static void
test_not_found(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/blobs/missing", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.status == 404);
	CHECK(r.body_calls == 0); /* error bodies are swallowed */
	fx_release(&fx);
}

static void
test_head(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_HEAD, "/v2/x/blobs/plain", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.status == 200);
	CHECK(r.resp.content_length == (int64_t)strlen(BLOB));
	CHECK_STR(r.digest, BLOB_DIGEST);
	CHECK(r.body_calls == 0);
	fx_release(&fx);
}

static void
test_range(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/blobs/plain", 10);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.result == UPSTREAM_OK);
	CHECK_STR(fx.range, "bytes=10-");
	CHECK(r.resp.status == 206);
	CHECK(r.resp.content_length == (int64_t)strlen(BLOB) - 10);
	CHECK_STR(r.crange, "bytes 10-35/36");
	CHECK_STR(r.body, BLOB + 10);
	free(r.body);
	fx_release(&fx);
}

static void
test_bearer(void)
{
	struct fx fx;
	struct res r1, r2, r3;

	CHECK(fx_init(&fx) == 0);
	/* Two at once share one token fetch. */
	test_start(&fx, &r1, fx.up, UPSTREAM_GET, "/v2/x/manifests/auth", -1);
	test_start(&fx, &r2, fx.up, UPSTREAM_GET, "/v2/x/manifests/auth", -1);
	CHECK(fx_run(&fx, 2) == 0);
	CHECK(r1.result == UPSTREAM_OK && r2.result == UPSTREAM_OK);
	CHECK(r1.headers_calls == 1 && r2.headers_calls == 1);
	CHECK(r1.resp.status == 200 && r2.resp.status == 200);
	CHECK_STR(r1.body, "manifest");
	CHECK_STR(r2.body, "manifest");
	CHECK(fx.token_requests == 1);
	CHECK_STR(fx.token_query, "service=test&scope=repository%3ax%3apull");
	CHECK_STR(fx.token_authz, ""); /* anonymous */
	CHECK_STR(fx.accept, "application/vnd.oci.image.index.v1+json");
	CHECK(fx.unauthorized >= 1 && fx.unauthorized <= 2);
	/* The next one sends the cached token straight away. */
	fx.unauthorized = 0;
	test_start(&fx, &r3, fx.up, UPSTREAM_GET, "/v2/x/manifests/auth", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r3.result == UPSTREAM_OK);
	CHECK(r3.resp.status == 200);
	CHECK_STR(r3.body, "manifest");
	CHECK(fx.token_requests == 1);
	CHECK(fx.unauthorized == 0);
	free(r1.body);
	free(r2.body);
	free(r3.body);
	fx_release(&fx);
}

static void
test_bearer_refused(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	/* A fresh token and still 401: that is the answer. */
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/manifests/never", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.status == 401);
	CHECK(r.body_calls == 0);
	CHECK(fx.token_requests == 1);
	CHECK(fx.unauthorized == 2);
	fx_release(&fx);
}

static void
test_bad_realm(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(
	    &fx, &r, fx.up, UPSTREAM_GET, "/v2/x/manifests/badrealm", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_EAUTH);
	CHECK(r.why != NULL);
	CHECK(r.headers_calls == 0);
	CHECK(fx.token_requests == 0);
	fx_release(&fx);
}

static void
test_basic(void)
{
	struct fx fx;
	struct res r1, r2;

	CHECK(fx_init(&fx) == 0);
	test_start(
	    &fx, &r1, fx.up_creds, UPSTREAM_GET, "/v2/x/manifests/basic", -1);
	/* Without credentials the 401 is the answer. */
	test_start(&fx, &r2, fx.up, UPSTREAM_GET, "/v2/x/manifests/basic", -1);
	CHECK(fx_run(&fx, 2) == 0);
	CHECK(r1.result == UPSTREAM_OK);
	CHECK(r1.resp.status == 200);
	CHECK_STR(r1.body, "basic");
	CHECK(r2.result == UPSTREAM_OK);
	CHECK(r2.resp.status == 401);
	free(r1.body);
	fx_release(&fx);
}

static void
test_token_basic(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(
	    &fx, &r, fx.up_creds, UPSTREAM_GET, "/v2/x/manifests/auth", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.resp.status == 200);
	CHECK_STR(fx.token_authz, BASIC_USER_PASS);
	free(r.body);
	fx_release(&fx);
}

static void
test_redirect(void)
{
	struct fx fx;
	struct res r;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/blobs/redirect", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.result == UPSTREAM_OK);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.status == 200);
	CHECK_STR(r.body, BLOB);
	CHECK(fx.a_saw_auth == 1);
	CHECK(fx.cdn_hits == 1);
	CHECK(fx.cdn_saw_auth == 0); /* the token stays with its registry */
	free(r.body);
	fx_release(&fx);
}

static void
test_refused(void)
{
	struct fx fx;
	struct upstream *up;
	struct res r;
	char *url;
	int fd, port;

	CHECK(fx_init(&fx) == 0);
	/* A port that was just free: nobody listens there. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	{
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
	}
	port = test_fd_port(fd);
	close(fd);
	xasprintf(&url, "http://127.0.0.1:%d", port);
	up = upstream_new(fx.client, "refused", url, NULL, NULL);
	free(url);
	test_start(&fx, &r, up, UPSTREAM_GET, "/v2/x/blobs/plain", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_ECONNECT);
	CHECK(r.why != NULL);
	CHECK(r.headers_calls == 0);
	upstream_free(up);
	fx_release(&fx);
}

static void
test_short_body(void)
{
	struct fx fx;
	struct upstream *up;
	struct res r;
	char *url;

	CHECK(fx_init(&fx) == 0);
	xasprintf(&url, "http://127.0.0.1:%d", fx.raw_port);
	up = upstream_new(fx.client, "raw", url, NULL, NULL);
	free(url);
	test_start(&fx, &r, up, UPSTREAM_GET, "/v2/x/blobs/plain", -1);
	CHECK(fx_run(&fx, 1) == 0);
	CHECK(r.done_calls == 1);
	CHECK(r.result == UPSTREAM_EBODY);
	CHECK(r.headers_calls == 1);
	CHECK(r.resp.content_length == 1000);
	CHECK(r.len == 10);
	free(r.body);
	upstream_free(up);
	fx_release(&fx);
}

static void
test_cancel_in_body(void)
{
	struct fx fx;
	struct res r, r2;

	CHECK(fx_init(&fx) == 0);
	test_start(&fx, &r, fx.up, UPSTREAM_GET, "/v2/x/blobs/big", -1);
	r.cancel_in_body = 1;
	/* A second transfer carries on regardless. */
	test_start(&fx, &r2, fx.up, UPSTREAM_GET, "/v2/x/blobs/plain", -1);
	CHECK(fx_run(&fx, 1) == 0);
	fx_run_for(&fx, 200);
	CHECK(r.headers_calls == 1);
	CHECK(r.body_calls == 1);
	CHECK(r.done_calls == 0);
	CHECK(r2.done_calls == 1 && r2.result == UPSTREAM_OK);
	CHECK_STR(r2.body, BLOB);
	free(r.body);
	free(r2.body);
	fx_release(&fx);
}

static void
test_cancel_outside(void)
{
	struct fx fx;
	struct res r1, r2;

	CHECK(fx_init(&fx) == 0);
	/* Before it ever ran. */
	test_start(&fx, &r1, fx.up, UPSTREAM_GET, "/v2/x/blobs/plain", -1);
	upstream_xfer_cancel(r1.xfer);
	test_start(&fx, &r2, fx.up, UPSTREAM_GET, "/v2/x/manifests/auth", -1);
	upstream_xfer_cancel(NULL);
	fx_run_for(&fx, 200);
	CHECK(r1.headers_calls == 0 && r1.done_calls == 0);
	CHECK(r2.done_calls == 1);
	free(r2.body);
	/* Shut down with a transfer in flight: no callbacks. */
	test_start(&fx, &r1, fx.up, UPSTREAM_GET, "/v2/x/blobs/big", -1);
	fx_run_for(&fx, 5);
	fx_release(&fx);
	CHECK(r1.done_calls == 0);
	free(r1.body);
}

static void
test_realm_check(void)
{
	const char *hub = "https://registry-1.docker.io";

	CHECK(auth_realm_check("https://auth.docker.io/token", hub) == 0);
	CHECK(
	    auth_realm_check("https://ghcr.io/token", "https://ghcr.io") == 0);
	CHECK(auth_realm_check(
		  "http://127.0.0.1:5000/token", "http://127.0.0.1:5000") == 0);
	/* the same host is the same service only on the same port and
	 * scheme: another port may be anyone's */
	CHECK(auth_realm_check("http://127.0.0.1:5001/token",
		  "http://127.0.0.1:5000") == -1);
	CHECK(auth_realm_check(
		  "https://ghcr.io:8443/token", "https://ghcr.io") == -1);
	CHECK(auth_realm_check(
		  "https://ghcr.io:443/token", "https://ghcr.io") == 0);
	CHECK(
	    auth_realm_check("http://ghcr.io/token", "https://ghcr.io") == -1);
	CHECK(auth_realm_check("http://auth.docker.io/token", hub) == -1);
	CHECK(auth_realm_check("https://evil.example/token", hub) == -1);
	CHECK(auth_realm_check("ftp://auth.docker.io/token", hub) == -1);
	CHECK(auth_realm_check("auth.docker.io/token", hub) == -1);
	CHECK(auth_realm_check("https://u:p@auth.docker.io/token", hub) == -1);
	CHECK(auth_realm_check(
		  "https://10.0.0.1/token", "https://192.168.0.1") == -1);
	CHECK(
	    auth_realm_check("https://localhost/token", "https://other") == -1);
	CHECK(auth_scheme_parse("Bearer realm=\"x\"") == AUTH_BEARER);
	CHECK(auth_scheme_parse("basic realm=\"x\"") == AUTH_BASIC);
	CHECK(auth_scheme_parse("Bearerx") == AUTH_NONE);
	CHECK(auth_scheme_parse(NULL) == AUTH_NONE);
}

static const struct unit_test tests[] = {
    {"get_blob", test_get_blob},
    {"not_found", test_not_found},
    {"head", test_head},
    {"range", test_range},
    {"bearer", test_bearer},
    {"bearer_refused", test_bearer_refused},
    {"bad_realm", test_bad_realm},
    {"basic", test_basic},
    {"token_basic", test_token_basic},
    {"redirect", test_redirect},
    {"refused", test_refused},
    {"short_body", test_short_body},
    {"cancel_in_body", test_cancel_in_body},
    {"cancel_outside", test_cancel_outside},
    {"realm_check", test_realm_check},
};

UNIT_MAIN("upstream", tests)
