/*
 * registry/conn.c: client connections.  When the process runs out of file
 * descriptors, accepting pauses (rather than spinning on EMFILE) and a
 * small reserve of fds goes to the requests in progress; a request must
 * complete its header block within header_timeout_s of its first byte
 * (slowloris).  conn.c keeps each connection's evhttp close callback for
 * itself and passes it on to http.c (conn_set_closecb).
 */
#include <sys/queue.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "../common/common.h"
#include "internal.h"

#define CONN_RESERVE 8	      /* fds held back for live requests */
#define CONN_PAUSE_MIN_MS 250 /* first pause; doubles while it lasts */
#define CONN_PAUSE_MAX_MS 4000
#define CONN_CALM_MS 5000 /* this long without EMFILE ends a streak */

/* One client connection, from its bufferevent's creation to its close. */
struct conn {
	struct conn_guard *g;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until bound */
	int fd;
	int reading; /* a request's first byte came, not dispatched yet */
	int busy;    /* a dispatched request holds the close callback */
	struct event *timer;
	void (*closecb)(struct evhttp_connection *, void *);
	void *closearg;
	TAILQ_ENTRY(conn) entry; /* g->unbound until bound */
};

struct conn_guard {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *lev; /* borrowed from evhttp */
	struct event *resume_ev;
	struct event *bind_ev;
	int reserve[CONN_RESERVE];
	int nreserve;
	int paused; /* accepting is off */
	int streak; /* pauses since the last calm CONN_CALM_MS */
	int64_t streak_start_ms;
	int64_t pause_ms;
	int64_t header_timeout_s;
	struct conn **byfd; /* bound connections by fd */
	size_t nbyfd;
	TAILQ_HEAD(, conn) unbound;
	LIST_ENTRY(conn_guard) link;
};

/*
 * libevent calls a listener's error callback with the listener's own
 * argument, which evhttp has taken (the struct evhttp): the guard is found
 * by it here.  One entry per running server.
 */
static LIST_HEAD(, conn_guard) conn_guards = LIST_HEAD_INITIALIZER(conn_guards);

/* Accepting -------------------------------------------------------------- */

static void
conn_reserve_fill(struct conn_guard *g)
{
	int fd;

	while (g->nreserve < CONN_RESERVE) {
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
			return;
		g->reserve[g->nreserve++] = fd;
	}
}

static void
conn_reserve_release(struct conn_guard *g)
{
	while (g->nreserve > 0)
		close(g->reserve[--g->nreserve]);
}

static void
conn_timer_add(struct event *ev, int64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	evtimer_add(ev, &tv);
}

/*
 * After a pause: take the reserve back and accept again, or stay paused
 * while fds are still short.  After CONN_CALM_MS of accepting without
 * trouble the streak is over (one line says so).
 */
static void
conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_guard *g = arg;

	(void)fd;
	(void)what;
	if (g->lev == NULL)
		return;
	if (!g->paused) {
		log_info(
		    "accepting connections again (%d pauses in %lld ms for lack of file descriptors)",
		    g->streak,
		    (long long)(clock_now_ms() - g->streak_start_ms));
		g->streak = 0;
		g->pause_ms = CONN_PAUSE_MIN_MS;
		return;
	}
	conn_reserve_fill(g);
	if (g->nreserve < CONN_RESERVE) {
		conn_timer_add(g->resume_ev, g->pause_ms);
		return;
	}
	g->paused = 0;
	evconnlistener_enable(g->lev);
	conn_timer_add(g->resume_ev, CONN_CALM_MS);
}

/* accept() failed for a reason libevent does not retry by itself. */
static void
conn_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct conn_guard *g;

	LIST_FOREACH(g, &conn_guards, link)
		if (g->http == arg && g->lev == lev)
			break;
	if (g == NULL)
		return;
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_warn("cannot accept a connection: %s", strerror(err));
		return;
	}
	evconnlistener_disable(g->lev);
	g->paused = 1;
	conn_reserve_release(g);
	if (g->streak++ == 0) {
		g->streak_start_ms = clock_now_ms();
		g->pause_ms = CONN_PAUSE_MIN_MS;
		log_warn(
		    "cannot accept connections: %s; pausing accepts until descriptors are free (raise the fd limit, e.g. systemd's LimitNOFILE=)",
		    strerror(err));
	} else if (g->pause_ms < CONN_PAUSE_MAX_MS)
		g->pause_ms *= 2;
	conn_timer_add(g->resume_ev, g->pause_ms);
}

/* Connections ------------------------------------------------------------ */

static void
conn_free(struct conn *c)
{
	struct conn_guard *g = c->g;

	if (c->evcon == NULL)
		TAILQ_REMOVE(&g->unbound, c, entry);
	else if (c->fd >= 0 && (size_t)c->fd < g->nbyfd && g->byfd[c->fd] == c)
		g->byfd[c->fd] = NULL;
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

static struct conn *
conn_find(struct conn_guard *g, struct evhttp_connection *evcon)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	struct conn *c;

	if (fd < 0 || (size_t)fd >= g->nbyfd || (c = g->byfd[fd]) == NULL ||
	    c->evcon != evcon)
		return NULL;
	return c;
}

static void conn_input_cb(
    struct evbuffer *, const struct evbuffer_cb_info *, void *);

/* evhttp is freeing the connection. */
static void
conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	void (*cb)(struct evhttp_connection *, void *) = c->closecb;
	void *cbarg = c->closearg;

	if (cb != NULL)
		cb(evcon, cbarg); /* may call conn_set_closecb: c still found */
	evbuffer_remove_cb(bufferevent_get_input(c->bev), conn_input_cb, c);
	conn_free(c);
}

/*
 * The header deadline.  A dispatched request, or a reply still being
 * written, is not late; a request whose first byte came header_timeout_s
 * ago and has not been dispatched is cut.
 */
static void
conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char *peer = NULL;
	ev_uint16_t port = 0;

	(void)fd;
	(void)what;
	if (!c->reading || c->evcon == NULL)
		return;
	if (c->busy ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		conn_timer_add(c->timer, c->g->header_timeout_s * 1000);
		return;
	}
	evhttp_connection_get_peer(c->evcon, &peer, &port);
	log_info(
	    "closing connection from %s:%u: request headers not complete within %lld s",
	    peer != NULL ? peer : "?", (unsigned)port,
	    (long long)c->g->header_timeout_s);
	evhttp_connection_free(c->evcon); /* conn_close_cb frees c */
}

/* Bytes arrived (or were consumed) on the connection's input. */
static void
conn_input_cb(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;

	(void)buf;
	if (info->n_added == 0 || c->reading || c->g->header_timeout_s <= 0)
		return;
	c->reading = 1;
	conn_timer_add(c->timer, c->g->header_timeout_s * 1000);
}

/*
 * Once per loop pass after accepts: evhttp has set up each new
 * connection (its callbacks' argument is the evhttp_connection), so take
 * its close callback and index it by fd.
 */
static void
conn_bind_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_guard *g = arg;
	bufferevent_data_cb readcb;
	struct conn *c;
	void *cbarg;
	size_t n;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&g->unbound)) != NULL) {
		struct bufferevent *bev = c->bev;

		readcb = NULL;
		cbarg = NULL;
		bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
		c->fd = bufferevent_getfd(bev);
		if (readcb == NULL || cbarg == NULL || c->fd < 0) {
			/* evhttp already let go of it */
			conn_free(c);
			bufferevent_decref(bev);
			continue;
		}
		TAILQ_REMOVE(&g->unbound, c, entry);
		c->evcon = cbarg;
		if ((size_t)c->fd >= g->nbyfd) {
			n = g->nbyfd == 0 ? 1024 : g->nbyfd;
			while (n <= (size_t)c->fd)
				n *= 2;
			g->byfd = xreallocarray(g->byfd, n, sizeof *g->byfd);
			memset(g->byfd + g->nbyfd, 0,
			    (n - g->nbyfd) * sizeof *g->byfd);
			g->nbyfd = n;
		}
		g->byfd[c->fd] = c;
		evhttp_connection_set_closecb(c->evcon, conn_close_cb, c);
		bufferevent_decref(bev);
	}
}

/* evhttp's bufferevent factory: one call per accepted connection. */
static struct bufferevent *
conn_bev_cb(struct event_base *base, void *arg)
{
	struct conn_guard *g = arg;
	struct bufferevent *bev;
	struct conn *c;

	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL)
		return NULL;
	c = xcalloc(1, sizeof *c);
	c->g = g;
	c->bev = bev;
	c->fd = -1;
	if ((c->timer = evtimer_new(base, conn_deadline_cb, c)) == NULL)
		fatal("out of memory creating a header deadline");
	/* kept alive until bound, even if evhttp frees it meanwhile */
	bufferevent_incref(bev);
	evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, c);
	TAILQ_INSERT_TAIL(&g->unbound, c, entry);
	event_active(g->bind_ev, 0, 0);
	return bev;
}

void
conn_set_closecb(struct conn_guard *g, struct evhttp_connection *evcon,
    void (*cb)(struct evhttp_connection *, void *), void *arg)
{
	struct conn *c = g != NULL ? conn_find(g, evcon) : NULL;

	if (c == NULL) {
		evhttp_connection_set_closecb(evcon, cb, arg);
		return;
	}
	c->closecb = cb;
	c->closearg = arg;
	c->busy = cb != NULL;
}

void
conn_dispatched(struct conn_guard *g, struct evhttp_connection *evcon)
{
	struct conn *c = g != NULL ? conn_find(g, evcon) : NULL;

	if (c == NULL)
		return;
	c->reading = 0;
	evtimer_del(c->timer);
}

struct conn_guard *
conn_guard_new(struct event_base *base, struct evhttp *http,
    struct evhttp_bound_socket *bound, int64_t header_timeout_s)
{
	struct conn_guard *g;

	g = xcalloc(1, sizeof *g);
	g->base = base;
	g->http = http;
	g->lev = evhttp_bound_socket_get_listener(bound);
	g->header_timeout_s = header_timeout_s;
	g->pause_ms = CONN_PAUSE_MIN_MS;
	TAILQ_INIT(&g->unbound);
	g->resume_ev = evtimer_new(base, conn_resume_cb, g);
	g->bind_ev = event_new(base, -1, 0, conn_bind_cb, g);
	if (g->resume_ev == NULL || g->bind_ev == NULL)
		fatal("out of memory creating the connection events");
	conn_reserve_fill(g);
	LIST_INSERT_HEAD(&conn_guards, g, link);
	evconnlistener_set_error_cb(g->lev, conn_accept_error_cb);
	evhttp_set_bevcb(http, conn_bev_cb, g);
	return g;
}

/* The listener is about to go (evhttp_del_accept_socket). */
void
conn_guard_stop(struct conn_guard *g)
{
	if (g == NULL)
		return;
	event_del(g->resume_ev);
	g->lev = NULL;
}

/* After evhttp_free: every connection has been closed by then. */
void
conn_guard_free(struct conn_guard *g)
{
	struct conn *c;
	size_t i;

	if (g == NULL)
		return;
	LIST_REMOVE(g, link);
	conn_bind_cb(-1, 0, g);
	for (i = 0; i < g->nbyfd; i++)
		if ((c = g->byfd[i]) != NULL)
			conn_free(c);
	free(g->byfd);
	conn_reserve_release(g);
	event_free(g->bind_ev);
	event_free(g->resume_ev);
	free(g);
}
